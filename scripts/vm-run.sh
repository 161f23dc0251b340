#!/usr/bin/env bash
# Boots one kernel of the kernel matrix under QEMU and runs one command in it, as root, with the
# tools the node lab uses; prints the guest's console and exits with the command's exit code.
#
#   scripts/vm-run.sh LINE WORKDIR TIMEOUT_S FILE... -- COMMAND [ARG...]
#
# LINE is a folder of scripts/kernels.sh (5.10, 6.1, 6.12). Each FILE is copied into the guest
# under /payload/ (keeping its base name); COMMAND runs from there. The initramfs holds
# busybox (static) for the basics, Debian's own ip, tc, nft, ping and unbound (the DNS lab's
# server) with their libraries (the host's: Debian 12), dash as /bin/sh (busybox's shell would prefer its own `ip` applet), and
# the line's modules, loaded at boot. Software emulation (TCG): nested KVM fails on these
# machines. Exit codes: the command's, 124 on timeout, 125 when the guest never reported one.
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

# Busybox applets, minus the ones a real tool replaces.
cp /bin/busybox "$ROOT/bin/busybox"
for a in $(/bin/busybox --list); do
  case "$a" in sh|ip|tc|ping|ping6|busybox) continue ;; esac
  ln -sf busybox "$ROOT/bin/$a"
done

copy_with_libs() { # binary -> /bin/<name>, and every library it loads
  local bin=$1 name=${2:-${1##*/}} lib
  cp -L "$bin" "$ROOT/bin/$name"
  for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do
    mkdir -p "$ROOT$(dirname "$lib")"
    cp -Ln "$lib" "$ROOT$lib"
  done
}
copy_with_libs /bin/dash sh
for t in /usr/bin/ip /usr/sbin/tc /usr/sbin/nft /usr/bin/ping /usr/sbin/unbound; do
  [ -x "$t" ] || t=$(command -v "${t##*/}")
  copy_with_libs "$t"
done

for f in "${FILES[@]}"; do
  cp -L "$f" "$ROOT/payload/"
  if ldd "$f" >/dev/null 2>&1; then
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
timeout --foreground -k 10 "$TIMEOUT" qemu-system-x86_64 \
  -accel tcg,thread=multi -cpu max -m 2048 -smp 2 \
  -nographic -no-reboot -nodefaults -serial stdio -monitor none \
  -kernel "$K/vmlinuz" -initrd "$WORK/initramfs.cpio" \
  -append "console=ttyS0 panic=-1 quiet random.trust_cpu=on" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
[ "$rc" -eq 124 ] && { echo "netprobe-vm: timed out after ${TIMEOUT}s" >&2; exit 124; }
code=$(sed -n 's/^netprobe-vm: exit \([0-9]*\)\r*$/\1/p' "$log" | tail -n1)
[ -n "$code" ] || { echo "netprobe-vm: the guest reported no exit code (qemu exit $rc)" >&2; exit 125; }
exit "$code"

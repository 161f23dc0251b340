#!/usr/bin/env bash
# Fetches the kernels of the kernel matrix: Debian's own cloud kernel packages for the 5.10
# (bullseye), 6.1 (bookworm) and 6.12 (bookworm's 6.12 line) lines, and the arm64 builds of 5.10
# and 6.12 (folders arm64-<line>, booted by qemu-system-aarch64), each resolved from its
# meta-package to the newest build the archive has, with a private apt state (the system's apt
# sources stay untouched). Keeps, per line, only what a test VM boots: the kernel image and the
# modules the node lab needs (with their dependencies, decompressed), under
# $TOOLS_DIR/kernels/<line>/. Idempotent: a line already fetched (for the same module list) is
# not fetched again; delete its folder to move to a newer build. Prints the exact package versions.
# For the arm64 lines it also fetches, once, the guest's arm64 user space (busybox, dash, iproute2,
# nftables, ping, unbound and the libraries they and the test binary load) into arm64-userland/:
# the host's own tools, which the amd64 guests borrow, cannot run there.
set -euo pipefail

log() { printf '[kernels] %s\n' "$*"; }

TOOLS_DIR="${NETPROBE_TOOLS_DIR:-$HOME/.cache/otel-netprobe}"
KDIR="$TOOLS_DIR/kernels"
mkdir -p "$KDIR"

# line suite meta-package architecture
LINES=(
  "5.10 bullseye linux-image-cloud-amd64 amd64"
  "6.1 bookworm linux-image-cloud-amd64 amd64"
  "6.12 bookworm linux-image-6.12-cloud-amd64 amd64"
  "arm64-5.10 bullseye linux-image-cloud-arm64 arm64"
  "arm64-6.12 bookworm linux-image-6.12-cloud-arm64 arm64"
)
# The arm64 guest's user space (bookworm, as the host's): what scripts/vm-run.sh puts in its
# initramfs, with every library they depend on.
ARM64_USERLAND=(busybox-static dash iproute2 nftables iputils-ping unbound libgcc-s1 libc6)
# What the node lab loads: veth pairs, the pods' bridge, VLAN tags, clsact (sch_ingress) and
# cls_bpf for TC before TCX, netem for delay, TUN, and nftables for the drop tests.
MODULES=(veth bridge 8021q sch_ingress cls_bpf sch_netem tun nf_tables nft_reject_inet
  nft_reject_ipv4 nft_reject_ipv6 nft_ct nft_nat nft_chain_nat nf_conntrack)
# Modules on some lines only: nft_counter was folded into nf_tables in 5.14 (the drop tests'
# rule counters).
OPTIONAL_MODULES=(nft_counter)
# What a cached line was extracted for: a changed list re-extracts it.
WANTED="${MODULES[*]} / ${OPTIONAL_MODULES[*]}"

apt_state() { # suite arch -> prints the apt options of a private state for it (updated once)
  local suite=$1 arch=$2 d="$TOOLS_DIR/apt-$1-$2"
  if [ ! -f "$d/updated" ]; then
    mkdir -p "$d/lists/partial" "$d/cache/archives/partial"
    # The point release and its security updates: the kernels nodes of that release run.
    printf 'deb http://deb.debian.org/debian %s main\ndeb http://deb.debian.org/debian-security %s-security main\n' \
      "$suite" "$suite" >"$d/sources.list"
    : >"$d/status"
    apt-get -o "Dir::Etc::SourceList=$d/sources.list" -o Dir::Etc::SourceParts=/dev/null \
      -o "Dir::State::Lists=$d/lists" -o "Dir::Cache=$d/cache" -o APT::Sandbox::User=root \
      -o "APT::Architecture=$arch" -o "APT::Architectures=$arch" -o "Dir::State::status=$d/status" \
      -qq update >&2
    touch "$d/updated"
  fi
  # An empty dpkg status of its own: the host's installed packages say nothing about the guest's.
  printf '%s\n' -o "Dir::Etc::SourceList=$d/sources.list" -o Dir::Etc::SourceParts=/dev/null \
    -o "Dir::State::Lists=$d/lists" -o "Dir::Cache=$d/cache" -o APT::Sandbox::User=root \
    -o "APT::Architecture=$arch" -o "APT::Architectures=$arch" -o "Dir::State::status=$d/status"
}

fetch_line() { # line suite meta arch
  local line=$1 suite=$2 meta=$3 arch=$4 out="$KDIR/$1"
  local -a A
  mapfile -t A < <(apt_state "$suite" "$arch")
  # Newest first, every version of the meta-package the archive lists (the point release's and
  # the security pool's): the first whose image package really downloads wins (bullseye's
  # security pool has listed an arm64 build it then answered 404 for).
  local tmp pkg="" ver cand
  tmp=$(mktemp -d)
  for ver in $(apt-cache "${A[@]}" madison "$meta" | awk -F'|' '{gsub(/ /,"",$2); print $2}'); do
    cand=$(apt-cache "${A[@]}" depends "$meta=$ver" | sed -n 's/^  Depends: \(linux-image-[^ ]*\)$/\1/p' | head -n1)
    [ -n "$cand" ] || continue
    log "fetching $cand ($suite, $arch) for the $line line"
    if (cd "$tmp" && apt-get "${A[@]}" -qq download "$cand"); then pkg=$cand; break; fi
    log "$cand does not download; trying the next version of $meta"
    rm -f "$tmp"/*.deb
  done
  [ -n "$pkg" ] || { log "cannot resolve $meta in $suite ($arch)"; return 1; }
  local deb
  deb=$(ls "$tmp"/*.deb)
  dpkg -x "$deb" "$tmp/root"
  local kver
  kver=$(ls "$tmp/root/lib/modules")
  rm -rf "$out.new" && mkdir -p "$out.new/modules"
  cp "$tmp/root/boot/vmlinuz-$kver" "$out.new/vmlinuz"
  printf '%s\n' "$arch" >"$out.new/arch"
  local mdir="$tmp/root/lib/modules/$kver"
  # Resolve dependencies (each module's `depends=` in its .modinfo) into a load order.
  local -a order=()
  local -A seen=()
  add_mod() {
    local name=${1//-/_} file base dep
    [ -n "${seen[$name]:-}" ] && return 0
    seen[$name]=1
    file=$(find "$mdir/kernel" -name "${name}.ko*" -o -name "${name//_/-}.ko*" | head -n1)
    if [ -z "$file" ]; then
      grep -qE "/(${name}|${name//_/-})\.ko" "$mdir/modules.builtin" || { log "module $name: neither a module nor built in"; return 1; }
      return 0
    fi
    base=${file##*/}
    case "$base" in
      *.ko.xz) xz -dc "$file" >"$out.new/modules/${base%.xz}"; base=${base%.xz} ;;
      *.ko.zst) zstd -qdc "$file" >"$out.new/modules/${base%.zst}"; base=${base%.zst} ;;
      *.ko.gz) gzip -dc "$file" >"$out.new/modules/${base%.gz}"; base=${base%.gz} ;;
      *) cp "$file" "$out.new/modules/$base" ;;
    esac
    for dep in $(strings -a "$out.new/modules/$base" | sed -n 's/^depends=//p' | tr ',' ' '); do
      add_mod "$dep"
    done
    order+=("$base")
  }
  local m
  for m in "${MODULES[@]}"; do add_mod "$m"; done
  for m in "${OPTIONAL_MODULES[@]}"; do
    find "$mdir/kernel" -name "${m}.ko*" | grep -q . && add_mod "$m"
  done
  printf '%s\n' "$WANTED" >"$out.new/modules.wanted"
  printf '%s\n' "${order[@]}" >"$out.new/modules.order"
  printf '%s %s %s\n' "$pkg" "$(dpkg-deb -f "$deb" Version)" "$kver" >"$out.new/version"
  rm -rf "$tmp" "$out"
  mv "$out.new" "$out"
}

fetch_userland() { # the arm64 guest's user space, unpacked (not installed) into arm64-userland/
  local out="$KDIR/arm64-userland" tmp
  local -a A
  mapfile -t A < <(apt_state bookworm arm64)
  log "fetching the arm64 guest's user space: ${ARM64_USERLAND[*]} and their dependencies"
  tmp=$(mktemp -d)
  mkdir -p "$tmp/archives/partial"
  # With an empty status, apt resolves every dependency; --download-only installs nothing.
  apt-get "${A[@]}" -o "Dir::Cache::archives=$tmp/archives" -qq -y --no-install-recommends \
    install --download-only "${ARM64_USERLAND[@]}" >/dev/null
  rm -rf "$out.new" && mkdir -p "$out.new/root"
  local deb
  : >"$out.new/versions"
  for deb in "$tmp"/archives/*.deb; do
    dpkg -x "$deb" "$out.new/root"
    printf '%s %s\n' "$(dpkg-deb -f "$deb" Package)" "$(dpkg-deb -f "$deb" Version)" >>"$out.new/versions"
  done
  # What the guest never needs: documentation, locales, manuals.
  rm -rf "$out.new/root/usr/share/"{doc,man,locale,info,lintian}
  printf '%s\n' "${ARM64_USERLAND[*]}" >"$out.new/wanted"
  rm -rf "$tmp" "$out"
  mv "$out.new" "$out"
}

for spec in "${LINES[@]}"; do
  read -r line suite meta arch <<<"$spec"
  if [ ! -s "$KDIR/$line/version" ] || [ "$(cat "$KDIR/$line/modules.wanted" 2>/dev/null)" != "$WANTED" ]; then
    fetch_line "$line" "$suite" "$meta" "$arch"
  fi
  log "$line: $(cat "$KDIR/$line/version")"
done
if [ "$(cat "$KDIR/arm64-userland/wanted" 2>/dev/null)" != "${ARM64_USERLAND[*]}" ]; then
  fetch_userland
fi
log "arm64 user space: $(wc -l <"$KDIR/arm64-userland/versions") packages ($(du -sh "$KDIR/arm64-userland/root" | cut -f1))"
# The package lists are only needed to resolve and fetch (about 25 MB a suite and architecture).
rm -rf "$TOOLS_DIR"/apt-bullseye-* "$TOOLS_DIR"/apt-bookworm-*

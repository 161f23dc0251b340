#!/usr/bin/env bash
# Fetches the kernels of the kernel matrix: Debian's own cloud kernel packages for the 5.10
# (bullseye), 6.1 (bookworm) and 6.12 (bookworm's 6.12 line) lines, each resolved from its
# meta-package to the newest build the archive has, with a private apt state (the system's apt
# sources stay untouched). Keeps, per line, only what a test VM boots: the kernel image and the
# modules the node lab needs (with their dependencies, decompressed), under
# $TOOLS_DIR/kernels/<line>/. Idempotent: a line already fetched (for the same module list) is
# not fetched again; delete its folder to move to a newer build. Prints the exact package versions.
set -euo pipefail

log() { printf '[kernels] %s\n' "$*"; }

TOOLS_DIR="${NETPROBE_TOOLS_DIR:-$HOME/.cache/otel-netprobe}"
KDIR="$TOOLS_DIR/kernels"
mkdir -p "$KDIR"

# line suite meta-package
LINES=(
  "5.10 bullseye linux-image-cloud-amd64"
  "6.1 bookworm linux-image-cloud-amd64"
  "6.12 bookworm linux-image-6.12-cloud-amd64"
)
# What the node lab loads: veth pairs, the pods' bridge, VLAN tags, clsact (sch_ingress) and
# cls_bpf for TC before TCX, netem for delay, TUN, and nftables for the drop tests.
MODULES=(veth bridge 8021q sch_ingress cls_bpf sch_netem tun nf_tables nft_reject_inet
  nft_reject_ipv4 nft_reject_ipv6 nft_ct nft_nat nft_chain_nat nf_conntrack)
# Modules on some lines only: nft_counter was folded into nf_tables in 5.14 (the drop tests'
# rule counters).
OPTIONAL_MODULES=(nft_counter)
# What a cached line was extracted for: a changed list re-extracts it.
WANTED="${MODULES[*]} / ${OPTIONAL_MODULES[*]}"

apt_state() { # suite -> prints the apt options of a private state for it (updated once)
  local suite=$1 d="$TOOLS_DIR/apt-$1"
  if [ ! -f "$d/updated" ]; then
    mkdir -p "$d/lists/partial" "$d/cache/archives/partial"
    # The point release and its security updates: the kernels nodes of that release run.
    printf 'deb http://deb.debian.org/debian %s main\ndeb http://deb.debian.org/debian-security %s-security main\n' \
      "$suite" "$suite" >"$d/sources.list"
    apt-get -o "Dir::Etc::SourceList=$d/sources.list" -o Dir::Etc::SourceParts=/dev/null \
      -o "Dir::State::Lists=$d/lists" -o "Dir::Cache=$d/cache" -o APT::Sandbox::User=root \
      -qq update >&2
    touch "$d/updated"
  fi
  printf '%s\n' -o "Dir::Etc::SourceList=$d/sources.list" -o Dir::Etc::SourceParts=/dev/null \
    -o "Dir::State::Lists=$d/lists" -o "Dir::Cache=$d/cache" -o APT::Sandbox::User=root
}

fetch_line() { # line suite meta
  local line=$1 suite=$2 meta=$3 out="$KDIR/$1"
  local -a A
  mapfile -t A < <(apt_state "$suite")
  local pkg
  pkg=$(apt-cache "${A[@]}" depends "$meta" | sed -n 's/^  Depends: \(linux-image-[^ ]*\)$/\1/p' | head -n1)
  [ -n "$pkg" ] || { log "cannot resolve $meta in $suite"; return 1; }
  log "fetching $pkg ($suite) for the $line line"
  local tmp
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get "${A[@]}" -qq download "$pkg")
  local deb
  deb=$(ls "$tmp"/*.deb)
  dpkg -x "$deb" "$tmp/root"
  local kver
  kver=$(ls "$tmp/root/lib/modules")
  rm -rf "$out.new" && mkdir -p "$out.new/modules"
  cp "$tmp/root/boot/vmlinuz-$kver" "$out.new/vmlinuz"
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

for spec in "${LINES[@]}"; do
  read -r line suite meta <<<"$spec"
  if [ ! -s "$KDIR/$line/version" ] || [ "$(cat "$KDIR/$line/modules.wanted" 2>/dev/null)" != "$WANTED" ]; then
    fetch_line "$line" "$suite" "$meta"
  fi
  log "$line: $(cat "$KDIR/$line/version")"
done
# The package lists are only needed to resolve and fetch (about 25 MB a suite).
rm -rf "$TOOLS_DIR"/apt-bullseye "$TOOLS_DIR"/apt-bookworm

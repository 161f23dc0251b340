#!/usr/bin/env bash
# `make image`: builds the agent image from the Dockerfile with buildah, checks that the image's
# agent runs (`otel-netprobe --version`) and keeps its file capabilities.
#
# The Dockerfile's FROM images are pulled when a registry can be reached. Where none can (the
# project's build machines), they are made locally, once, and tagged with the FROM names:
#   - the builder base, as the official rust image is laid out (Debian 12, rustup in
#     /usr/local/rustup, cargo in /usr/local/cargo), holding this machine's own rustup toolchains
#     (stable + nightly: no other toolchain can be downloaded here);
#   - the runtime base, as distroless cc-debian12:nonroot is made: glibc, libgcc, CA certificates,
#     tzdata-free, no shell, users root/nonroot(65532)/nobody.
# Both come from debootstrap (Debian's own packages). Set NETPROBE_LOCAL_BASES=0 to require pulls.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[image] %s\n' "$*" >&2; }

IMAGE="${IMAGE:-localhost/otel-netprobe:dev}"
# Keep in step with the Dockerfile's ARG defaults (a test checks they agree).
RUST_IMAGE="docker.io/library/rust:1.95-bookworm"
RUNTIME_IMAGE="gcr.io/distroless/cc-debian12:nonroot"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
WORK="${NETPROBE_TOOLS_DIR:-$HOME/.cache/otel-netprobe}/image"
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)"
REVISION="$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"

need=()
for p in buildah debootstrap; do command -v "$p" >/dev/null 2>&1 || need+=("$p"); done
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

have_image() { buildah inspect --type image "$1" >/dev/null 2>&1; }

# A Debian 12 root file system, made once and reused by both bases.
debian_rootfs() {
  local dir="$WORK/bookworm"
  if [ ! -f "$dir/.complete" ]; then
    log "debootstrap bookworm into $dir (a few minutes, once)"
    rm -rf "$dir"
    debootstrap --variant=minbase \
      --include=ca-certificates,gcc,libc6-dev,libcap2-bin,make,netbase,pkg-config \
      bookworm "$dir" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
      || { tail -n 20 "$WORK/debootstrap.log"; exit 1; }
    chroot "$dir" apt-get clean
    rm -rf "$dir"/var/lib/apt/lists/*
    touch "$dir/.complete"
  fi
  printf '%s\n' "$dir"
}

# Commits the directory $1 as image $2 with `buildah config` arguments $3...
commit_dir() {
  local src="$1" name="$2"; shift 2
  local c mnt
  c=$(buildah from scratch)
  mnt=$(buildah mount "$c")
  cp -a "$src"/. "$mnt"/
  buildah umount "$c" >/dev/null
  buildah config "$@" "$c"
  buildah commit --quiet "$c" "$name" >/dev/null
  buildah rm "$c" >/dev/null
  log "made $name locally"
}

make_builder_base() {
  local root stage
  root=$(debian_rootfs)
  stage="$WORK/rust-base"
  rm -rf "$stage" && mkdir -p "$stage/usr/local/rustup/toolchains" "$stage/usr/local/cargo/bin"
  cp -a "$root"/. "$stage"/
  local rh="${RUSTUP_HOME:-$HOME/.rustup}" ch="${CARGO_HOME:-$HOME/.cargo}" t
  for t in stable nightly; do
    local tc
    tc=$(cd "$rh/toolchains" && ls -d "$t"-* | head -n1)
    # Documentation is 0.8 GB a toolchain and no build reads it.
    (cd "$rh/toolchains" && tar --exclude="$tc/share/doc" -cf - "$tc") | tar -xf - -C "$stage/usr/local/rustup/toolchains"
  done
  cp "$rh/settings.toml" "$stage/usr/local/rustup/"
  # rustup and its proxies (cargo, rustc, ...) are one binary; bpf-linker is left out: the
  # Dockerfile builds it, as make setup does.
  for t in "$ch"/bin/*; do
    case "$(basename "$t")" in bpf-linker) ;; *) cp -a "$t" "$stage/usr/local/cargo/bin/" ;; esac
  done
  commit_dir "$stage" "$RUST_IMAGE" \
    --env RUSTUP_HOME=/usr/local/rustup --env CARGO_HOME=/usr/local/cargo \
    --env PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd bash --label "org.opencontainers.image.description=local stand-in for $RUST_IMAGE"
  rm -rf "$stage"
}

make_runtime_base() {
  local root stage p f
  root=$(debian_rootfs)
  stage="$WORK/distroless"
  rm -rf "$stage" && mkdir -p "$stage"
  # The usrmerge links first, so that package paths like /lib64/ld-linux-x86-64.so.2 land in usr/.
  mkdir -p "$stage/usr/bin" "$stage/usr/sbin" "$stage/usr/lib" "$stage/usr/lib64"
  for f in bin sbin lib lib64; do [ -L "$root/$f" ] && cp -a "$root/$f" "$stage/$f"; done
  # Only the files of the packages distroless/cc carries (no shell, no package manager).
  for p in base-files netbase libc6 libgcc-s1 ca-certificates; do
    chroot "$root" dpkg-query -W "$p" >/dev/null 2>&1 || continue
    while IFS= read -r f; do
      # Files and file links; not the usrmerge directory links (/bin, /lib64, ... made above).
      if [ -f "$root$f" ] || { [ -L "$root$f" ] && [ ! -d "$root$f" ]; }; then
        mkdir -p "$stage$(dirname "$f")"
        cp -a "$root$f" "$stage$f"
      fi
    done < <(chroot "$root" dpkg-query -L "$p")
  done
  # The CA bundle that update-ca-certificates generated.
  mkdir -p "$stage/etc/ssl/certs" "$stage/tmp" "$stage/home/nonroot"
  cp -a "$root/etc/ssl/certs/ca-certificates.crt" "$stage/etc/ssl/certs/"
  chmod 1777 "$stage/tmp"
  chown 65532:65532 "$stage/home/nonroot" && chmod 0700 "$stage/home/nonroot"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$stage/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' >"$stage/etc/group"
  commit_dir "$stage" "$RUNTIME_IMAGE" --user 65532:65532 --workingdir /home/nonroot \
    --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    --label "org.opencontainers.image.description=local stand-in for $RUNTIME_IMAGE"
  rm -rf "$stage"
}

ensure_base() {
  local name="$1" maker="$2"
  have_image "$name" && return 0
  if timeout 60 buildah pull --quiet "$name" >/dev/null 2>&1; then
    log "pulled $name"
  elif [ "${NETPROBE_LOCAL_BASES:-1}" = 1 ]; then
    log "no registry answers for $name: making it locally"
    mkdir -p "$WORK"
    "$maker"
  else
    log "cannot pull $name and NETPROBE_LOCAL_BASES=0"; exit 1
  fi
}

ensure_base "$RUST_IMAGE" make_builder_base
ensure_base "$RUNTIME_IMAGE" make_runtime_base
[ "${1:-}" = bases ] && exit 0

log "building $IMAGE (version $VERSION, revision $REVISION)"
start=$(date +%s)
# Docker format: OCI image configs have no SHELL. The CA bundle of this machine goes in as a build
# secret (never into a layer), for networks whose TLS proxy re-signs crates.io.
CA="${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}"
buildah bud --isolation chroot --layers --pull-never --format docker \
  ${CA:+--secret "id=cacert,src=$CA"} \
  --build-arg "VERSION=$VERSION" --build-arg "REVISION=$REVISION" \
  --build-arg "CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  -t "$IMAGE" -f Dockerfile .
log "built $IMAGE in $(( $(date +%s) - start )) s"

# The image's agent runs as its non-root user, and only with its capabilities in the bounding
# set: the kernel refuses to exec a binary whose file capabilities it cannot grant (EPERM), which
# is why the chart adds exactly these three. (Run in the image's own root with chroot: Debian
# 12's buildah 1.28 cannot put CAP_BPF or CAP_PERFMON in a container's bounding set, its
# capability library predates them.)
c=$(buildah from --pull-never "$IMAGE")
trap 'buildah umount "$c" >/dev/null 2>&1; buildah rm "$c" >/dev/null 2>&1 || true' EXIT
root=$(buildah mount "$c")
user=$(buildah inspect --type image --format '{{.Docker.Config.User}}' "$IMAGE")
log "file capabilities: $(getcap "$root/usr/local/bin/otel-netprobe" | awk '{print $2}')"
if setpriv --bounding-set -bpf,-perfmon chroot --userspec="$user" "$root" /usr/local/bin/otel-netprobe --version >/dev/null 2>&1; then
  log "the agent ran without CAP_BPF/CAP_PERFMON in the bounding set: its file capabilities are missing"; exit 1
fi
log "without CAP_BPF/CAP_PERFMON in the bounding set: exec refused, as it must be"
log "as user $user: $(chroot --userspec="$user" "$root" /usr/local/bin/otel-netprobe --version)"
[ -e "$root/bin/sh" ] && { log "the runtime has a shell"; exit 1; }
log "no shell in the runtime; image size $(buildah images --format '{{.Size}}' "$IMAGE")"

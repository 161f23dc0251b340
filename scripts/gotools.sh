#!/usr/bin/env bash
# Builds, from the official Go modules (the Go module proxy), the real parts the tests and the
# demo run, into $TOOLS_DIR/bin:
#   otelcol-netprobe   the OpenTelemetry Collector: collector-config/distribution/ (core + contrib
#                      components the chart's Collector uses, one release)
#   kube-apiserver     Kubernetes' API server, and
#   etcd               the etcd server that release requires: otel-netprobe/tests/tools/apiserver/
# Each is rebuilt only when its module (go.mod, go.sum, *.go) changes: a hash of them is kept
# beside the binary. The module and build caches live under $TOOLS_DIR/go, so a rebuild after a
# version bump downloads and compiles only what changed.
# Usage: gotools.sh [collector|apiserver]...   (default: both)
set -euo pipefail

log() { printf '[setup] %s\n' "$*"; }

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TOOLS_DIR="${NETPROBE_TOOLS_DIR:-$HOME/.cache/otel-netprobe}"
BIN="$TOOLS_DIR/bin"
mkdir -p "$BIN"

command -v go >/dev/null 2>&1 || {
  log "go is missing: this machine kind has Go 1.26 (see README, Requirements)"
  exit 1
}
export GOMODCACHE="$TOOLS_DIR/go/mod" GOCACHE="$TOOLS_DIR/go/build"
# The machine's own Go builds these modules; never fetch another toolchain.
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=0

# The hash of a module's sources: what decides a rebuild.
module_key() {
  (cd "$1" && find . -name '*.go' -o -name go.mod -o -name go.sum | LC_ALL=C sort \
    | xargs sha256sum | sha256sum | cut -d' ' -f1)
}

# The version of `module` that the go.mod in `dir` requires (`v` removed).
required() {
  sed -n "s#^[[:space:]]*$2 v\([^ ]*\).*#\1#p" "$1/go.mod" | head -n1
}

# build NAME DIR PACKAGE [LDFLAGS]: go build PACKAGE in DIR into $BIN/NAME unless its key matches.
build() {
  local name=$1 dir=$2 pkg=$3 ldflags=${4:-} key start
  key="$(module_key "$dir") $(go env GOVERSION) $ldflags"
  if [ -x "$BIN/$name" ] && [ "$(cat "$BIN/.$name.key" 2>/dev/null)" = "$key" ]; then
    return 0
  fi
  log "building $name from the Go module proxy ($(go env GOVERSION); a few minutes on a fresh machine)"
  start=$(date +%s)
  (cd "$dir" && go mod download && go build -trimpath -ldflags "-s -w $ldflags" -o "$BIN/$name.new" "$pkg")
  mv "$BIN/$name.new" "$BIN/$name"
  built=$((built + 1))
  printf '%s' "$key" >"$BIN/.$name.key"
  log "built $name in $(( $(date +%s) - start )) s, $(( $(stat -c %s "$BIN/$name") / 1048576 )) MiB"
}

collector() {
  local dir="$ROOT/collector-config/distribution" release
  # The release is the contrib modules' version: the chart's image tag names the same one
  # (otel/opentelemetry-collector-contrib:<release>), which tests/collector_release.rs checks.
  release=$(required "$dir" 'github.com/open-telemetry/opentelemetry-collector-contrib/exporter/prometheusexporter')
  build otelcol-netprobe "$dir" . "-X main.version=$release"
}

apiserver() {
  local dir="$ROOT/otel-netprobe/tests/tools/apiserver" v
  # The version the server reports (/version, and what Helm checks kubeVersion against): a
  # build outside Kubernetes' own tree would say v0.0.0-master.
  v=$(required "$dir" k8s.io/kubernetes)
  build kube-apiserver "$dir" k8s.io/kubernetes/cmd/kube-apiserver \
    "-X k8s.io/component-base/version.gitVersion=v$v -X k8s.io/component-base/version.gitMajor=${v%%.*} \
     -X k8s.io/component-base/version.gitMinor=$(echo "$v" | cut -d. -f2) -X k8s.io/component-base/version.gitTreeState=clean"
  build etcd "$dir" ./etcd
}

[ $# -gt 0 ] || set -- collector apiserver
built=0
for what in "$@"; do
  case "$what" in
    collector) collector ;;
    apiserver) apiserver ;;
    *) log "gotools.sh: unknown part '$what' (collector, apiserver)"; exit 2 ;;
  esac
done
# The build cache (several GiB after kube-apiserver) is only worth keeping while several
# binaries are built in one run; the module cache stays, so a version bump downloads only the
# modules that changed.
if [ "$built" -gt 0 ]; then go clean -cache; fi

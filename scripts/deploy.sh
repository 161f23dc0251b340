#!/usr/bin/env bash
# `make deploy`: builds the agent image and installs the chart into the current kube context.
# The cluster is checked first (no cluster: one line, exit 1, nothing built). minikube and kind
# get the image loaded into their nodes (imagePullPolicy Never); any other cluster needs
# REGISTRY=<host/path> to push to. Helm is the v4 SDK from make setup's venv (scripts/deploy.py).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${NETPROBE_TOOLS_DIR:-$HOME/.cache/otel-netprobe}/venv/bin/python"
export IMAGE="${IMAGE:-localhost/otel-netprobe:dev}"
[ -x "$PY" ] || { echo "make deploy: the Helm SDK venv is missing: run make setup" >&2; exit 1; }

ctx=$(PYTHONWARNINGS=ignore "$PY" scripts/deploy.py check 2>&1 >/dev/null | grep -v 'symbolic link' || true)
[ -z "$ctx" ] || { echo "$ctx" >&2; exit 1; }
ctx=$("$PY" scripts/deploy.py context)
echo "[deploy] kube context $ctx"

bash scripts/image.sh
repo="${IMAGE%:*}" tag="${IMAGE##*:}" pull=Never
archive=$(mktemp --suffix=.tar)
trap 'rm -f "$archive"' EXIT
case "$ctx" in
  minikube*)
    buildah push --quiet "$IMAGE" "docker-archive:$archive:$IMAGE" && minikube image load "$archive" ;;
  kind-*)
    buildah push --quiet "$IMAGE" "docker-archive:$archive:$IMAGE" && kind load image-archive "$archive" --name "${ctx#kind-}" ;;
  *)
    [ -n "${REGISTRY:-}" ] || { echo "make deploy: context $ctx is neither minikube nor kind: set REGISTRY=<registry/path> to push the image to" >&2; exit 1; }
    repo="$REGISTRY/otel-netprobe" pull=IfNotPresent
    buildah push --quiet "$IMAGE" "docker://$repo:$tag" ;;
esac
"$PY" scripts/deploy.py install "$repo" "$tag" "$pull" 2> >(grep -v 'symbolic link' >&2)

#!/usr/bin/env bash
# Refreshes the chart's copies of the repository's Collector configuration, dashboards and alert
# rules (charts/otel-netprobe/files/). They are real files, not symlinks: GitOps sources (Argo CD,
# Flux) and some packagers skip symlinks, and the dashboards would silently vanish from an install.
# tests/chart.rs fails, naming this script, when a copy and its source differ.
# Usage: bash scripts/chart-files.sh   (or `make chart-files`)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
files="$root/charts/otel-netprobe/files"

# chart folder <- repository folder and the files of it the templates read (nothing else:
# READMEs, runbooks, rule tests and the Collector's Go distribution stay out of the chart).
copy() {
  local dest=$1 src=$2 pattern=$3
  rm -rf "${files:?}/$dest"
  mkdir -p "$files/$dest"
  local n=0 f
  for f in "$root/$src"/$pattern; do
    [ -f "$f" ] || continue
    cp "$f" "$files/$dest/"
    n=$((n + 1))
  done
  [ "$n" -gt 0 ] || { echo "chart-files: no $src/$pattern" >&2; exit 1; }
  echo "chart-files: $n file(s) $src/$pattern -> charts/otel-netprobe/files/$dest/"
}

copy collector collector-config '*.yaml'
copy dashboards dashboards '*.json'
copy alerts alerts '*.yaml'

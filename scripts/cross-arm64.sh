#!/usr/bin/env bash
# Cross-builds, for aarch64, the agent and the `lab` test binary that the arm64 lines of the kernel
# matrix run (tests/lab.rs `kernel_arm64_*`, scripts/vm-run.sh arm64-<line>), and copies both to
# fixed names beside the build, where tests/common/vm.rs looks for them:
#   $TARGET_DIR/aarch64-unknown-linux-gnu/release/lab           the lab suite
#   $TARGET_DIR/aarch64-unknown-linux-gnu/release/otel-netprobe the agent
# The eBPF object embedded in both is the same bpfel object as on amd64 (aya-build derives
# bpf_target_arch from CARGO_CFG_TARGET_ARCH). The linker and C compiler are set here, in the
# environment of this build only: a global cargo config would change every other build.
# Incremental: the build lives in the normal target dir (about 16 min cold on a loaded 2-core machine).
set -euo pipefail

cd "$(dirname "$0")/.."
T=aarch64-unknown-linux-gnu
TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
OUT="$TARGET_DIR/$T/release"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar

json=$(mktemp)
trap 'rm -f "$json"' EXIT
${CARGO:-cargo} test --locked --release --target "$T" -p otel-netprobe --test lab --no-run \
  --message-format=json-render-diagnostics >"$json"
exe=$(python3 -c '
import json, sys
for line in open(sys.argv[1]):
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "lab" and m.get("executable"):
        print(m["executable"])
' "$json" | tail -n1)
[ -n "$exe" ] || { echo "cross-arm64: cargo reported no lab test binary" >&2; exit 1; }
cp -f "$exe" "$OUT/lab"
[ -x "$OUT/otel-netprobe" ] || { echo "cross-arm64: no agent binary in $OUT" >&2; exit 1; }
printf "[cross-arm64] %s (%s)\n" "$OUT/lab" "$(readelf -h "$OUT/lab" | sed -n "s/^ *Machine: *//p")" "$OUT/otel-netprobe" "$(readelf -h "$OUT/otel-netprobe" | sed -n "s/^ *Machine: *//p")"

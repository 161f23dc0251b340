#!/usr/bin/env bash
# Runs each fuzz target (otel-netprobe/fuzz, cargo-fuzz + libFuzzer) for FUZZ_SECONDS each:
# `make fuzz` (minutes each) and `make test` (FUZZ_SECONDS=30, FUZZ_BUILD=quick). Each target
# starts from its committed seeds (fuzz/seeds/<target>) and keeps what it learns in
# fuzz/corpus/<target> (not committed). A crash stops that target, leaves the input in
# fuzz/artifacts/<target>/ and makes this script fail after the others have run. Prints one line
# per target with its time and executions.
#
# FUZZ_BUILD chooses how the targets are built:
#   full  (default, `make fuzz`): optimised, AddressSanitizer, debug assertions and overflow
#         checks, 16 codegen units; 969 s from cold on this machine kind, under load (README).
#   quick (`make test`): unoptimised (cargo's dev profile: debug assertions and overflow checks),
#         no sanitizer. The same targets, seeds and assertions, fewer executions a second, in
#         440 s from cold: the agent's dependencies (kube, tonic, rustls, aya) are most of the
#         build, and optimising them with sanitizer instrumentation is what this leaves out.
#         A panic or failed assertion is a finding either way; only ASan's memory checks of
#         unsafe code are make fuzz's alone.
#
#   FUZZ_SECONDS=600 FUZZ_TARGETS="parser otlp" FUZZ_BUILD=full bash scripts/fuzz.sh
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
FUZZ="$ROOT/otel-netprobe/fuzz"
SECONDS_EACH="${FUZZ_SECONDS:-300}"
TARGETS="${FUZZ_TARGETS:-parser config k8s otlp http}"
MODE="${FUZZ_BUILD:-full}"
case "$MODE" in
  full) BUILD=(--sanitizer address --codegen-units 16) ;;
  quick) BUILD=(--dev --sanitizer none) ;;
  *) echo "[fuzz] FUZZ_BUILD=$MODE: expected full or quick" >&2; exit 2 ;;
esac
TOOLS_DIR="${NETPROBE_TOOLS_DIR:-$HOME/.cache/otel-netprobe}"
CARGO_FUZZ="$TOOLS_DIR/bin/cargo-fuzz"
[ -x "$CARGO_FUZZ" ] || { echo "[fuzz] $CARGO_FUZZ missing: run make setup" >&2; exit 1; }
TOOLCHAIN=nightly
rustup toolchain list | grep -q '^nightly' || TOOLCHAIN=stable  # with RUSTC_BOOTSTRAP, as setup.sh
[ "$TOOLCHAIN" = stable ] && export RUSTC_BOOTSTRAP=1
# cargo-fuzz is a cargo subcommand: run it through the toolchain's cargo.
fuzz() { (cd "$ROOT/otel-netprobe" && cargo +"$TOOLCHAIN" fuzz "$@"); }
export PATH="$TOOLS_DIR/bin:$PATH"

start=$(date +%s)
# Framed like a test binary's output, so scripts/test-summary.sh counts each target as a test
# (and a run that dies before its result line as a crash).
echo "     Running fuzz targets (scripts/fuzz.sh, ${SECONDS_EACH} s each, $MODE build)"
# All targets in one cargo invocation, so the dependencies are built once. In the full build,
# 16 codegen units: the targets link the whole agent (kube, tonic, aya); cargo-fuzz's default
# of one unit makes the first build several times slower on this machine kind for a few
# percent of speed. `run` below is given the same options, or it would rebuild with others.
if ! fuzz build "${BUILD[@]}" >"$FUZZ/build.log" 2>&1; then
  tail -n 40 "$FUZZ/build.log"
  echo "[fuzz] building the targets failed (log: $FUZZ/build.log)"
  exit 1
fi
echo "[time] fuzz build ($MODE): $(( $(date +%s) - start )) s"

failed=()
for t in $TARGETS; do
  mkdir -p "$FUZZ/corpus/$t" "$FUZZ/artifacts/$t"
  dict=()
  [ -f "$FUZZ/dicts/$t.dict" ] && dict=("-dict=$FUZZ/dicts/$t.dict")
  log="$FUZZ/artifacts/$t/last-run.log"
  t0=$(date +%s)
  # -timeout: one input may take at most 10 s; -rss_limit_mb: the process at most 2 GiB.
  fuzz run "${BUILD[@]}" "$t" "$FUZZ/corpus/$t" "$FUZZ/seeds/$t" -- \
    -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$FUZZ/artifacts/$t/" "${dict[@]}" >"$log" 2>&1
  status=$?
  took=$(( $(date +%s) - t0 ))
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
  corpus=$(find "$FUZZ/corpus/$t" -type f | wc -l)
  if [ "$status" -eq 0 ]; then
    echo "[time] fuzz $t: $took s, ${runs:-?} executions, corpus $corpus inputs, no finding"
  else
    failed+=("$t")
    echo "[time] fuzz $t: $took s, FAILED (exit $status); the input is in $FUZZ/artifacts/$t/:"
    grep -E 'panicked|ERROR: |SUMMARY|Test unit written' "$log" | head -n 8
  fi
done
total=$(wc -w <<<"$TARGETS")
echo "[time] fuzz: $(( $(date +%s) - start )) s for ${TARGETS// /, } at ${SECONDS_EACH} s each"
echo "test result: $([ ${#failed[@]} -eq 0 ] && echo ok || echo FAILED). $(( total - ${#failed[@]} )) passed; ${#failed[@]} failed; 0 ignored; 0 measured; 0 filtered out; finished in $(( $(date +%s) - start ))s"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: ${#failed[@]} of $total targets found a failure: ${failed[*]}"
  exit 1
fi

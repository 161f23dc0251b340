#!/usr/bin/env bash
# Reads the output of `cargo test` (the file given, or stdin) and prints one line:
#   tests: N passed, M failed
# A test binary that started ("Running ...") but printed no "test result:" line crashed (a signal,
# an abort, a panic outside a test): it counts as one failed test and is named. A build that
# failed is said too. Exits 1 when anything failed, 0 otherwise. Used by `make test`.
set -euo pipefail
awk '
  /^ *(Running|Doc-tests) / {
    if (open) { crashed++; names = names "\n  crashed before its summary: " current }
    open = 1; current = $0; sub(/^ *(Running|Doc-tests) /, "", current)
  }
  /^test result:/ { passed += $4; failed += $6; open = 0 }
  /^error: could not compile/ { build = 1 }
  END {
    if (open) { crashed++; names = names "\n  crashed before its summary: " current }
    printf "tests: %d passed, %d failed%s\n", passed, failed + crashed, names
    if (build) print "  the build failed: see the errors above"
    exit (failed + crashed + build > 0) ? 1 : 0
  }
' "${1:-/dev/stdin}"

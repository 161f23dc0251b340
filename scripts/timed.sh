#!/usr/bin/env bash
# timed.sh SECTION COMMAND...: runs COMMAND and prints how long the section took, whatever its
# outcome (make test's sections: setup, lint, tests), and keeps its exit status.
set -u
section=$1; shift
start=$(date +%s)
"$@"
status=$?
printf '[time] %s: %d s%s\n' "$section" "$(( $(date +%s) - start ))" "$([ $status -eq 0 ] || echo " (exit $status)")"
exit $status

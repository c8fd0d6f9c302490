#!/usr/bin/env bash
# Runs the whole test suite: unit, reference-vs-PyTorch and end-to-end tests
# (ctest), then the unit tests built with clang, ASan and UBSan, then a short
# fuzzing run of every parser of outside input (docs/reliability.md).
#   scripts/test.sh            everything (CI runs this)
#   scripts/test.sh --quick    the ctest suite alone; further arguments go to ctest
set -euo pipefail
cd "$(dirname "$0")/.."
quick=false
if [ "${1:-}" = "--quick" ]; then quick=true; shift; fi
build=${FRACTURE_BUILD_DIR:-build}
# Each phase's wall time, for keeping CI inside its limit (issue 39).
phase_start=$SECONDS
took() { echo "== $1 took $((SECONDS - phase_start)) s"; phase_start=$SECONDS; }
ninja -C "$build" --quiet 2>&1 | grep -v "^ninja: no work to do" || true
(cd "$build" && ctest --output-on-failure -j2 "$@")
took "build check and ctest"
$quick && exit 0
echo "== unit tests under ASan + UBSan (scripts/sanitize.sh); the kill-at-every-write test runs above only"
scripts/sanitize.sh -- --gtest_filter='-CrashSafety.KilledAtEveryWrite*' --gtest_brief=1
took "sanitised build and unit tests"
echo "== fuzzing smoke run: fixed runs from a fixed seed per target (scripts/fuzz.sh --smoke)"
scripts/fuzz.sh --smoke
took "fuzzing smoke run"

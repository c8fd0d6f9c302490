#!/usr/bin/env bash
# Builds fracture with clang, AddressSanitizer and UndefinedBehaviorSanitizer
# (and the libFuzzer targets, tests/fuzz/) in build-asan/, then runs the unit
# tests there. Any sanitizer report fails the run.
#   scripts/sanitize.sh                 build and run the unit tests
#   scripts/sanitize.sh --build-only    build only (scripts/fuzz.sh uses it)
#   scripts/sanitize.sh -- --gtest_filter=Parsers.*   arguments for the test binary
set -euo pipefail
cd "$(dirname "$0")/.."
build=${FRACTURE_ASAN_BUILD_DIR:-build-asan}
build_only=false
if [ "${1:-}" = "--build-only" ]; then build_only=true; shift; fi
[ "${1:-}" = "--" ] && shift
if [ ! -f "$build/build.ninja" ]; then
  CXX=clang++ CC=clang cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DFRACTURE_SANITIZE=address,undefined -DFRACTURE_BUILD_FUZZ=ON >/dev/null
fi
ninja -C "$build" --quiet 2>&1 | grep -v "^ninja: no work to do" || true
test -x "$build/tests/unit_tests" || { echo "error: sanitised build failed" >&2; exit 1; }
$build_only && exit 0
# LibTorch and OpenCV are not instrumented; their own allocations that live
# until exit are not leaks of ours (tests/sanitizer/lsan.supp lists them).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/sanitizer/lsan.supp:print_suppressions=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
cd "$build/tests" && ./unit_tests "$@"

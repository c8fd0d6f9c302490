#!/usr/bin/env bash
# Runs each libFuzzer target (tests/fuzz/: safetensors, torch zip, pickle,
# manifest CSV, YOLO labels, image decoding incl. DICOM) for SECONDS each
# (default 60) on a seed corpus generated here, under ASan + UBSan.
#   scripts/fuzz.sh [SECONDS] [TARGET ...]
# Prints runs, coverage and corpus size per target; a crash, leak, timeout
# or sanitizer report fails the run and leaves the input in build-asan/fuzz-artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(safetensors torch_zip pickle manifest yolo image)
build=${FRACTURE_ASAN_BUILD_DIR:-build-asan}
scripts/sanitize.sh --build-only
seeds=$build/fuzz-seeds
rm -rf "$seeds"
"$build/tests/fuzz/make_fuzz_seeds" "$seeds" >/dev/null
/usr/bin/python3 tests/fuzz/make_pickle_seeds.py "$seeds" >/dev/null
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/sanitizer/lsan.supp:print_suppressions=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
mkdir -p "$build/fuzz-artifacts" "$build/fuzz-logs"
failed=0
for t in "${targets[@]}"; do
  corpus=$build/fuzz-corpus/$t
  mkdir -p "$corpus" "$seeds/$t"
  log=$build/fuzz-logs/$t.log
  if "$build/tests/fuzz/fuzz_$t" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=3072 -max_len=65536 \
      -print_final_stats=1 -artifact_prefix="$build/fuzz-artifacts/$t-" "$corpus" "$seeds/$t" >"$log" 2>&1; then
    runs=$(grep -ao 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
    cov=$(grep -ao 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo '?')
    echo "fuzz_$t: ${seconds}s, $runs runs, coverage $cov edges, corpus $(ls "$corpus" | wc -l) inputs: no crash"
  else
    echo "fuzz_$t: FAILED (log: $log)"
    grep -aE "ERROR|SUMMARY|Test unit written|deadly signal" "$log" | head -20
    failed=1
  fi
done
exit $failed

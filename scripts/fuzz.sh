#!/usr/bin/env bash
# Runs each libFuzzer target (tests/fuzz/: safetensors, torch zip, pickle,
# manifest CSV, YOLO labels, image decoding incl. DICOM) for SECONDS each
# (default 60) on a seed corpus generated here, under ASan + UBSan.
#   scripts/fuzz.sh [SECONDS] [TARGET ...]
#   scripts/fuzz.sh --smoke      a fixed number of runs per target from a fixed
#                                seed and the seeds alone: the same inputs on
#                                every machine (what scripts/test.sh runs)
# Prints runs, coverage and corpus size per target; a crash, leak, timeout
# or sanitizer report fails the run and leaves the input in build-asan/fuzz-artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
smoke=false
if [ "${1:-}" = "--smoke" ]; then smoke=true; shift; fi
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
  limit=(-max_total_time="$seconds")
  label="${seconds}s"
  if $smoke; then  # runs: about 20 s each here (torch_zip is slow: LibTorch builds a backtrace per bad archive)
    corpus=$build/fuzz-smoke/$t
    rm -rf "$corpus"
    case $t in torch_zip) runs=300 ;; image) runs=3000 ;; *) runs=100000 ;; esac
    limit=(-runs=$runs -seed=1)
    label="seed 1"
  fi
  mkdir -p "$corpus" "$seeds/$t"
  # Inputs that once crashed a target (tests/fuzz/regressions/) are run every time.
  cp tests/fuzz/regressions/$t/* "$seeds/$t/" 2>/dev/null || true
  log=$build/fuzz-logs/$t.log
  if "$build/tests/fuzz/fuzz_$t" "${limit[@]}" -timeout=20 -rss_limit_mb=3072 -max_len=65536 \
      -print_final_stats=1 -artifact_prefix="$build/fuzz-artifacts/$t-" "$corpus" "$seeds/$t" >"$log" 2>&1; then
    done_runs=$(grep -ao 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
    cov=$(grep -ao 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo '?')
    echo "fuzz_$t: $label, $done_runs runs, coverage $cov edges, corpus $(ls "$corpus" | wc -l) inputs: no crash"
  else
    echo "fuzz_$t: FAILED (log: $log)"
    grep -aE "ERROR|SUMMARY|Test unit written|deadly signal" "$log" | head -20
    failed=1
  fi
done
exit $failed

#!/usr/bin/env bash
# The CUDA check, for a machine with an NVIDIA GPU and a CUDA LibTorch 2.x:
#   1. builds fracture against that LibTorch (tests included, no benchmarks);
#   2. scores a folder of radiographs with the shipped model on the CPU and on
#      the GPU: per-image probabilities must agree within 1e-2, and the labels
#      at the model's threshold must be the same, except where a probability
#      lies within 1e-2 of it (LibTorch runs convolutions on the GPU in TF32
#      by default: on an H200 the largest difference over 300 radiographs was
#      0.0036, the mean 0.0002; docs/cuda.md);
#   3. trains the default recipe on that folder on the CPU and on the GPU
#      (same seed; wall times and validation ROC-AUC side by side), plus a
#      short full fine-tune on the GPU, and draws Grad-CAM maps there;
#   4. runs the whole test suite there (training and inference in the tests
#      pick the GPU: --device auto).
# Every stage runs even when an earlier one failed; a table of results comes
# last and the exit status says whether every check passed.
#
# Usage: scripts/cuda_check.sh TORCH_CMAKE_PREFIX FRACATLAS_DIR [WORK_DIR [CTEST_ARGS...]]
#   TORCH_CMAKE_PREFIX  LibTorch's CMake folder, for a PyTorch wheel:
#                       $(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
#   FRACATLAS_DIR       images in FracAtlas's layout (images/Fractured,
#                       images/Non_fractured, dataset.csv, Annotations/YOLO)
#   WORK_DIR            build folder and outputs (default: build-cuda)
#   CTEST_ARGS          passed to ctest, e.g. -E NAME to leave out a test whose
#                       data is not on that machine
set -uo pipefail
torch_prefix=${1:?usage: $0 TORCH_CMAKE_PREFIX FRACATLAS_DIR [WORK_DIR]}
data=${2:?usage: $0 TORCH_CMAKE_PREFIX FRACATLAS_DIR [WORK_DIR]}
work=${3:-build-cuda}
shift $(($# < 3 ? $# : 3))
ctest_args=("$@")
cd "$(dirname "$0")/.."
mkdir -p "$work"
work=$(cd "$work" && pwd)
bin=$work/src/fracture
jobs=$(nproc)
results=()
failed=0
note() { results+=("$1|$2|$3"); [ "$2" = FAIL ] && failed=1; echo "== $1: $2 $3"; }
seconds() { local t0=$SECONDS; "$@"; local rc=$?; elapsed=$((SECONDS - t0)); return $rc; }

nvidia-smi -L || note gpu FAIL "nvidia-smi found no GPU"

# 1. Build.
if seconds cmake -S . -B "$work" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$torch_prefix" \
     -DFRACTURE_BUILD_BENCH=OFF -DFRACTURE_REFERENCE_PYTHON="$(command -v python3)" >"$work/cmake.log" 2>&1 &&
   seconds ninja -C "$work" -j"$jobs" >"$work/build.log" 2>&1; then
  note build ok "${elapsed}s of ninja -j$jobs"
else
  tail -40 "$work/cmake.log" "$work/build.log"
  note build FAIL "see cmake.log / build.log"
fi

# 2. The shipped model: CPU against GPU on the same images.
if [ -x "$bin" ]; then
  for dev in cpu cuda; do
    seconds "$bin" predict "$data/images" --device $dev --workers 8 -b 32 -o "$work/predict-$dev.csv" 2>"$work/predict-$dev.log"
    note "predict $dev" "$([ -s "$work/predict-$dev.csv" ] && echo ok || echo FAIL)" \
      "$(($(wc -l <"$work/predict-$dev.csv" 2>/dev/null || echo 1) - 1)) images in ${elapsed}s"
  done
  # columns: path,probability,label,threshold,model
  verdict=$(awk -F, 'FNR == 1 { next }
    NR == FNR { p[$1] = $2; l[$1] = $3; next }
    ($1 in p) { n++; d = $2 - p[$1]; if (d < 0) d = -d; s += d; if (d > m) m = d;
                if ($3 != l[$1]) { near = ($2 - $4 < 1e-2 && $4 - $2 < 1e-2); flips += !near } }
    END { printf "%d images, max |p_cpu - p_cuda| = %.2g, mean %.2g, label flips away from the threshold: %d\n", n, m, s / n, flips;
          exit !(n > 0 && m <= 1e-2 && flips == 0) }' "$work/predict-cpu.csv" "$work/predict-cuda.csv")
  note "cpu = cuda (shipped model)" "$([ $? -eq 0 ] && echo ok || echo FAIL)" "$verdict"
fi

# 3. Training: the default recipe on both devices, a full fine-tune and Grad-CAM on the GPU.
auc() { grep -o '"val_roc_auc": *[0-9.]*' "$1/threshold.json" 2>/dev/null | grep -o '[0-9.]*$' | cut -c1-6; }
if [ -x "$bin" ] && "$bin" split --data "$data" -o "$work/split.csv" >"$work/split.log" 2>&1; then
  for dev in cpu cuda; do
    rm -rf "$work/train-$dev"
    seconds "$bin" train --data "$work/split.csv" --out "$work/train-$dev" --device $dev --workers 8 >"$work/train-$dev.log" 2>&1
    note "train $dev (default recipe)" "$([ -s "$work/train-$dev/best.safetensors" ] && echo ok || echo FAIL)" \
      "${elapsed}s, val ROC-AUC $(auc "$work/train-$dev")"
  done
  rm -rf "$work/train-full"
  seconds "$bin" train --data "$work/split.csv" --out "$work/train-full" --device cuda --freeze full --epochs 3 \
    --average 0 --workers 8 >"$work/train-full.log" 2>&1
  note "train cuda --freeze full, 3 epochs" "$([ -s "$work/train-full/best.safetensors" ] && echo ok || echo FAIL)" \
    "${elapsed}s, val ROC-AUC $(auc "$work/train-full")"
  rm -rf "$work/cam"
  seconds "$bin" predict "$data/images/Fractured" --device cuda --cam "$work/cam" -o "$work/cam.csv" 2>"$work/cam.log"
  note "grad-cam cuda" "$([ "$(ls "$work/cam" 2>/dev/null | wc -l)" -gt 0 ] && echo ok || echo FAIL)" \
    "$(ls "$work/cam" 2>/dev/null | wc -l) maps in ${elapsed}s"
else
  note split FAIL "see $work/split.log"
fi

# 4. The test suite (last: the longest stage).
if [ -x "$bin" ]; then
  if seconds ctest --test-dir "$work" -j"$((jobs / 2))" --output-on-failure --timeout 300 "${ctest_args[@]}" >"$work/ctest.log" 2>&1; then
    note tests ok "$(grep -o '[0-9]*% tests passed.*' "$work/ctest.log" | head -1) (${elapsed}s)"
  else
    grep -E "tests passed|\(Failed\)|\(Timeout\)|Not Run" "$work/ctest.log"
    note tests FAIL "$(grep -o '[0-9]*% tests passed.*' "$work/ctest.log" | head -1)"
  fi
fi

echo
printf '%-36s %-5s %s\n' check result detail
for r in "${results[@]}"; do IFS='|' read -r a b c <<<"$r"; printf '%-36s %-5s %s\n' "$a" "$b" "$c"; done
exit $failed

#!/usr/bin/env bash
# One-command setup on Debian 12: system packages, pretrained weights, build.
# Idempotent; prints nothing but errors when there is nothing to do.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential cmake ninja-build pkg-config
  libtorch-dev libopencv-dev libdcmtk-dev libcli11-dev nlohmann-json3-dev libspdlog-dev libfmt-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  # fracture serve (HTTP), and the browser test of its page (tests/browser/)
  libcpp-httplib-dev chromium chromium-driver
  # fracture export (ONNX)
  libonnx-dev libprotobuf-dev
  # the CPU inference body as one oneDNN program (models/onednn_body.cpp): the oneDNN 2.6 LibTorch links
  libdnnl-dev
  # data-parallel training: the gloo headers that c10d's process group needs (train/distributed.cpp)
  libgloo-dev
  # the sanitised build and the libFuzzer targets (scripts/sanitize.sh, scripts/fuzz.sh)
  clang libclang-rt-14-dev
  # setup (weight conversion) and reference tests only - never used at run time
  python3 python3-pip python3-venv python3-numpy python3-torch python3-torchvision python3-sklearn python3-skimage python3-pil
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

scripts/fetch_weights.sh

# ONNX Runtime for the reference test of `fracture export` (tests only, never
# at run time): a virtual environment in .venv-onnx, versions pinned.
venv=.venv-onnx
if ! "$venv/bin/python" -c "import onnxruntime, numpy, PIL" 2>/dev/null; then
  echo "making $venv (onnxruntime, numpy, pillow from PyPI; for the export's reference test)"
  /usr/bin/python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check onnxruntime==1.32.0 numpy==2.4.6 pillow==12.0.0 ||
    { echo "error: could not install onnxruntime into $venv (command: $venv/bin/pip install onnxruntime==1.32.0 numpy==2.4.6 pillow==12.0.0)" >&2; exit 1; }
fi

build=${FRACTURE_BUILD_DIR:-build}
if [ ! -f "$build/build.ninja" ]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFRACTURE_BUILD_BENCH=ON ${CMAKE_ARGS:-} >/dev/null
fi
ninja -C "$build" --quiet 2>&1 | grep -v "^ninja: no work to do" || true
test -x "$build/src/fracture" || { echo "error: build failed" >&2; exit 1; }

# `fracture` on PATH: a link to this build in /usr/local/bin (the binary finds
# the shipped model through the link). Left alone if another fracture is there.
link=/usr/local/bin/fracture
target="$(pwd)/$build/src/fracture"
if [ "$(readlink -f "$link" 2>/dev/null)" != "$(readlink -f "$target")" ]; then
  if [ -e "$link" ] && [ ! -L "$link" ]; then
    echo "note: $link exists and is not ours; run fracture as $target" >&2
  else
    sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd ln -sfn "$target" "$link" && echo "linked $link -> $target"
  fi
fi

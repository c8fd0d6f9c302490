#!/usr/bin/env bash
# The default recipe (issue 16, docs/results.md "Two networks instead of
# one" and "Shipping the ensemble"): train the default `fracture train`
# recipe twice from the same ImageNet start, once on FracAtlas alone and once
# on FracAtlas and a second data set together, and join the two as an
# ensemble (`fracture ensemble`: both networks score every image, their
# log-odds averaged). Over three seeds it kept FracAtlas validation ROC-AUC
# (0.932 against 0.933 for FracAtlas alone) and gained 0.13 on the other
# source's validation split over FracAtlas alone, at two networks' inference
# time. About 55 minutes on a 2-core AVX-512 CPU.
#
#   scripts/train_default.sh [--out runs/default] [--seed 42] [--data ../shared/data] [-- TRAIN FLAGS...]
#
# Writes OUT/split-atlas.csv, OUT/split-both.csv, the two runs OUT/atlas and
# OUT/both, and the model OUT/ensemble.safetensors. Flags after -- go to both
# trainings (e.g. `-- --epochs 1 --freeze head --size 64` for a quick look).
# A run already finished is not trained again.
set -euo pipefail
fracture=${FRACTURE:-fracture}
out=runs/default
seed=42
data=../shared/data
while [ $# -gt 0 ]; do
  case $1 in
    --out) out=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "usage: $0 [--out DIR] [--seed S] [--data DIR] [-- TRAIN FLAGS...]" >&2; exit 2 ;;
  esac
done
mkdir -p "$out"

# Each source is split on its own (seed 42 whatever --seed), so FracAtlas's rows
# are the same in both manifests.
[ -f "$out/split-atlas.csv" ] || "$fracture" split --data "$data/fracatlas" --out "$out/split-atlas.csv" >&2
[ -f "$out/split-both.csv" ] ||
  "$fracture" split --data "$data/fracatlas" --data "$data/bone-fracture-yolo" --out "$out/split-both.csv" >&2

for run in atlas both; do
  [ -f "$out/$run/best.safetensors" ] && { echo "$out/$run: trained already" >&2; continue; }
  resume=()
  [ -d "$out/$run/state" ] && resume=(--resume)  # an interrupted run goes on where it stopped
  "$fracture" train --data "$out/split-$run.csv" --out "$out/$run" --seed "$seed" ${resume[@]+"${resume[@]}"} "$@" >&2
done

"$fracture" ensemble "$out/atlas/best.safetensors" "$out/both/best.safetensors" --data "$out/split-both.csv" \
  -o "$out/ensemble.safetensors"

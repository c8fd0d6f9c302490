#!/usr/bin/env bash
# Issue 16's runs: how models trained on FracAtlas, on bone-fracture-yolo and
# on both do on each data set's validation split (docs/results.md).
#
#   scripts/sources.sh                # train what is missing, score validation, print the table
#   scripts/sources.sh --no-train     # only score and tabulate the runs already trained
#   scripts/sources.sh --only NAME... # train and score only these runs
#
# Every run trains the default recipe with `fracture train --data MANIFEST
# --out runs/NAME --seed S` and is scored with `fracture evaluate --data
# runs/split-both.csv --split val`, which reports each source apart. The
# test splits are never scored here.
set -euo pipefail
cd "$(dirname "$0")/.."

fracture=${FRACTURE:-build/src/fracture}
data=${FRACTURE_DATA:-../shared/data}
train=1
only=()
while [ $# -gt 0 ]; do
  case $1 in
    --no-train) train=0; shift ;;
    --only) shift; only=("$@"); break ;;
    *) echo "usage: $0 [--no-train] [--only NAME...]" >&2; exit 2 ;;
  esac
done

# The three manifests: each source is split on its own, so the FracAtlas and
# bone-fracture-yolo rows of split-both.csv are split.csv and split-yolo.csv.
# --no-mirror-match: the splits these runs were made on (docs/results.md).
[ -f runs/split.csv ] || "$fracture" split --data "$data/fracatlas" --out runs/split.csv >/dev/null
[ -f runs/split-yolo.csv ] || "$fracture" split --data "$data/bone-fracture-yolo" --no-mirror-match --out runs/split-yolo.csv >/dev/null
[ -f runs/split-both.csv ] ||
  "$fracture" split --data "$data/fracatlas" --data "$data/bone-fracture-yolo" --no-mirror-match --out runs/split-both.csv >/dev/null

# name | manifest (or @MODEL: a model file, not trained here; or average:A+B:
# the weight average of runs A and B, `fracture average`) | seed | training data [| extra train flags]
runs=(
  "shipped|@model/fracatlas.safetensors|42|the shipped model (since the evening of 2026-12-01: runs/ensemble-42 in float16)"
  "both-42|runs/split-both.csv|42|FracAtlas + bone-fracture-yolo"
  "atlas-42|runs/split.csv|42|FracAtlas (the previous shipped model's run, retrained; half of average-42)"
  "yolo-42|runs/split-yolo.csv|42|bone-fracture-yolo"
  "both-7|runs/split-both.csv|7|FracAtlas + bone-fracture-yolo"
  "both-1|runs/split-both.csv|1|FracAtlas + bone-fracture-yolo"
  "atlas-7|runs/split.csv|7|FracAtlas"
  "atlas-1|runs/split.csv|1|FracAtlas"
  "intensity-42|runs/split.csv|42|FracAtlas, scanner-like intensity views|--augment-kind intensity --augment-views 3"
  "geometric-42|runs/split.csv|42|FracAtlas, cropped, scaled and turned views|--augment-kind geometric --augment-views 3"
  "average-42|average:atlas-42+both-42|42|weight average of atlas-42 and both-42"
  "average-7|average:atlas-7+both-7|7|weight average of atlas-7 and both-7"
  "average-1|average:atlas-1+both-1|1|weight average of atlas-1 and both-1"
  "negatives-42|runs/split-both.csv|42|FracAtlas + bone-fracture-yolo, its presumed negatives drawn half as often|--source-weights bone-fracture-yolo/non_fractured=0.5"
  "average-negatives-42|average:atlas-42+negatives-42|42|weight average of atlas-42 and negatives-42"
  "standardise-42|runs/split.csv|42|FracAtlas, per-image standardisation|--standardise"
)

# shellcheck source=run_table.sh
. scripts/run_table.sh
wanted() { [ ${#only[@]} = 0 ] && return 0; local r; for r in "${only[@]}"; do [ "$r" = "$1" ] && return 0; done; return 1; }
auc() {  # "0.936 (0.903–0.962)" of one source in an evaluation's metrics.json
  jq -r --arg s "$2" '.by_source[$s].roc_auc | "\(.value*1000|round/1000) (\(.ci95_low*1000|round/1000)–\(.ci95_high*1000|round/1000))"' "$1"
}

rows=""
for spec in "${runs[@]}"; do
  IFS='|' read -r name manifest seed what extra <<<"$spec"
  read -r -a extra <<<"${extra:-}"
  wanted "$name" || continue
  model=runs/$name/best.safetensors
  [[ $manifest == @* ]] && model=${manifest#@}
  if [ $train = 1 ] && [ ! -f "$model" ] && [[ $manifest == average:* ]]; then
    IFS='+' read -r a b <<<"${manifest#average:}"
    echo "== averaging $a and $b into $name" >&2
    mkdir -p "runs/$name"
    "$fracture" average "runs/$a/best.safetensors" "runs/$b/best.safetensors" --data runs/split-both.csv -o "$model" >&2
  elif [ $train = 1 ] && [ ! -f "$model" ]; then
    echo "== training $name" >&2
    "$fracture" train --data "$manifest" --out "runs/$name" --seed "$seed" ${extra[@]+"${extra[@]}"} >&2
  fi
  [ -f "$model" ] || { echo "skipping $name: no $model" >&2; continue; }
  out=runs/$name/eval-val-both
  if [ ! -f "$out/metrics.json" ] || [ "$model" -nt "$out/metrics.json" ]; then
    echo "== evaluating $name on both validation splits" >&2
    "$fracture" evaluate --precision fp32 -m "$model" --data runs/split-both.csv --split val -o "$out" >/dev/null
  fi
  m=$out/metrics.json
  wall=$( [ -f "runs/$name/train.log" ] && wall_of "runs/$name" || echo "–")
  rows+="| $name | $what | $seed | $wall | $(auc "$m" fracatlas) | $(auc "$m" bone-fracture-yolo) |"$'\n'
done

printf '%s' "| run | trained on | seed | train wall | FracAtlas val ROC-AUC (95% CI) | bone-fracture-yolo val ROC-AUC (95% CI) |
|---|---|---|---|---|---|
$rows"

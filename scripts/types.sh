#!/usr/bin/env bash
# Issue 18: fracture types on bone-break-types (docs/results-types.md).
#
#   scripts/types.sh [NAME...]       split, train the candidate recipes (or only those named),
#                                    score each on validation
#   scripts/types.sh --test NAME     score run NAME on the test split, once, after the choice;
#                                    and the same recipe on a leaky split, to show what leaks
#
# The split keeps copies of one figure together (mirrored, turned, brightened
# or Roboflow-named copies: docs/data.md). The leaky split deals images out one
# by one, ignoring those groups, as the published results on this set did.
set -euo pipefail
cd "$(dirname "$0")/.."

fracture=${FRACTURE:-build/src/fracture}
data=${FRACTURE_DATA:-../shared/data}/bone-break-types
split=runs/split-types.csv

# name | extra train flags (the rest is the default recipe)
# (first round: default, feataug; second round: default, lite2, views4, last5; third: full; rules in docs/results-types.md)
candidates=(
  "types-default|"
  "types-feataug|--feature-augment"
  "types-lite2|-m efficientnet_lite2"
  "types-views4|--augment-views 4 --augment-kind both"
  "types-last5|--freeze last:5"
  "types-full|--freeze full --cache off"
)

[ -f $split ] || "$fracture" split --data "$data" --out $split >/dev/null

# shellcheck source=run_table.sh
. scripts/run_table.sh
train_and_score() {  # NAME MANIFEST SPLIT FLAGS...
  local name=$1 manifest=$2 which=$3; shift 3
  if [ ! -f "runs/$name/best.safetensors" ]; then
    echo "== training $name" >&2
    # shellcheck disable=SC2068
    "$fracture" train --data "$manifest" --out "runs/$name" --seed 42 $@ >&2
  fi
  "$fracture" evaluate -m "runs/$name/best.safetensors" --data "$manifest" --split "$which" \
    -o "runs/$name/eval-$which" >/dev/null
}
row() {  # NAME SPLIT: a table row of its evaluation
  local m=runs/$1/eval-$2/metrics.json
  echo "| $1 | $(wall_of "runs/$1") | $(ci "$m" accuracy) | $(ci "$m" balanced_accuracy) | $(ci "$m" macro_f1) | $(ci "$m" macro_roc_auc) | $(ci "$m" top2_accuracy) |"
}
header="| run | train wall | accuracy | balanced accuracy | macro F1 | macro ROC-AUC (one-vs-rest) | top-2 accuracy |
|---|---|---|---|---|---|---|"

if [ "${1:-}" = "--test" ]; then
  name=$2
  flags=""
  for spec in "${candidates[@]}"; do IFS='|' read -r n f <<<"$spec"; [ "$n" = "$name" ] && flags=$f; done
  train_and_score "$name" $split test
  # The leaky split: images dealt out one by one (seeded, about 70/15/15), ignoring their groups.
  leaky=runs/split-types-leaky.csv
  awk -F, 'BEGIN { OFS = ","; srand(42) } NR == 1 { print; next }
           { r = rand(); $4 = r < 0.7 ? "train" : r < 0.85 ? "val" : "test"; $5 = $1; print }' $split >$leaky
  # shellcheck disable=SC2086
  train_and_score "$name-leaky" $leaky test $flags
  echo "$header"
  row "$name" test
  row "$name-leaky" test
  exit 0
fi

echo "$header"
for spec in "${candidates[@]}"; do
  IFS='|' read -r name flags <<<"$spec"
  if [ $# -gt 0 ] && [[ " $* " != *" $name "* ]]; then continue; fi
  # shellcheck disable=SC2086
  train_and_score "$name" $split val $flags
  row "$name" val
done

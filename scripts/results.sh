#!/usr/bin/env bash
# Reruns the accuracy experiments and rewrites the table in docs/results.md.
#
#   scripts/results.sh                 # train what is missing, score val and test, rewrite the table
#   scripts/results.sh --splits val    # choose on validation without looking at the test split
#   scripts/results.sh --rerun lite0   # train these runs again even if they exist
#   scripts/results.sh --no-train      # only score and tabulate the runs already trained
#
# Every run trains with `fracture train --data runs/split.csv --out runs/NAME FLAGS`
# and is scored with `fracture evaluate` at the threshold it chose on validation.
# A run whose flags start with @BASE reuses runs/BASE's model and only changes
# how it is evaluated (e.g. test-time augmentation); @A+B+... evaluates the
# ensemble of runs A, B, ... (`fracture evaluate --ensemble`, threshold chosen
# on validation). Wall time is the training command's own total, read from its
# train.log (an ensemble's: the sum of its members').
set -euo pipefail
cd "$(dirname "$0")/.."

fracture=${FRACTURE:-build/src/fracture}
split_csv=${SPLIT_CSV:-runs/split.csv}
data=${FRACTURE_DATA:-../shared/data/fracatlas}
splits="val test"
rerun=()
train=1
while [ $# -gt 0 ]; do
  case $1 in
    --splits) splits=$2; shift 2 ;;
    --no-train) train=0; shift ;;
    --rerun) shift; rerun=("$@"); break ;;
    *) echo "usage: $0 [--splits 'val test'] [--no-train] [--rerun NAME...]" >&2; exit 2 ;;
  esac
done

# name | training flags (or @base) | evaluation flags | what it tests
runs=(
  "lite0-head|--freeze head --epochs 10 --size 224 --mixup 0 --average 0 --box-loss 0 --cell-pooling 0||classifier only"
  "lite0-last3|--freeze last:3 --epochs 15 --size 224 --mixup 0 --average 0 --box-loss 0 --cell-pooling 0||last 3 stages, 15 epochs"
  "lite0|--size 224 --mixup 0 --average 0 --box-loss 0 --cell-pooling 0||last 3 stages, 12 epochs, 224 px (the first default)"
  "lite0-views4|--size 224 --augment-views 4 --mixup 0 --average 0 --box-loss 0 --cell-pooling 0||+ 3 augmented cached views"
  "lite0-320|--size 320 --mixup 0 --average 0 --box-loss 0 --cell-pooling 0||320 px"
  "lite0-320-tta|@lite0-320|--tta|320 px + mirror TTA"
  "lite0-384|--size 384 --mixup 0 --average 0 --box-loss 0 --cell-pooling 0||384 px (the default recipe and shipped model until the third session)"
  "lite0-384-tta|@lite0-384|--tta|384 px + mirror TTA"
  "lite0-320-clahe|--size 320 --clahe --mixup 0 --average 0 --box-loss 0 --cell-pooling 0||320 px + CLAHE"
  "lite0-448|--size 448 --mixup 0 --average 0 --box-loss 0 --cell-pooling 0||448 px"
  "lite0-384-rerun|--mixup 0 --average 0 --box-loss 0 --cell-pooling 0||the second-session default recipe, rerun with that session's code"
  "lite0-384-ema|--ema 0.998 --mixup 0 --average 0 --box-loss 0 --cell-pooling 0||384 px + weight EMA (decay 0.998, ~3 epochs)"
  "lite1-320|--model efficientnet_lite1 --size 320 --mixup 0 --average 0 --box-loss 0 --cell-pooling 0||EfficientNet-Lite1, 320 px"
  "lite0-384-faug|--feature-augment --mixup 0 --average 0 --box-loss 0 --cell-pooling 0||384 px + cached feature maps mirrored and shifted each epoch"
  "lite2-320|--model efficientnet_lite2 --size 320 --mixup 0 --average 0 --box-loss 0 --cell-pooling 0||EfficientNet-Lite2, 320 px"
  "lite0-384-mixup|--mixup 0.4 --average 0 --box-loss 0 --cell-pooling 0||384 px + mixup of cached feature maps (the default recipe and shipped model in the third session)"
  "lite0-384-mixup-seed7|--seed 7 --average 0 --box-loss 0 --cell-pooling 0||the default recipe (mixup), seed 7"
  "lite0-384-seed7|--seed 7 --mixup 0 --average 0 --box-loss 0 --cell-pooling 0||384 px without mixup, seed 7"
  "ens-lite0-lite1|@lite0-384-rerun+lite1-320||ensemble: lite0-384-rerun + lite1-320 (mean log-odds)"
  "ens-lite012|@lite0-384-rerun+lite1-320+lite2-320||ensemble: + lite2-320"
  "ens-lite0-x2|@lite0-384+lite0-384-rerun||ensemble of the two plain Lite0-384 runs"
  "lite0-384-letterbox|--resize letterbox --average 0 --box-loss 0 --cell-pooling 0||the default recipe, letterboxed (aspect ratio kept, padded) instead of stretched"
  "lite0-384-avg6|--average 6 --box-loss 0 --cell-pooling 0||384 px + mixup + the mean of the weights after epochs 7–12 (the default recipe and shipped model in the fourth session; its best single epoch is lite0-384-mixup)"
  "lite0-384-avg6-seed7|--average 6 --seed 7 --box-loss 0 --cell-pooling 0||the same, seed 7 (its best single epoch is lite0-384-mixup-seed7)"
  "lite0-384-avg6-seed1|--average 6 --seed 1 --box-loss 0 --cell-pooling 0||the same, seed 1"
  "lite0-384-sampler|--balance sampler --box-loss 0 --cell-pooling 0||the default recipe with class-balanced batches instead of the class-weighted loss"
  "lite0-384-box|--box-loss 1 --cell-pooling 0||the default recipe + box supervision: a separate 1x1 conv learns which cells the fracture boxes cover (auxiliary loss, weight 1); the classifier still averages"
  "lite0-384-mil|--box-loss 1 --cell-pooling 4||multiple-instance pooling: the image's log-odds is a soft maximum (log-sum-exp, r = 4) over the cells' log-odds, which the fracture boxes supervise (the default recipe and shipped model since the fifth session)"
  "lite0-384-mil-seed7|--box-loss 1 --cell-pooling 4 --seed 7||the same, seed 7"
  "lite0-384-mil-seed1|--box-loss 1 --cell-pooling 4 --seed 1||the same, seed 1 (run after the decision, as a check)"
  "lite0-384-last4-6ep|--freeze last:4 --epochs 6 --average 3 --box-loss 0 --cell-pooling 0||stage 5 trained too, 6 epochs to fit the budget, mean of epochs 4–6"
)

# shellcheck source=run_table.sh
. scripts/run_table.sh
[ -f "$split_csv" ] || "$fracture" split --data "$data" --out "$split_csv"

seconds() { awk -F: '{ s = 0; for (i = 1; i <= NF; ++i) s = s * 60 + $i; print s }' <<<"$1"; }
wants_rerun() { local r; for r in "${rerun[@]}"; do [ "$r" = "$1" ] && return 0; done; return 1; }

rows=""
for spec in "${runs[@]}"; do
  IFS='|' read -r name flags eval_flags what <<<"$spec"
  model_run=$name
  members=()
  if [[ $flags == @* ]]; then
    IFS='+' read -r -a members <<<"${flags#@}"
    model_run=${members[0]}
    for m in "${members[@]:1}"; do eval_flags+=" --ensemble runs/$m/best.safetensors"; done
  elif [ $train = 1 ] && { [ ! -f "runs/$name/best.safetensors" ] || wants_rerun "$name"; }; then
    echo "== training $name: $flags" >&2
    # shellcheck disable=SC2086
    "$fracture" train --data "$split_csv" --out "runs/$name" $flags >&2
  fi
  model=runs/$model_run/best.safetensors
  [ -f "$model" ] || { echo "skipping $name: no $model" >&2; continue; }
  for s in $splits; do
    out=runs/$name/eval-$s
    if [ ! -f "$out/metrics.json" ] || [ "$model" -nt "$out/metrics.json" ]; then
      echo "== evaluating $name on $s" >&2
      # shellcheck disable=SC2086
      "$fracture" evaluate -m "$model" --data "$split_csv" --split "$s" -o "$out" $eval_flags >/dev/null
    fi
  done
  wall=$(wall_of "runs/$model_run")
  if [ ${#members[@]} -gt 1 ]; then
    total=0
    for m in "${members[@]}"; do total=$((total + $(seconds "$(wall_of "runs/$m")"))); done
    wall=$(printf '%d:%02d' $((total / 60)) $((total % 60)))
  fi
  v=runs/$name/eval-val/metrics.json t=runs/$name/eval-test/metrics.json
  test_cols="not scored | | | "
  if [ -f "$t" ]; then
    test_cols="$(ci "$t" roc_auc) | $(val3 "$t" average_precision) | $(val3 "$t" sensitivity) / $(val3 "$t" specificity) | $(val3 "$t" sensitivity_at_specificity_90)"
  fi
  cmd="\`$flags\`"
  [ ${#members[@]} -gt 1 ] && cmd="\`$flags\` (ensemble)"
  [ ${#members[@]} -le 1 ] && [ -n "$eval_flags" ] && cmd="\`$flags${flags:+ }$eval_flags\`"
  [ -z "$flags$eval_flags" ] && cmd="(none)"
  rows+="| $name | $what | $cmd | $wall | $(ci "$v" roc_auc) | $(val3 "$v" average_precision) | $(val3 "$v" sensitivity) / $(val3 "$v" specificity) | $test_cols |"$'\n'
done

table="| run | what | flags | train wall | val ROC-AUC (95% CI) | val AP | val sens / spec | test ROC-AUC (95% CI) | test AP | test sens / spec at val threshold | test sens at spec ≥ 0.90 |
|---|---|---|---|---|---|---|---|---|---|---|
$rows"
printf '%s' "$table"

doc=docs/results.md
if grep -q '<!-- results:begin -->' "$doc"; then
  tmp=$(mktemp)
  TABLE=$table awk '
    /<!-- results:begin -->/ { print; printf "%s", ENVIRON["TABLE"]; skip=1; next }
    /<!-- results:end -->/ { skip=0 }
    !skip' "$doc" >"$tmp" && mv "$tmp" "$doc"
  echo "rewrote the table in $doc" >&2
fi

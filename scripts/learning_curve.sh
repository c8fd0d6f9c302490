#!/usr/bin/env bash
# Learning curve: how validation ROC-AUC grows with the number of training images.
#
#   scripts/learning_curve.sh                      # fractions 0.25 0.5 0.75 1, seed 42
#   scripts/learning_curve.sh --seeds "42 7 1"     # more training seeds
#   scripts/learning_curve.sh --fractions "0.5"    # other fractions
#   scripts/learning_curve.sh --types              # fracture types (issue 18): runs/split-types.csv,
#                                                  # runs/lc-types/, fraction 1 = runs/types-default
#
# With more than two classes the score is the macro one-vs-rest ROC-AUC, the
# second column accuracy, and a second law is fitted to accuracy (goal 0.80).
# For each fraction f it writes runs/lc/split-f.csv: runs/split.csv with only a
# share f of the training groups (near-duplicate groups stay whole) kept as
# "train", drawn separately among fractured and unfractured groups so the class
# balance stays (with N classes, drawn within each class); the rest become "-" (unused). Validation and test rows are
# untouched. The draws are nested: the 0.25 subset is inside the 0.5 subset,
# which is inside 0.75. Then it trains the default recipe on it
# (`fracture train --data runs/lc/split-f.csv --out runs/lc/f-seedS --seed S`)
# and scores it on validation only. The test split is not used.
# Fraction 1 is the whole training split: the default recipe itself, so the
# runs scripts/results.sh trained (runs/lite0-384-mil, -seed7, -seed1) are
# reused where they exist.
#
# Last, it fits a power law to the error, 1 - AUC = a * n^-b (least squares on
# log-log, every run a point), and prints b, the AUC the law projects for
# train + validation together, and the training images it would need for
# ROC-AUC 0.95. Those are extrapolations of a few noisy points, not results.
set -euo pipefail
cd "$(dirname "$0")/.."

fracture=${FRACTURE:-build/src/fracture}
split_csv=${SPLIT_CSV:-runs/split.csv}
lc=runs/lc
full_run=runs/lite0-384-mil  # fraction 1, seed 42: the default recipe as results.sh names it
fractions="0.25 0.5 0.75 1"
seeds="42"
draw_seed=42
while [ $# -gt 0 ]; do
  case $1 in
    --fractions) fractions=$2; shift 2 ;;
    --seeds) seeds=$2; shift 2 ;;
    --types) split_csv=runs/split-types.csv; lc=runs/lc-types; full_run=runs/types-default; shift ;;
    *) echo "usage: $0 [--types] [--fractions '0.25 0.5 0.75 1'] [--seeds '42 7 1']" >&2; exit 2 ;;
  esac
done
[ -f "$split_csv" ] || { echo "$split_csv: not found (run \`fracture split\` first)" >&2; exit 1; }
# shellcheck source=run_table.sh
. scripts/run_table.sh
mkdir -p $lc
rm -f $lc/points.tmp

# Every training group gets one random rank within its class (a group's class
# is its images' highest label: fractured if any of them is), the same for
# every fraction: so subsets nest.
ranks=$lc/group-ranks.tsv
awk -F, -v seed=$draw_seed 'BEGIN { srand(seed) }
  NR > 1 && $4 == "train" { if (!($5 in u)) { u[$5] = rand(); order[++n] = $5; cls[$5] = $2 } if ($2 > cls[$5]) cls[$5] = $2 }
  END { for (i = 1; i <= n; ++i) { g = order[i]; printf "%s\t%d\t%.9f\n", g, cls[g], u[g] } }' "$split_csv" |
  sort -t$'\t' -k2,2n -k3,3g |
  awk -F'\t' '{ r[$2]++; print $1 "\t" $2 "\t" r[$2] }' >"$ranks"

keep_subset() {  # $1 = fraction: writes $lc/split-$1.csv
  local out=$lc/split-$1.csv
  awk -F, -v OFS=, -v f="$1" '
    FNR == NR { cls[$1] = $2; rank[$1] = $3; total[$2] = $3 > total[$2] ? $3 : total[$2]; next }
    FNR > 1 && $4 == "train" { c = cls[$5]; if (rank[$5] > int(f * total[c] + 0.5)) $4 = "-" }
    { print }' FS='\t' "$ranks" FS=, "$split_csv" >"$out.tmp" && mv "$out.tmp" "$out"
  echo "$out"
}

classes=$(awk -F, 'NR > 1 && $2 > m { m = $2 } END { print m + 1 }' "$split_csv")
if [ "$classes" -gt 2 ]; then
  score=macro_roc_auc second=accuracy
  printf '| training share | train images | seed | train wall | val macro ROC-AUC (95%% CI) | val accuracy (95%% CI) |\n|---|---|---|---|---|---|\n'
else
  score=roc_auc second=average_precision
  printf '| training share | train images (fractured) | seed | train wall | val ROC-AUC (95%% CI) | val AP |\n|---|---|---|---|---|---|\n'
fi
for f in $fractions; do keep_subset "$f" >/dev/null; done
for f in $fractions; do
  csv=$lc/split-$f.csv
  n=$(awk -F, '$4 == "train"' "$csv" | wc -l)
  npos=$(awk -F, '$4 == "train" && $2 == 1' "$csv" | wc -l)
  for s in $seeds; do
    run=$lc/$f-seed$s
    if [ "$f" = 1 ]; then  # the default recipe on the whole split, trained elsewhere
      full=$full_run; [ "$s" = 42 ] || full+=-seed$s
      [ -f "$full/best.safetensors" ] && run=$full
    fi
    if [ ! -f "$run/best.safetensors" ]; then
      echo "== training on $n images (share $f), seed $s" >&2
      "$fracture" train --data "$csv" --out "$run" --seed "$s" >&2
    fi
    if [ ! -f "$run/eval-val/metrics.json" ] || [ "$run/best.safetensors" -nt "$run/eval-val/metrics.json" ]; then
      "$fracture" evaluate -m "$run/best.safetensors" --data "$csv" --split val -o "$run/eval-val" >/dev/null
    fi
    m=$run/eval-val/metrics.json
    if [ "$classes" -gt 2 ]; then
      printf '| %s | %s | %s | %s | %s | %s |\n' "$f" "$n" "$s" "$(wall_of "$run")" "$(ci "$m" $score)" "$(ci "$m" $second)"
    else
      printf '| %s | %s (%s) | %s | %s | %s | %s |\n' "$f" "$n" "$npos" "$s" "$(wall_of "$run")" \
        "$(ci "$m" $score)" "$(val3 "$m" $second)"
    fi
    echo "$n $(jq -r .metrics.$score.value "$m") $(jq -r .metrics.$second.value "$m")" >>$lc/points.tmp
  done
done
n_trainval=$(awk -F, '$4 == "train" || $4 == "val"' "$split_csv" | wc -l)
power_law() {  # COLUMN NAME GOAL: fit 1 - score = a * n^b over the points
  awk -v c="$1" -v name="$2" -v goal="$3" -v nt="$n_trainval" '
    { x = log($1); y = log(1 - $c); sx += x; sy += y; sxx += x * x; sxy += x * y; k++ }
    END {
      if (k < 2) exit
      slope = (k * sxy - sx * sy) / (k * sxx - sx * sx); icpt = (sy - slope * sx) / k
      printf "\npower law over %d runs: 1 - %s = %.3g * n^%.3f\n", k, name, exp(icpt), slope
      printf "projected %s with train + val (%d images): %.3f\n", name, nt, 1 - exp(icpt + slope * log(nt))
      if (slope < 0) printf "training images the law needs for %s %s: %d\n", name, goal, exp((log(1 - goal) - icpt) / slope)
      else printf "the law does not fall with more images: no projection for %s %s\n", name, goal
    }' $lc/points.tmp
}
if [ "$classes" -gt 2 ]; then
  power_law 2 "macro ROC-AUC" 0.95
  power_law 3 accuracy 0.80
else
  power_law 2 AUC 0.95
fi
rm -f $lc/points.tmp

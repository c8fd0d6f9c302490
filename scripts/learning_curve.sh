#!/usr/bin/env bash
# Learning curve: how validation ROC-AUC grows with the number of training images.
#
#   scripts/learning_curve.sh                      # fractions 0.25 0.5 0.75 1, seed 42
#   scripts/learning_curve.sh --seeds "42 7 1"     # more training seeds
#   scripts/learning_curve.sh --fractions "0.5"    # other fractions
#
# For each fraction f it writes runs/lc/split-f.csv: runs/split.csv with only a
# share f of the training groups (near-duplicate groups stay whole) kept as
# "train", drawn separately among fractured and unfractured groups so the class
# balance stays; the rest become "-" (unused). Validation and test rows are
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
fractions="0.25 0.5 0.75 1"
seeds="42"
draw_seed=42
while [ $# -gt 0 ]; do
  case $1 in
    --fractions) fractions=$2; shift 2 ;;
    --seeds) seeds=$2; shift 2 ;;
    *) echo "usage: $0 [--fractions '0.25 0.5 0.75 1'] [--seeds '42 7 1']" >&2; exit 2 ;;
  esac
done
[ -f "$split_csv" ] || { echo "$split_csv: not found (run \`fracture split\` first)" >&2; exit 1; }
# shellcheck source=run_table.sh
. scripts/run_table.sh
mkdir -p runs/lc
rm -f runs/lc/points.tmp

# Every training group gets one random rank within its class (a group is
# fractured if any of its images is), the same for every fraction: so subsets nest.
ranks=runs/lc/group-ranks.tsv
awk -F, -v seed=$draw_seed 'BEGIN { srand(seed) }
  NR > 1 && $4 == "train" { if (!($5 in u)) { u[$5] = rand(); order[++n] = $5 } if ($2 == 1) pos[$5] = 1 }
  END { for (i = 1; i <= n; ++i) { g = order[i]; printf "%s\t%d\t%.9f\n", g, (g in pos), u[g] } }' "$split_csv" |
  sort -t$'\t' -k2,2n -k3,3g |
  awk -F'\t' '{ r[$2]++; print $1 "\t" $2 "\t" r[$2] }' >"$ranks"

keep_subset() {  # $1 = fraction: writes runs/lc/split-$1.csv
  local out=runs/lc/split-$1.csv
  awk -F, -v OFS=, -v f="$1" '
    FNR == NR { cls[$1] = $2; rank[$1] = $3; total[$2] = $3 > total[$2] ? $3 : total[$2]; next }
    FNR > 1 && $4 == "train" { c = cls[$5]; if (rank[$5] > int(f * total[c] + 0.5)) $4 = "-" }
    { print }' FS='\t' "$ranks" FS=, "$split_csv" >"$out.tmp" && mv "$out.tmp" "$out"
  echo "$out"
}

printf '| training share | train images (fractured) | seed | train wall | val ROC-AUC (95%% CI) | val AP |\n|---|---|---|---|---|---|\n'
for f in $fractions; do keep_subset "$f" >/dev/null; done
for f in $fractions; do
  csv=runs/lc/split-$f.csv
  n=$(awk -F, '$4 == "train"' "$csv" | wc -l)
  npos=$(awk -F, '$4 == "train" && $2 == 1' "$csv" | wc -l)
  for s in $seeds; do
    run=runs/lc/$f-seed$s
    if [ "$f" = 1 ]; then  # the default recipe on the whole split, as results.sh names it
      full=runs/lite0-384-mil; [ "$s" = 42 ] || full+=-seed$s
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
    printf '| %s | %s (%s) | %s | %s | %s | %s |\n' "$f" "$n" "$npos" "$s" "$(wall_of "$run")" \
      "$(ci "$m" roc_auc)" "$(val3 "$m" average_precision)"
    echo "$n $(jq -r .metrics.roc_auc.value "$m")" >>runs/lc/points.tmp
  done
done
n_trainval=$(awk -F, '$4 == "train" || $4 == "val"' "$split_csv" | wc -l)
awk -v nt="$n_trainval" '
  { x = log($1); y = log(1 - $2); sx += x; sy += y; sxx += x * x; sxy += x * y; k++ }
  END {
    if (k < 2) exit
    slope = (k * sxy - sx * sy) / (k * sxx - sx * sx); icpt = (sy - slope * sx) / k
    printf "\npower law over %d runs: 1 - AUC = %.3g * n^%.3f\n", k, exp(icpt), slope
    printf "projected ROC-AUC with train + val (%d images): %.3f\n", nt, 1 - exp(icpt + slope * log(nt))
    printf "training images the law needs for ROC-AUC 0.95: %d\n", exp((log(0.05) - icpt) / slope)
  }' runs/lc/points.tmp
rm -f runs/lc/points.tmp

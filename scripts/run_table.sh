# Sourced by results.sh and learning_curve.sh: a run folder's figures, as table cells.

wall_of() {  # m:ss (or h:mm:ss) total of a run's training, from DIR/train.log
  grep -o '([0-9:]* in all)' "$1/train.log" | tail -1 | tr -d '()' | sed 's/ in all//'
}
ci() {  # "0.904 (0.866–0.938)" from a metrics.json entry
  jq -r --arg k "$2" '.metrics[$k] | if .value == null then "–" else
    "\(.value*1000|round/1000) (\(.ci95_low*1000|round/1000)–\(.ci95_high*1000|round/1000))" end' "$1"
}
val3() { jq -r --arg k "$2" '.metrics[$k].value | if . == null then "–" else (.*1000|round/1000|tostring) end' "$1"; }

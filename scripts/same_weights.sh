#!/usr/bin/env bash
# Trains the same small runs with two fracture binaries and compares what they
# write, byte for byte: the evidence that a change to the trainer (issue 20's
# split into phases) changed no result.
#
#   scripts/same_weights.sh OLD_BINARY NEW_BINARY TWO_CLASS_MANIFEST [N_CLASS_MANIFEST]
#
# The manifests are `fracture split` manifests (keep them small: a few dozen
# images per split; runs/ holds the real ones). Each recipe below switches on
# a different path of the trainer: cached cells with boxes, cell pooling and
# averaging; streamed images; a separate box head with EMA, SGD, a balanced
# sampler and source weights; a frozen backbone with augmented cached views;
# feature-map augmentation with early stopping; a run stopped and resumed;
# and, with the second manifest, a many-class model. Compared: every model
# file (its tensors and its metadata), threshold.json, and metrics.jsonl
# without its timing fields.
set -euo pipefail
old=$(realpath "$1") new=$(realpath "$2") manifest=$3 types=${4:-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

common=(--size 96 --threads 2 --workers 2 --seed 11)
recipes=(
  "default|--epochs 3 --average 2"
  "streamed|--epochs 2 --cache off --freeze last:1 --average 0"
  "box-head|--epochs 2 --cell-pooling 0 --ema 0.9 --balance sampler --optimizer sgd --source-weights fracatlas=1,bone-fracture-yolo=0.5 --average 0"
  "head-views|--epochs 2 --freeze head --augment-views 2 --schedule constant --label-smoothing 0.1 --clip-grad 1 --threshold sensitivity:0.9"
  "feature-augment|--epochs 3 --feature-augment --patience 1 --average 0"
)

run_recipe() {  # binary out-dir data args...
  local bin=$1 out=$2 data=$3
  shift 3
  "$bin" train --data "$data" --out "$out" "${common[@]}" "$@" >"$out.stdout" 2>"$out.stderr" ||
    { echo "FAILED: $bin train $* (see below)" >&2; tail -5 "$out.stderr" >&2; return 1; }
}

# What a run wrote, without wall-clock figures: one line per file.
digest() {
  python3 - "$1" <<'EOF'
import hashlib, json, pathlib, struct, sys
run = pathlib.Path(sys.argv[1])
for f in sorted(run.glob("*.safetensors")):
    raw = f.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    print(f.name, "tensors", hashlib.sha256(raw[8 + n:]).hexdigest()[:16],
          "header", hashlib.sha256(json.dumps(header, sort_keys=True).encode()).hexdigest()[:16],
          "metadata", hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:16])
for name in ["threshold.json"]:
    if (run / name).exists():
        print(name, hashlib.sha256((run / name).read_bytes()).hexdigest()[:16])
timing = {"seconds", "images_per_second"}
for line in (run / "metrics.jsonl").read_text().splitlines():
    rec = {k: v for k, v in json.loads(line).items() if k not in timing}
    print("metrics.jsonl", json.dumps(rec, sort_keys=True))
EOF
}

status=0
compare() {  # name
  if diff <(digest "$work/old-$1") <(digest "$work/new-$1") >"$work/$1.diff"; then
    echo "$1: identical ($(ls "$work/new-$1"/*.safetensors | wc -l) model files, $(wc -l <"$work/new-$1/metrics.jsonl") epochs)"
  else
    echo "$1: DIFFERENT"
    cat "$work/$1.diff"
    status=1
  fi
}

for entry in "${recipes[@]}"; do
  name=${entry%%|*}
  read -r -a args <<<"${entry#*|}"
  for side in old new; do
    bin=$old
    [ "$side" = new ] && bin=$new
    run_recipe "$bin" "$work/$side-$name" "$manifest" "${args[@]}"
  done
  compare "$name"
done

# Stopped after one epoch and resumed, by the new binary, against the old one unbroken.
run_recipe "$old" "$work/old-resumed" "$manifest" --epochs 3 --average 2
run_recipe "$new" "$work/new-resumed" "$manifest" --epochs 3 --average 2 --stop-after 1
run_recipe "$new" "$work/new-resumed" "$manifest" --epochs 3 --average 2 --resume
compare resumed

if [ -n "$types" ]; then
  for side in old new; do
    bin=$old
    [ "$side" = new ] && bin=$new
    run_recipe "$bin" "$work/$side-classes" "$types" --epochs 2 --average 2
  done
  compare classes
fi
exit $status

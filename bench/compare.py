#!/usr/bin/python3
"""Ours against the PyTorch baseline, side by side, in one run.

    bench/compare.py                       # FracAtlas from ../shared, 3 repeats
    bench/compare.py --images 128 --repeats 1 --synthetic   # quick, generated stand-in images

For each repeat it runs, one after another on an otherwise idle machine:
  train     a full fine-tuning epoch of EfficientNet-Lite0 at --size px
            (`fracture train --freeze full --cache off` vs bench/baseline.py train)
  cached    an epoch with a frozen backbone and cached features
            (`fracture train --freeze head --cache ram`; ours only: the target
            is its speed relative to a full fine-tuning epoch)
  predict   file on disk -> probability at batch 1 and 32
            (`fracture predict` vs bench/baseline.py predict)
and samples the memory of each process tree every 20 ms (peak RSS, and peak
PSS, which counts pages shared between DataLoader workers once).
Prints a table of medians and ratios; --json writes every measurement.
"""
import argparse
import csv
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def tree_memory(root_pid):
    """(RSS, PSS) in bytes of a process and all its descendants."""
    children = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    rss = pss = 0
    todo = [root_pid]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1]) * 1024
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1]) * 1024
        except OSError:
            pass
    return rss, pss


def run(cmd, env=None):
    """Runs cmd, returning (stdout+stderr, peak RSS, peak PSS, wall seconds)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    peak = [0, 0]

    def sample():
        while proc.poll() is None:
            rss, pss = tree_memory(proc.pid)
            peak[0], peak[1] = max(peak[0], rss), max(peak[1], pss)
            time.sleep(0.02)

    t = threading.Thread(target=sample)
    start = time.perf_counter()
    t.start()
    out = proc.communicate()[0]
    t.join()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{out[-3000:]}")
    return out, peak[0], peak[1], wall


def predict_rate(log):
    """images/s from `fracture predict`'s closing line (files to probabilities, start-up excluded)."""
    m = re.search(r"predicted (\d+) images in ([\d.]+) s", log)
    if not m:
        sys.exit(f"no 'predicted N images' line in:\n{log[-2000:]}")
    return int(m.group(1)) / float(m.group(2))


def epoch_rates(run_dir):
    """images/s of each epoch's training phase, from the run's metrics.jsonl."""
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line)["images_per_second"] for line in f if line.strip()]


def make_manifests(args, work):
    """train.csv (N train + a few val images, the trainer needs a val split) and predict.csv (N images)."""
    src = args.manifest
    if args.synthetic or not os.path.exists(src):
        src = os.path.join(work, "synthetic.csv")
        from PIL import Image, ImageDraw, ImageFilter
        rng = random.Random(0)
        rows = []
        os.makedirs(os.path.join(work, "images"), exist_ok=True)
        for i in range(args.images + 16):
            w, h = rng.choice([(1024, 1280), (1280, 1024), (2304, 2880), (373, 454)])
            im = Image.new("L", (w, h), 30)
            d = ImageDraw.Draw(im)
            d.ellipse([w * 0.3, h * 0.1, w * 0.7, h * 0.9], fill=170)
            label = i % 5 == 0
            if label:
                d.line([w * 0.3, h * 0.5, w * 0.7, h * 0.55], fill=40, width=max(2, w // 100))
            im = im.filter(ImageFilter.GaussianBlur(2))
            path = os.path.join(work, "images", f"synth{i:05d}.jpg")
            im.save(path, quality=90)
            rows.append({"path": path, "label": int(label), "class": "fractured" if label else "non_fractured",
                         "split": "train" if i < args.images else "val", "group": f"g{i}", "region": "leg",
                         "hardware": 0})
        with open(src, "w", newline="") as f:
            wr = csv.DictWriter(f, fieldnames=list(rows[0]))
            wr.writeheader()
            wr.writerows(rows)
    with open(src) as f:
        rows = list(csv.DictReader(f))
    train = [r for r in rows if r["split"] == "train"]
    val = [r for r in rows if r["split"] == "val"]
    rng = random.Random(1)
    rng.shuffle(train)
    rng.shuffle(val)
    chosen = train[:args.images] + val[:16]
    if len(train) < args.images:
        sys.exit(f"{src}: only {len(train)} train images")
    paths = {}
    for name, subset in (("train.csv", chosen), ("predict.csv", train[:args.images])):
        paths[name] = os.path.join(work, name)
        with open(paths[name], "w", newline="") as f:
            wr = csv.DictWriter(f, fieldnames=list(rows[0]))
            wr.writeheader()
            wr.writerows(subset)
    return paths, src


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fracture", default=os.path.join(ROOT, "build", "src", "fracture"))
    ap.add_argument("--manifest", default=os.path.join(ROOT, "runs", "split.csv"),
                    help="split manifest to draw images from (made with `fracture split` if missing)")
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "fracatlas"))
    ap.add_argument("--synthetic", action="store_true", help="generated stand-in images instead of FracAtlas")
    ap.add_argument("--images", type=int, default=256, help="images per epoch / prediction run")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", nargs="+", default=["train", "cached", "predict"], choices=["train", "cached", "predict"])
    ap.add_argument("--ours-args", default="", help="extra flags for our commands (levers: --workers 1 ...)")
    ap.add_argument("--baseline-args", default="", help="extra flags for bench/baseline.py")
    ap.add_argument("--model", help="for predict: this trained model (at --size px) instead of the train step's")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--json", help="write every measurement here")
    args = ap.parse_args()

    if not args.synthetic and not os.path.exists(args.manifest) and os.path.isdir(args.data):
        subprocess.run([args.fracture, "split", "--data", args.data, "--out", args.manifest], check=True)
    work = tempfile.mkdtemp(prefix="fracture-bench-")
    paths, source = make_manifests(args, work)
    ours_extra = args.ours_args.split()
    base_extra = args.baseline_args.split()
    baseline = [sys.executable, os.path.join(HERE, "baseline.py")]
    env = dict(os.environ)
    results = []  # dicts: task, impl, images_per_s, rss, pss

    def record(task, impl, rate, rss, pss, rep):
        results.append({"task": task, "impl": impl, "images_per_s": rate, "peak_rss": rss, "peak_pss": pss, "repeat": rep})
        print(f"  {task:<12} {impl:<8} {rate:8.2f} img/s   peak RSS {rss / 2**20:7.0f} MiB  PSS {pss / 2**20:7.0f} MiB",
              flush=True)

    model = args.model
    print(f"images: {args.images} from {source}, {args.size} px, {os.cpu_count()} cores", flush=True)
    for rep in range(args.repeats):
        print(f"repeat {rep + 1}/{args.repeats}", flush=True)
        if "train" in args.only or ("predict" in args.only and not args.model):
            out_dir = os.path.join(work, f"full{rep}")
            log, rss, pss, _ = run([args.fracture, "train", "--data", paths["train.csv"], "--out", out_dir,
                                    "--freeze", "full", "--cache", "off", "--epochs", "1", "--size", str(args.size),
                                    "--mixup", "0",  # the baseline has none: the same work on both sides
                                    *ours_extra], env)
            model = args.model or os.path.join(out_dir, "best.safetensors")
            if "train" in args.only:
                record("train", "ours", epoch_rates(out_dir)[0], rss, pss, rep)
                if not args.no_baseline:
                    out, rss, pss, _ = run([*baseline, "train", "--manifest", paths["train.csv"], "--size",
                                            str(args.size), *base_extra])
                    record("train", "pytorch", json.loads(out.strip().splitlines()[-1])["images_per_s"], rss, pss, rep)
        if "cached" in args.only:
            head_dir = os.path.join(work, f"head{rep}")
            log, rss, pss, _ = run([args.fracture, "train", "--data", paths["train.csv"], "--out", head_dir,
                                    "--freeze", "head", "--cache", "ram", "--epochs", "3", "--size", str(args.size),
                                    "--mixup", "0", *ours_extra], env)
            record("cached", "ours", statistics.median(epoch_rates(head_dir)), rss, pss, rep)
        if "predict" in args.only:
            for batch in (1, 32):
                log, rss, pss, _ = run([args.fracture, "predict", "-m", model, paths["predict.csv"], "-b", str(batch),
                                        "-o", os.path.join(work, "p.csv"), *ours_extra], env)
                record(f"predict b{batch}", "ours", predict_rate(log), rss, pss, rep)
                if not args.no_baseline:
                    out, rss, pss, _ = run([*baseline, "predict", "--manifest", paths["predict.csv"], "--size",
                                            str(args.size), "--batch", str(batch), *base_extra])
                    record(f"predict b{batch}", "pytorch", json.loads(out.strip().splitlines()[-1])["images_per_s"],
                           rss, pss, rep)

    def med(task, impl, key="images_per_s"):
        v = [r[key] for r in results if r["task"] == task and r["impl"] == impl]
        return statistics.median(v) if v else None

    print(f"\nmedian of {args.repeats} repeat(s), {args.images} images at {args.size} px:")
    print(f"{'task':<12} {'ours img/s':>10} {'pytorch':>10} {'ratio':>7}   {'ours peak RSS':>13} {'pytorch':>9}"
          f"   {'ours PSS':>9} {'pytorch':>9}")
    for task in ("train", "cached", "predict b1", "predict b32"):
        o, b = med(task, "ours"), med(task, "pytorch")
        if o is None:
            continue
        mib = lambda x: f"{x / 2**20:.0f} MiB" if x else "-"
        ratio = f"{o / b:.2f}x" if b else "-"
        print(f"{task:<12} {o:>10.2f} {b if b else '-':>10} {ratio:>7}   {mib(med(task, 'ours', 'peak_rss')):>13} "
              f"{mib(med(task, 'pytorch', 'peak_rss')):>9}   {mib(med(task, 'ours', 'peak_pss')):>9} "
              f"{mib(med(task, 'pytorch', 'peak_pss')):>9}")
    if med("cached", "ours") and med("train", "ours"):
        print(f"cached-feature epoch vs full fine-tuning epoch: {med('cached', 'ours') / med('train', 'ours'):.1f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"images": args.images, "size": args.size, "source": source, "results": results}, f, indent=1)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

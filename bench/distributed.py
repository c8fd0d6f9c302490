#!/usr/bin/python3
"""Data-parallel training on this machine: fracture's ranks against one
process, and the same comparison made with PyTorch's own DDP.

    bench/distributed.py                 # 3 rounds
    bench/distributed.py --rounds 1      # quick

The work: ResNet-18 (random initialisation, every stage trained, so that
each step all-reduces 11.2M gradients) on 128 generated 96 px images, batch 16
in all, two epochs; the second epoch's training images/s is compared (the
first decodes the images; both then train from decoded images in RAM).

  fracture   `fracture train --threads 2` (one process, two threads) against
             `fracture train --nproc 2` (two ranks of one thread, Gloo on
             loopback); from each run's metrics.jsonl, and the ranks' own
             "ms per step in collectives" line.
  pytorch    the same model, batch and images in PyTorch 1.13 (Debian's
             python3-torch): one process of two threads against
             DistributedDataParallel over two Gloo processes of one thread.

Every measurement runs in its own process, interleaved round by round;
medians over rounds are printed, with the scaling efficiency (two ranks'
images/s over one process's) and the share of a step spent in collectives.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FRACTURE = os.path.join(ROOT, "build", "src", "fracture")
SIZE, BATCH, TRAIN, VAL = 96, 16, 128, 32


def make_images(folder):
    """ImageFolder train/val x normal/fracture of noisy grey squares (PIL)."""
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    for split, n in (("train", TRAIN), ("val", VAL)):
        for i in range(n):
            label = i % 2
            img = rng.normal(70, 25, (SIZE, SIZE)).clip(0, 255).astype(np.uint8)
            if label:
                x, y = rng.integers(10, SIZE - 40, 2)
                img[y:y + 24, x:x + 24] = 250
            d = os.path.join(folder, split, "fracture" if label else "normal")
            os.makedirs(d, exist_ok=True)
            Image.fromarray(img).save(os.path.join(d, f"{i}.png"))


def run_fracture(data, out, mode):
    args = [FRACTURE, "train", "--data", data, "--out", out, "--overwrite", "--model", "resnet18",
            "--from-scratch", "--freeze", "full", "--cache", "off", "--size", str(SIZE), "--epochs", "2",
            "--batch-size", str(BATCH), "--mixup", "0", "--average", "0", "--no-augment", "--workers", "1",
            "--seed", "3"]
    args += ["--threads", "2"] if mode == "one" else ["--nproc", "2"]
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"fracture train failed:\n{r.stderr[-2000:]}")
    epochs = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
    sync = re.findall(r"rank 0 of 2: ([0-9.]+) ms per step in collectives, ([0-9.]+)%", r.stderr)
    return {"img_s": epochs[-1]["images_per_second"],
            "sync_ms": float(sync[-1][0]) if sync else None,
            "sync_pct": float(sync[-1][1]) if sync else None}


PYTORCH_WORKER = r'''
import os, sys, time, json
import numpy as np, torch, torchvision
from PIL import Image
folder, mode = sys.argv[1], sys.argv[2]
rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
torch.set_num_threads(2 if world == 1 else 1)
torch.manual_seed(3)
paths = []
for label, name in ((0, "normal"), (1, "fracture")):
    d = os.path.join(folder, "train", name)
    paths += [(os.path.join(d, f), label) for f in sorted(os.listdir(d))]
mine = [p for i, p in enumerate(sorted(paths)) if i % world == rank]
x = torch.stack([torch.from_numpy(np.asarray(Image.open(p).convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)
                 for p, _ in mine])
y = torch.tensor([label for _, label in mine])
model = torchvision.models.resnet18(num_classes=2)
if world > 1:
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    model = torch.nn.parallel.DistributedDataParallel(model)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
loss_fn = torch.nn.CrossEntropyLoss()
local = BATCH_TOTAL // world
model.train()
rates = []
for epoch in range(2):
    g = torch.Generator().manual_seed(epoch)
    order = torch.randperm(len(x), generator=g)
    t0 = time.perf_counter()
    for b in range(0, len(x), local):
        idx = order[b:b + local]
        opt.zero_grad()
        loss_fn(model(x[idx]), y[idx]).backward()
        opt.step()
    rates.append(len(x) * world / (time.perf_counter() - t0))
if rank == 0:
    print(json.dumps({"img_s": rates[-1]}))
'''.replace("BATCH_TOTAL", str(BATCH))


def run_pytorch(data, mode):
    script = os.path.join(data, "ddp_worker.py")
    with open(script, "w") as f:
        f.write(PYTORCH_WORKER)
    if mode == "one":
        r = subprocess.run([sys.executable, script, data, mode], capture_output=True, text=True)
        outs = [r]
    else:
        port = str(29600 + int(time.time()) % 300)
        procs = [subprocess.Popen([sys.executable, script, data, mode], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, env={**os.environ, "RANK": str(r), "WORLD_SIZE": "2",
                                                  "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port})
                 for r in range(2)]
        outs = [subprocess.CompletedProcess(p.args, p.wait(), *p.communicate()) for p in procs]
    for r in outs:
        if r.returncode != 0:
            sys.exit(f"pytorch worker failed:\n{r.stderr[-2000:]}")
    return json.loads(outs[0].stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    if not os.path.exists(FRACTURE):
        sys.exit(f"{FRACTURE} is missing: build first (scripts/setup.sh)")
    results = {k: [] for k in ("fracture one", "fracture two", "pytorch one", "pytorch two")}
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data")
        make_images(data)
        for rnd in range(a.rounds):
            for engine, mode in (("fracture", "one"), ("fracture", "two"), ("pytorch", "one"), ("pytorch", "two")):
                r = run_fracture(data, os.path.join(tmp, "run"), mode) if engine == "fracture" else run_pytorch(data, mode)
                results[f"{engine} {mode}"].append(r)
                print(f"round {rnd + 1}: {engine} {mode}: {r['img_s']:.1f} img/s", file=sys.stderr)
    med = {k: statistics.median(r["img_s"] for r in v) for k, v in results.items()}
    print(f"ResNet-18, every stage trained, {SIZE} px, batch {BATCH} in all, {TRAIN} training images; "
          f"epoch-2 training images/s, median of {a.rounds} (this machine: {os.cpu_count()} cores)")
    print(f"{'':10} {'1 process x 2 threads':>22} {'2 ranks x 1 thread':>19} {'efficiency':>11}")
    for engine in ("fracture", "pytorch"):
        one, two = med[f"{engine} one"], med[f"{engine} two"]
        print(f"{engine:10} {one:22.1f} {two:19.1f} {two / one:11.2f}")
    sync = [r["sync_ms"] for r in results["fracture two"] if r["sync_ms"] is not None]
    pct = [r["sync_pct"] for r in results["fracture two"] if r["sync_pct"] is not None]
    if sync:
        print(f"fracture's ranks in collectives (rank 0, epoch 2): {statistics.median(sync):.1f} ms per step, "
              f"{statistics.median(pct):.0f}% of the epoch")
    print(f"fracture / pytorch: 1 process {med['fracture one'] / med['pytorch one']:.2f}, "
          f"2 ranks {med['fracture two'] / med['pytorch two']:.2f}")


if __name__ == "__main__":
    main()

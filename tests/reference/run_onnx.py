#!/usr/bin/env python3
"""Runs an exported model with ONNX Runtime, for tests/reference/onnx_reference_test.cpp.

Usage: run_onnx.py CASE_DIR

CASE_DIR holds model.onnx, input.f32 (the inputs fracture prepared, float32
[N, 3, S, S]) and images/*.png (the same N images, S x S, sorted by name).
Writes:
  ort.f32       ONNX Runtime's probabilities for input.f32, float32 [N, C];
  ort_logits.f32  its logits for input.f32, float32 [N, C];
  recipe.f32    its probabilities for the PNGs preprocessed here from the
                file's metadata alone (grey, / 255, - mean, / std, three
                channels), float32 [N, C];
  recipe_input_diff.txt  the largest difference between that preprocessing
                and fracture's input.f32.
Runs only in the test's virtual environment (onnxruntime, numpy, pillow from
PyPI; scripts/setup.sh makes it). Never used by fracture at run time.
"""
import json
import os
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image


def main():
    case = sys.argv[1]
    session = ort.InferenceSession(os.path.join(case, "model.onnx"), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    size = int(meta["input_size"])
    mean = np.array(json.loads(meta["mean"]), dtype=np.float32).reshape(3, 1, 1)
    std = np.array(json.loads(meta["std"]), dtype=np.float32).reshape(3, 1, 1)

    given = np.fromfile(os.path.join(case, "input.f32"), dtype=np.float32).reshape(-1, 3, size, size)
    ort_logits, ort_probs = session.run(["logits", "probabilities"], {"input": given})
    ort_probs.astype(np.float32).tofile(os.path.join(case, "ort.f32"))
    ort_logits.astype(np.float32).tofile(os.path.join(case, "ort_logits.f32"))

    # The recipe the metadata states, for images already the input size (no resizing).
    names = sorted(os.listdir(os.path.join(case, "images")))
    recipe = []
    for name in names:
        grey = np.asarray(Image.open(os.path.join(case, "images", name)).convert("L"), dtype=np.float32)
        assert grey.shape == (size, size), f"{name}: {grey.shape}, expected {size} x {size}"
        x = (np.repeat(grey[None], 3, axis=0) / np.float32(255) - mean) / std
        recipe.append(x.astype(np.float32))
    recipe = np.stack(recipe)
    (recipe_probs,) = session.run(["probabilities"], {"input": recipe})
    recipe_probs.astype(np.float32).tofile(os.path.join(case, "recipe.f32"))
    with open(os.path.join(case, "recipe_input_diff.txt"), "w") as f:
        f.write(f"{float(np.abs(recipe - given).max())}\n")


if __name__ == "__main__":
    main()

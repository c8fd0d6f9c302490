#!/usr/bin/env python3
"""Writes reference tensors computed by PyTorch/torchvision for the C++ tests.

Run by ctest before the reference tests (a fixture); not used at run time.
usage: make_reference.py OUT_DIR WEIGHTS_DIR
"""
import json
import os
import sys

import torch
import torchvision

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))
from convert_weights import default_weights_dir, read_safetensors, write_safetensors  # noqa: E402


def randomise_bn(model, gen):
    # Fresh BN layers are identities; random statistics make the check bite.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) * 0.5 + 0.75)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) * 0.5 + 0.75)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.1)


@torch.no_grad()
def torchvision_case(out, name, ctor, size, zip_copy=True):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    model = ctor()
    randomise_bn(model, gen)
    model.eval()
    x = torch.randn(2, 3, size, size, generator=gen)
    y = model(x)
    sd = model.state_dict()
    write_safetensors(os.path.join(out, f"{name}_torchvision.safetensors"), sd, {})
    if zip_copy:  # zip format, torch.save's default since 1.6
        torch.save(sd, os.path.join(out, f"{name}_torchvision_zip.pth"))
    write_safetensors(os.path.join(out, f"{name}_io.safetensors"), {"input": x, "logits": y}, {})


@torch.no_grad()
def lite_case(out, weights_dir, size):
    wheel = os.path.join(weights_dir, "reference", "efficientnet_lite_pytorch-0.1.0-py3-none-any.whl")
    sys.path.insert(0, wheel)
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0", image_size=size)
    sd = read_safetensors(os.path.join(weights_dir, "efficientnet_lite0.imagenet.safetensors"))
    model.load_state_dict(sd)
    model.eval()
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, size, size, generator=gen)
    write_safetensors(os.path.join(out, f"lite0_{size}_io.safetensors"), {"input": x, "logits": model(x)}, {})


def metrics_cases(out):
    """Random labels and probabilities (rounded, so ties occur) scored by scikit-learn."""
    import numpy as np
    from sklearn import metrics as skm

    rng = np.random.default_rng(0)
    cases = []
    for n, prevalence, decimals in [(200, 0.2, 2), (57, 0.5, 1), (1000, 0.1, 3), (30, 0.3, 1)]:
        y = (rng.random(n) < prevalence).astype(int)
        p = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1).round(decimals)
        for t in (0.5, 0.3):
            pred = (p >= t).astype(int)
            tn, fp, fn, tp = skm.confusion_matrix(y, pred, labels=[0, 1]).ravel()
            bins = np.clip((p * 10).astype(int), 0, 9)
            ece = sum(abs(y[bins == b].mean() - p[bins == b].mean()) * (bins == b).mean()
                      for b in range(10) if (bins == b).any())
            cases.append({
                "labels": y.tolist(), "probs": p.tolist(), "threshold": t,
                "expected": {
                    "roc_auc": skm.roc_auc_score(y, p),
                    "average_precision": skm.average_precision_score(y, p),
                    "accuracy": skm.accuracy_score(y, pred),
                    "balanced_accuracy": skm.balanced_accuracy_score(y, pred),
                    "sensitivity": skm.recall_score(y, pred, zero_division=0),
                    "specificity": tn / (tn + fp),
                    "precision": skm.precision_score(y, pred, zero_division=0),
                    "npv": tn / (tn + fn) if tn + fn else 0.0,
                    "f1": skm.f1_score(y, pred, zero_division=0),
                    "mcc": skm.matthews_corrcoef(y, pred),
                    "cohen_kappa": skm.cohen_kappa_score(y, pred),
                    "brier": skm.brier_score_loss(y, p),
                    "ece": float(ece),
                    "sensitivity_at_specificity_90": float(max(
                        tpr for fpr, tpr in zip(*skm.roc_curve(y, p)[:2]) if fpr <= 0.1 + 1e-12)),
                }})
    with open(os.path.join(out, "metrics_cases.json"), "w") as f:
        json.dump(cases, f)


def multiclass_cases(out):
    """Random N-class labels and probabilities scored by scikit-learn: several
    class counts, ties (rounded rows) and a class absent from the truth."""
    import numpy as np
    from sklearn import metrics as skm

    rng = np.random.default_rng(1)
    cases = []
    for n, k, decimals, absent in [(300, 3, None, None), (120, 10, 2, None), (80, 4, 1, None), (150, 5, None, 2)]:
        y = rng.integers(0, k, n)
        if absent is not None:
            y[y == absent] = (absent + 1) % k
        logits = rng.normal(0, 1, (n, k)) + 1.2 * np.eye(k)[y]
        p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        if decimals is not None:
            p = p.round(decimals)
        pred = p.argmax(1)
        names = [f"type {c}" for c in range(k)]
        present = sorted(set(y.tolist()))
        per_class_auc = {c: skm.roc_auc_score(y == c, p[:, c]) for c in present}
        macro_auc = float(np.mean(list(per_class_auc.values())))
        if decimals is None and absent is None:  # rows sum to one: scikit-learn's own multiclass AUC applies
            assert abs(macro_auc - skm.roc_auc_score(y, p, multi_class="ovr", average="macro")) < 1e-12
        precision, recall, f1, _ = skm.precision_recall_fscore_support(y, pred, labels=list(range(k)), zero_division=0)
        expected = {
            "accuracy": skm.accuracy_score(y, pred),
            "balanced_accuracy": skm.balanced_accuracy_score(y, pred),
            "macro_f1": skm.f1_score(y, pred, average="macro", zero_division=0),
            "macro_roc_auc": macro_auc,
            "top2_accuracy": skm.top_k_accuracy_score(y, p, k=2, labels=list(range(k))),
            "cohen_kappa": skm.cohen_kappa_score(y, pred),
        }
        for c in range(k):
            expected[f"precision/{names[c]}"] = float(precision[c])
            expected[f"f1/{names[c]}"] = float(f1[c])
            if c in present:
                expected[f"recall/{names[c]}"] = float(recall[c])
                expected[f"roc_auc/{names[c]}"] = float(per_class_auc[c])
        cases.append({"labels": y.tolist(), "probs": p.tolist(), "classes": names,
                      "confusion": skm.confusion_matrix(y, pred, labels=list(range(k))).tolist(),
                      "absent": [names[c] for c in range(k) if c not in present], "expected": expected})
    with open(os.path.join(out, "multiclass_cases.json"), "w") as f:
        json.dump(cases, f)


def main():
    out = sys.argv[1]
    weights_dir = sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] else default_weights_dir()
    os.makedirs(out, exist_ok=True)
    torchvision_case(out, "efficientnet_b0", lambda: torchvision.models.efficientnet_b0(), 224)
    torchvision_case(out, "efficientnet_b2", lambda: torchvision.models.efficientnet_b2(), 96, False)
    torchvision_case(out, "resnet18", lambda: torchvision.models.resnet18(), 224)
    torchvision_case(out, "resnet50", lambda: torchvision.models.resnet50(), 64, False)
    torchvision_case(out, "vgg16", lambda: torchvision.models.vgg16(), 64, False)
    for size in (224, 231):  # 231: odd size, where TF "SAME" padding is asymmetric
        lite_case(out, weights_dir, size)
    metrics_cases(out)
    multiclass_cases(out)
    print(f"reference tensors written to {out}")


if __name__ == "__main__":
    main()

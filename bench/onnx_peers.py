#!/usr/bin/python3
"""fracture against ONNX Runtime and OpenVINO on the same network, side by side.

    bench/onnx_peers.py                                   # 5 rounds, FracAtlas from ../shared
    bench/onnx_peers.py --rounds 1 --seconds 2 --files 32 # quick

The network is the shipped model (EfficientNet-Lite0, ImageNet-initialised,
fine-tuned on FracAtlas), exported with `fracture export`; for 224 px the same
weights are saved with a 224 px input. Every measurement runs in its own
process, one after another (interleaved: each round runs every engine on every
configuration), and the medians over rounds are printed with ratios.

  network   random inputs of the model's size, batch 1 and 16, 224 and 384 px,
            --threads threads: fracture's Predictor::score (bench/network_speed:
            the oneDNN program in fp32; in bf16 where the CPU runs it; in
            int8 where the CPU runs it and the model is calibrated (`fracture
            calibrate`; the shipped model is); LibTorch's modules, as predict
            ran before the program)
            against ONNX Runtime (CPU provider) and OpenVINO in fp32, and
            OpenVINO in its default precision on this CPU (bf16 where the CPU
            has it, else fp32 again);
  files     file on disk -> probabilities at 384 px: `fracture predict` with
            --precision fp32, and bf16 and int8 where they run (its
            own timing line, model loading excluded) against a Python loop of
            PIL decode + resize + ONNX Runtime, batch 16, session creation
            excluded.

The peers come from PyPI into a virtual environment this script makes
(.venv-bench, pinned versions); fracture itself never uses them.
"""
import argparse
import glob
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time

from serve_bench import predict_rate  # `fracture predict`'s own images/s line

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
VENV = os.path.join(ROOT, ".venv-bench")
PEERS = ["onnxruntime==1.32.0", "openvino==2026.4.1", "numpy==2.4.6", "pillow==12.0.0"]


def venv_python():
    py = os.path.join(VENV, "bin", "python")
    probe = [py, "-c", "import onnxruntime, openvino, numpy, PIL"]
    if not os.path.exists(py) or subprocess.run(probe, capture_output=True).returncode != 0:
        print(f"making {VENV} ({', '.join(PEERS)})", file=sys.stderr)
        subprocess.run(["/usr/bin/python3", "-m", "venv", VENV], check=True)
        subprocess.run([os.path.join(VENV, "bin", "pip"), "install", "--quiet", "--disable-pip-version-check"] + PEERS,
                       check=True)
    return py


def with_input_size(model, size, out):
    """A copy of a fracture model file whose metadata says `size` px (the weights are size-free)."""
    with open(model, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    info = json.loads(header["__metadata__"]["fracture"])
    info["input_size"] = size
    header["__metadata__"]["fracture"] = json.dumps(info)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(out, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data[8 + n:])


# --- worker: one peer measurement, run inside the virtual environment -------

def worker(args):
    import numpy as np
    engine, onnx_path, batch, seconds, threads = args.worker
    batch, seconds, threads = int(batch), float(seconds), int(threads)
    if engine == "files":
        return files_worker(onnx_path, args.files_list, threads)
    if engine == "ort":
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        s = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
        size = s.get_inputs()[0].shape[2]
        x = np.random.default_rng(0).standard_normal((batch, 3, size, size), dtype=np.float32)
        run = lambda: s.run(["probabilities"], {"input": x})
        precision = "f32"
    else:
        import openvino as ov
        core = ov.Core()
        config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
        if engine == "ov-fp32":
            config["INFERENCE_PRECISION_HINT"] = "f32"
        m = core.read_model(onnx_path)
        size = m.inputs[0].get_partial_shape()[2].get_length()
        m.reshape({"input": [batch, 3, size, size]})
        compiled = core.compile_model(m, "CPU", config)
        precision = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
        request = compiled.create_infer_request()
        x = np.random.default_rng(0).standard_normal((batch, 3, size, size), dtype=np.float32)
        run = lambda: request.infer({"input": x})
    for _ in range(2):
        run()
    passes, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        run()
        passes += 1
    elapsed = time.perf_counter() - start
    print(json.dumps({"images_per_s": passes * batch / elapsed, "precision": precision}))


def files_worker(onnx_path, files_list, threads):
    """PIL decode + resize + ONNX Runtime, batch 16: the 30-line loop a Python user would write."""
    import numpy as np
    import onnxruntime as ort
    from PIL import Image
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    s = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
    meta = s.get_modelmeta().custom_metadata_map
    size = int(meta["input_size"])
    mean = np.array(json.loads(meta["mean"]), np.float32).reshape(1, 3, 1, 1)
    std = np.array(json.loads(meta["std"]), np.float32).reshape(1, 3, 1, 1)
    files = open(files_list).read().split("\n")
    files = [f for f in files if f]
    start = time.perf_counter()
    for i in range(0, len(files), 16):
        grey = [np.asarray(Image.open(f).convert("L").resize((size, size), Image.BILINEAR), np.float32)
                for f in files[i:i + 16]]
        x = np.repeat(np.stack(grey)[:, None] / 255.0, 3, axis=1).astype(np.float32)
        s.run(["probabilities"], {"input": (x - mean) / std})
    print(json.dumps({"images_per_s": len(files) / (time.perf_counter() - start)}))


# --- driver -----------------------------------------------------------------

def run_json(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--model", default=os.path.join(ROOT, "model", "fracatlas.safetensors"))
    ap.add_argument("--images", default=os.path.join(ROOT, "..", "shared", "data", "fracatlas", "images", "Fractured"))
    ap.add_argument("--files", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=4, help="per measurement")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sizes", default="224,384")
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    ap.add_argument("--files-list", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        return worker(a)

    py = venv_python()
    fracture = os.path.join(a.build, "src", "fracture")
    speed = os.path.join(a.build, "bench", "network_speed")
    for tool in (fracture, speed):
        if not os.access(tool, os.X_OK):
            sys.exit(f"{tool} is missing: configure with -DFRACTURE_BUILD_BENCH=ON and build (scripts/setup.sh does)")
    tmp = tempfile.mkdtemp(prefix="onnx_peers_")
    sizes = [int(s) for s in a.sizes.split(",")]
    batches = [int(b) for b in a.batches.split(",")]
    models = {}
    for size in sizes:
        m = os.path.join(tmp, f"model{size}.safetensors")
        with_input_size(a.model, size, m)
        subprocess.run([fracture, "-q", "export", "-m", m, "-o", m.replace(".safetensors", ".onnx")], check=True,
                       stdout=subprocess.DEVNULL)
        models[size] = m
    files = sorted(glob.glob(os.path.join(a.images, "*.jpg")))[: a.files]
    files_list = os.path.join(tmp, "files.txt")
    with open(files_list, "w") as f:
        f.write("\n".join(files))

    # fracture's oneDNN program in fp32, and in bf16 and int8 where this CPU (and, for int8, the model's
    # calibration) allows; and through LibTorch's modules (as predict ran before the program).
    def runs(precision):
        return subprocess.run([speed, models[sizes[0]], "1", "0.01", str(a.threads), precision],
                              capture_output=True).returncode == 0
    lower = [p for p in ("bf16", "int8") if runs(p)]
    engines = ["fracture", "libtorch"] + lower + ["ort", "ov-fp32", "ov-default"]
    predict_flags = {f"predict-{p}": ["--precision", p] for p in ["fp32"] + lower}
    auto = run_json([speed, models[sizes[-1]], "1", "0.01", str(a.threads), "auto"])["engine"]
    default = "int8" if "oneDNN program, int8" in auto else "fp32"
    results = {}  # (engine, size, batch) -> [img/s]
    precision = {}
    gflop = {}  # size -> GFLOP an image (2 per multiply-add), as network_speed counts them
    for r in range(a.rounds):
        for size in sizes:
            onnx = models[size].replace(".safetensors", ".onnx")
            for batch in batches:
                for e in engines:
                    if e in ("fracture", "libtorch", "bf16", "int8"):
                        out = run_json([speed, models[size], str(batch), str(a.seconds), str(a.threads),
                                        {"fracture": "fp32"}.get(e, e)])
                        gflop[size] = out["gflop_per_image"]
                    else:
                        out = run_json([py, __file__, "--worker", e, onnx, str(batch), str(a.seconds), str(a.threads)])
                        precision[e] = out["precision"]
                    results.setdefault((e, size, batch), []).append(out["images_per_s"])
        if files:
            for name, flags in predict_flags.items():
                results.setdefault((name, 384, 0), []).append(predict_rate(fracture, models[384], files, flags)[0])
            out = run_json([py, __file__, "--worker", "files", models[384].replace(".safetensors", ".onnx"), "0", "0",
                            str(a.threads), "--files-list", files_list])
            results.setdefault(("python-ort", 384, 0), []).append(out["images_per_s"])
        print(f"round {r + 1}/{a.rounds} done", file=sys.stderr)

    med = {k: statistics.median(v) for k, v in results.items()}
    nan = float("nan")
    print(f"network only, images/s, medians of {a.rounds} interleaved rounds, {a.threads} threads, {os.cpu_count()} CPUs; "
          f"OpenVINO default precision here: {precision.get('ov-default', '?')}; fracture runs here: fp32"
          f"{''.join(', ' + p for p in lower)}; `--precision auto` picks {default} for this model")
    print(f"{'size/batch':>10} {'fp32':>7} {'bf16':>7} {'int8':>7} {'LibTorch':>8} {'ORT':>7} {'OV fp32':>8} {'OV dflt':>8}   "
          f"{'x ORT':>6} {'x OV32':>6} {'x LibT':>6} {'bf16 x OVd':>10} {'int8 x OVd':>10}")
    for size in sizes:
        for batch in batches:
            f, l, b, i, o, v, d = (med.get((e, size, batch), nan)
                                   for e in ("fracture", "libtorch", "bf16", "int8", "ort", "ov-fp32", "ov-default"))
            print(f"{size:>5} / {batch:<3} {f:7.1f} {b:7.1f} {i:7.1f} {l:8.1f} {o:7.1f} {v:8.1f} {d:8.1f}   "
                  f"{f / o:6.2f} {f / v:6.2f} {f / l:6.2f} {b / d:10.2f} {i / d:10.2f}")
    peak_tool = os.path.join(a.build, "bench", "cpu_peak")
    if os.access(peak_tool, os.X_OK):
        peak = run_json([peak_tool, "3", str(a.threads)])
        print(f"GFLOP/s (2 per multiply-add; {', '.join(f'{s} px {g:.2f}' for s, g in sorted(gflop.items()))} GFLOP an "
              f"image) and share of this CPU's matmul peak (bench/cpu_peak, {a.threads} threads: fp32 "
              f"{peak['fp32_gflops']:.0f}, bf16 {peak['bf16_gflops'] or nan:.0f} GFLOP/s, int8 {peak['int8_gops'] or nan:.0f} GOP/s)")
        print(f"{'size/batch':>10} {'fp32':>12} {'bf16':>12} {'int8':>12} {'ORT':>12} {'OV fp32':>12}")
        for size in sizes:
            for batch in batches:
                cells = []
                for e, top in (("fracture", peak["fp32_gflops"]), ("bf16", peak["bf16_gflops"]),
                               ("int8", peak["int8_gops"]), ("ort", peak["fp32_gflops"]), ("ov-fp32", peak["fp32_gflops"])):
                    rate = med.get((e, size, batch), nan) * gflop.get(size, nan)
                    cells.append(f"{rate:5.0f} ({rate / (top or nan):4.0%})" if rate == rate else f"{'-':>12}")
                print(f"{size:>5} / {batch:<3} " + " ".join(f"{c:>12}" for c in cells))
    if files:
        q = med[("python-ort", 384, 0)]
        for name in predict_flags:
            p = med[(name, 384, 0)]
            print(f"files -> probabilities, {len(files)} files at 384 px: fracture {name} {p:.1f} img/s, "
                  f"Python (PIL + ONNX Runtime, batch 16) {q:.1f} img/s, ratio {p / q:.2f}")

if __name__ == "__main__":
    main()

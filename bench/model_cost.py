#!/usr/bin/python3
"""What a model costs at inference against another, side by side.

    bench/model_cost.py MODEL PEER [--rounds 5] [--seconds 4] [--batches 1,16] [--threads 2]

Runs bench/network_speed (the network as `fracture predict` and the server
run it: Predictor::score on random inputs of the model's size, precision
auto) on MODEL and on PEER, alternating within every round so that both see
the same machine, and prints each one's median images per second, its
median milliseconds per image, and the ratio of the medians. Written for
issue 16's question: what does shipping a two-network ensemble (`fracture
ensemble`) cost against one of its members?
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def speed(tool, model, batch, seconds, threads):
    r = subprocess.run([tool, model, str(batch), str(seconds), str(threads), "auto"], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"network_speed failed on {model}:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("peer")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=4, help="per measurement")
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    tool = os.path.join(a.build, "bench", "network_speed")
    if not os.access(tool, os.X_OK):
        sys.exit(f"{tool} is missing: configure with -DFRACTURE_BUILD_BENCH=ON and build (scripts/setup.sh does)")
    batches = [int(b) for b in a.batches.split(",")]
    results = {}  # (which, batch) -> [img/s]
    engines = {}
    for r in range(a.rounds):
        for batch in batches:
            order = [("model", a.model), ("peer", a.peer)]
            if r % 2:
                order.reverse()  # neither always runs first
            for which, path in order:
                j = speed(tool, path, batch, a.seconds, a.threads)
                results.setdefault((which, batch), []).append(j["images_per_s"])
                engines[which] = j["engine"]
    print(f"model: {a.model} ({engines['model']})")
    print(f"peer:  {a.peer} ({engines['peer']})")
    print(f"{a.rounds} rounds of {a.seconds:g} s each, interleaved, {a.threads} threads; medians")
    print("| batch | model img/s | peer img/s | model ms/image | peer ms/image | model / peer time |")
    print("|---|---|---|---|---|---|")
    for batch in batches:
        m = statistics.median(results[("model", batch)])
        p = statistics.median(results[("peer", batch)])
        print(f"| {batch} | {m:.2f} | {p:.2f} | {1000 / m:.1f} | {1000 / p:.1f} | {p / m:.2f}x |")


if __name__ == "__main__":
    main()

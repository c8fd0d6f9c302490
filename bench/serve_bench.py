#!/usr/bin/env python3
"""`fracture serve` under load, side by side with `fracture predict` on the same files.

A loopback load generator (threads, http.client; closed loop: each client sends
its next image when the last is answered). Rounds are interleaved - predict,
then the server at each concurrency - and medians reported. Prints:
  - predict: images/s over all files (the batch command's own timing line),
    and one image's latency (a predict run of a single file);
  - serve at concurrency 1, 4, 16, 64: images/s, p50/p95/p99 latency, errors;
  - the ratios the targets name: serve images/s at concurrency 16 / predict's
    (target >= 0.90), p99 at concurrency 1 / one image's latency (target <= 1.5);
  - with --soak S: the server's resident memory sampled every 10 s under
    concurrency 16 for S seconds (target: last within 5% of the first sample
    after warm-up).
Usage: python3 bench/serve_bench.py --images ../shared/data/fracatlas/images/Fractured [--files 64]
       [--rounds 3] [--seconds 20] [--soak 600]
"""
import argparse
import glob
import http.client
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def predict_rate(fracture, model, files, flags=()):
    """images/s from predict's own 'predicted N images in X s' line (model loading excluded)."""
    r = subprocess.run([fracture, "predict", "-m", model, *flags] + files, capture_output=True, text=True, check=True)
    m = re.search(r"predicted (\d+) images in ([0-9.]+) s", r.stderr)
    return int(m.group(1)) / float(m.group(2)), float(m.group(2)) / int(m.group(1))


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def load(port, bodies, concurrency, seconds):
    """Closed-loop load; returns (images/s, latencies in s, errors)."""
    latencies, errors = [], []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client(c):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        k = c
        while time.monotonic() < stop_at:
            body = bodies[k % len(bodies)]
            k += concurrency
            start = time.monotonic()
            try:
                conn.request("POST", "/v1/predict", body=body, headers={"Content-Type": "application/octet-stream"})
                resp = conn.getresponse()
                resp.read()
                ok = resp.status == 200
            except Exception as e:  # counted, and the connection renewed
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            with lock:
                (latencies if ok else errors).append(time.monotonic() - start)

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    return len(latencies) / elapsed, latencies, len(errors)


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))] if values else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fracture", default="build/src/fracture")
    ap.add_argument("--model", default="fracatlas")
    ap.add_argument("--images", required=True, help="a folder of radiographs")
    ap.add_argument("--files", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=20, help="per concurrency level per round")
    ap.add_argument("--concurrency", default="1,4,16,64")
    ap.add_argument("--soak", type=float, default=0, help="seconds of concurrency 16 with memory sampling")
    ap.add_argument("--serve-args", default="", help="extra flags for fracture serve")
    a = ap.parse_args()

    files = sorted(glob.glob(os.path.join(a.images, "*.jpg")) + glob.glob(os.path.join(a.images, "*.png")))[: a.files]
    if not files:
        sys.exit(f"no images in {a.images}")
    bodies = [open(f, "rb").read() for f in files]
    levels = [int(c) for c in a.concurrency.split(",")]
    port = free_port()
    server = subprocess.Popen([a.fracture, "-q", "serve", "-m", a.model, "--port", str(port), "--threads", "64",
                               "--queue", "256"] + a.serve_args.split(), stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                c.request("GET", "/readyz")
                if c.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.1)
        load(port, bodies, 4, 3)  # warm-up
        rss_start = rss_mb(server.pid)
        predict_rates, single, serve = [], [], {c: [] for c in levels}
        for r in range(a.rounds):
            predict_rates.append(predict_rate(a.fracture, a.model, files)[0])
            single.append(predict_rate(a.fracture, a.model, files[r % len(files):][:1])[1])
            for c in levels:
                serve[c].append(load(port, bodies, c, a.seconds))
        print(f"files: {len(files)} from {a.images}; model {a.model}; {a.rounds} interleaved rounds, medians; "
              f"{os.cpu_count()} CPUs")
        p_rate = statistics.median(predict_rates)
        one = statistics.median(single)
        print(f"fracture predict: {p_rate:.1f} img/s (rounds: {', '.join(f'{x:.1f}' for x in predict_rates)}); "
              f"one image: {one * 1e3:.0f} ms")
        print("concurrency  img/s   p50 ms   p95 ms   p99 ms  errors")
        for c in levels:
            rates = [x[0] for x in serve[c]]
            lat = [v for x in serve[c] for v in x[1]]
            errs = sum(x[2] for x in serve[c])
            print(f"{c:>11}  {statistics.median(rates):5.1f}  {pct(lat, 50) * 1e3:7.0f}  {pct(lat, 95) * 1e3:7.0f}  "
                  f"{pct(lat, 99) * 1e3:7.0f}  {errs:6d}")
            serve[c] = (statistics.median(rates), lat, errs)
        if 16 in serve:
            print(f"ratio serve@16 / predict img/s: {serve[16][0] / p_rate:.2f} (target >= 0.90)")
        if 1 in serve:
            print(f"ratio p99@1 / one image's latency: {pct(serve[1][1], 99) / one:.2f} (target <= 1.5)")
        print(f"server RSS: {rss_start:.0f} MB after warm-up, {rss_mb(server.pid):.0f} MB after the rounds")
        if a.soak > 0:
            samples = []
            end = time.monotonic() + a.soak
            while time.monotonic() < end:
                _, _, errs = load(port, bodies, 16, min(10, end - time.monotonic()))
                samples.append((rss_mb(server.pid), errs))
            rss = [s[0] for s in samples]
            print(f"soak {a.soak:.0f} s at concurrency 16: RSS first {rss[0]:.0f} MB, last {rss[-1]:.0f} MB, "
                  f"max {max(rss):.0f} MB, change {100 * (rss[-1] - rss[0]) / rss[0]:+.1f}% (target within 5%); "
                  f"errors {sum(s[1] for s in samples)}")
    finally:
        server.terminate()
        server.wait(timeout=60)


if __name__ == "__main__":
    main()

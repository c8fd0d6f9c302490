#!/usr/bin/env python3
"""`fracture serve` under slow and greedy clients beside normal ones (issue 38).

On loopback only. For --seconds: --slow clients from 127.0.0.2 each send a
request a byte every --gap seconds (a new connection whenever the server cuts
one off), a few clients from 127.0.0.3 stream chunked uploads past the body
limit, and --normal clients from 127.0.0.1 post a generated radiograph in a
closed loop. Prints the normal clients' answers (200s and errors), their
latency (p50, p99, max), how the slow connections ended, and the server's
peak resident memory against its model-only figure after warm-up.
Goal: 0 errors for the normal clients, memory within the configured limits
(--threads x --max-body-mb) plus the model.
Usage: python3 bench/hostile_clients.py [--seconds 60] [--slow 64] [--normal 64] [--model fracatlas]
"""
import argparse
import http.client
import io
import os
import re
import select
import socket
import statistics
import subprocess
import sys
import threading
import time

import numpy as np
from PIL import Image


def generated_radiograph(seed=1):
    """A grey 'bone' on a dark field with noise, as PNG bytes (no data set needed)."""
    rng = np.random.default_rng(seed)
    img = np.full((480, 400), 30, np.float32)
    img[:, 160:240] = 190
    img += rng.normal(0, 8, img.shape)
    out = io.BytesIO()
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(out, format="PNG")
    return out.getvalue()


def peak_rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return int(fields["VmHWM"].split()[0]) / 1024, int(fields["VmRSS"].split()[0]) / 1024


def connect(source, port):
    s = socket.socket()
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def slow_client(port, gap, stop, outcomes, lock):
    """Sends a request a byte per `gap` s; reconnects when cut off."""
    request = b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"x" * 100000
    while not stop.is_set():
        try:
            s = connect("127.0.0.2", port)
            s.settimeout(gap)
            ended = "still open"
            for byte in request:
                if stop.is_set():
                    break
                s.sendall(bytes([byte]))
                try:
                    answer = s.recv(4096)
                    ended = "answered " + answer.split(b"\r\n", 1)[0].decode() if answer else "closed by the server"
                    break
                except socket.timeout:
                    pass
            s.close()
        except OSError as e:
            ended = f"error {e.__class__.__name__}"
        with lock:
            outcomes[ended] = outcomes.get(ended, 0) + 1


def chunked_flooder(port, stop, outcomes, lock):
    """Streams 1 MiB chunks until the server answers or cuts the upload."""
    chunk = b"%x\r\n" % (1 << 20) + b"x" * (1 << 20) + b"\r\n"
    while not stop.is_set():
        try:
            s = connect("127.0.0.3", port)
            s.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            s.settimeout(10)
            answer = b""
            for _ in range(4096):  # 4 GiB at most
                if select.select([s], [], [], 0)[0]:
                    answer = s.recv(4096)
                    break
                s.sendall(chunk)
            answer = answer or s.recv(4096)
            ended = "answered " + answer.split(b"\r\n", 1)[0].decode() if answer else "closed by the server"
        except OSError as e:
            ended = f"cut ({e.__class__.__name__})"
        with lock:
            outcomes["chunked: " + ended] = outcomes.get("chunked: " + ended, 0) + 1
        time.sleep(0.2)


def normal_client(port, body, stop, latencies, errors, lock):
    conn = None
    while not stop.is_set():
        start = time.monotonic()
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60, source_address=("127.0.0.1", 0))
            conn.request("POST", "/v1/predict", body, {"Content-Type": "image/png"})
            r = conn.getresponse()
            r.read()
            ok = r.status == 200
            detail = f"HTTP {r.status}"
        except (OSError, http.client.HTTPException) as e:
            ok, detail, conn = False, e.__class__.__name__, None
        with lock:
            if ok:
                latencies.append(time.monotonic() - start)
            else:
                errors.append(detail)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fracture", default=os.path.join(os.path.dirname(__file__), "..", "build", "src", "fracture"))
    ap.add_argument("--model", default="fracatlas")
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--slow", type=int, default=64)
    ap.add_argument("--normal", type=int, default=64)
    ap.add_argument("--flooders", type=int, default=4)
    ap.add_argument("--gap", type=float, default=1.0, help="seconds between a slow client's bytes")
    ap.add_argument("--max-body-mb", type=int, default=64)
    args = ap.parse_args()

    log = open("/tmp/hostile_clients_serve.log", "w")
    server = subprocess.Popen([args.fracture, "serve", "-m", args.model, "--port", "0", "--max-body-mb",
                               str(args.max_body_mb)], stderr=log)
    port = None
    for _ in range(600):
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", open("/tmp/hostile_clients_serve.log").read())
        if m:
            port = int(m.group(1))
            break
        time.sleep(0.1)
    if port is None:
        sys.exit("the server did not start: see /tmp/hostile_clients_serve.log")
    body = generated_radiograph()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for _ in range(8):  # warm-up
        conn.request("POST", "/v1/predict", body, {"Content-Type": "image/png"})
        conn.getresponse().read()
    warm_peak, warm_rss = peak_rss_mb(server.pid)

    stop, lock = threading.Event(), threading.Lock()
    latencies, errors, outcomes = [], [], {}
    threads = [threading.Thread(target=slow_client, args=(port, args.gap, stop, outcomes, lock)) for _ in range(args.slow)]
    threads += [threading.Thread(target=chunked_flooder, args=(port, stop, outcomes, lock)) for _ in range(args.flooders)]
    for t in threads:
        t.start()
    time.sleep(2)  # the slow ones hold their connections first
    normal = [threading.Thread(target=normal_client, args=(port, body, stop, latencies, errors, lock))
              for _ in range(args.normal)]
    for t in normal:
        t.start()
    time.sleep(args.seconds)
    stop.set()
    for t in normal + threads:
        t.join()
    peak, rss = peak_rss_mb(server.pid)
    start = time.monotonic()
    server.terminate()
    code = server.wait()
    stop_s = time.monotonic() - start

    print(f"{args.slow} slow clients (a byte per {args.gap} s), {args.flooders} chunked flooders, "
          f"{args.normal} normal clients, {args.seconds:.0f} s")
    lat = sorted(latencies)
    if lat:
        print(f"normal: {len(lat)} answered 200, {len(errors)} errors; latency p50 {statistics.median(lat) * 1e3:.0f} ms, "
              f"p99 {lat[int(0.99 * (len(lat) - 1))] * 1e3:.0f} ms, max {lat[-1] * 1e3:.0f} ms")
    else:
        print(f"normal: 0 answered 200, {len(errors)} errors")
    if errors:
        print("normal errors:", {e: errors.count(e) for e in set(errors)})
    print("slow and flooding connections ended:", dict(sorted(outcomes.items())))
    print(f"server memory: {warm_rss:.0f} MB after warm-up (peak {warm_peak:.0f}), peak {peak:.0f} MB under attack, "
          f"{rss:.0f} MB at the end; limit threads x max body = 128 x {args.max_body_mb} MB")
    print(f"SIGTERM: exit {code} after {stop_s:.1f} s")


if __name__ == "__main__":
    main()

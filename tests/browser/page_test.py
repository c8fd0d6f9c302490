#!/usr/bin/env python3
"""The web page of `fracture serve` in a real browser (Debian's chromium and
chromium-driver, over the WebDriver protocol; no Selenium needed).

Starts `fracture serve` with the built-in model on a free port, loads the page
in headless Chromium, uploads a generated radiograph-like image (no FracAtlas
pixels) through the file input, waits for the result, and checks that the
probability and label shown are the API's for the same bytes, that the heat
map and the research-use banner are there, and that the page is usable by
keyboard (the file input takes focus). Saves a screenshot.

Usage: page_test.py FRACTURE_BINARY SCREENSHOT.png
Exit status 0 when every check passes; 1 with the failed check on stderr.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def radiograph_like(path):
    """A forearm-like picture: two bright bones on a dark, noisy field, one with a dark gap."""
    rng = np.random.default_rng(7)
    img = Image.new("L", (480, 640), 25)
    d = ImageDraw.Draw(img)
    d.ellipse((60, 20, 420, 620), fill=70)  # soft tissue
    d.rounded_rectangle((150, 40, 205, 600), radius=25, fill=200)  # radius
    d.rounded_rectangle((265, 40, 325, 600), radius=25, fill=210)  # ulna
    d.polygon([(150, 330), (205, 310), (205, 322), (150, 342)], fill=60)  # a fracture line
    img = img.filter(ImageFilter.GaussianBlur(3))
    noisy = np.clip(np.asarray(img, dtype=np.float32) + rng.normal(0, 6, (640, 480)), 0, 255).astype(np.uint8)
    Image.fromarray(noisy).save(path, quality=92)


def request(method, url, body=None, headers=None):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read() or b"null")


def wait_until(what, fn, seconds=90):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            v = fn()
            if v:
                return v
        except Exception:
            pass
        time.sleep(0.2)
    raise SystemExit(f"FAILED: timed out waiting for {what}")


def check(ok, what):
    if not ok:
        raise SystemExit(f"FAILED: {what}")
    print(f"ok: {what}")


def main():
    fracture, screenshot = sys.argv[1], sys.argv[2]
    browser = shutil.which("chromium") or "/usr/bin/chromium"
    driver = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    for tool in (browser, driver):
        check(os.path.exists(tool), f"{tool} is installed (scripts/setup.sh installs chromium and chromium-driver)")
    work = tempfile.mkdtemp(prefix="fracture_page_")
    image = os.path.join(work, "generated-forearm.jpg")
    radiograph_like(image)
    port, driver_port = free_port(), free_port()
    server = subprocess.Popen([fracture, "-q", "serve", "--port", str(port)], stderr=subprocess.PIPE)
    chromedriver = subprocess.Popen([driver, f"--port={driver_port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base, wd = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{driver_port}"
    session = None
    try:
        wait_until("the server", lambda: request("GET", base + "/readyz")["status"] == "ready")
        api = request("POST", base + "/v1/predict?name=generated-forearm.jpg", open(image, "rb").read(),
                      {"Content-Type": "application/octet-stream"})
        wait_until("chromedriver", lambda: request("GET", wd + "/status")["value"]["ready"])
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": browser,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1200,1000", f"--user-data-dir={work}/profile"]}}}}
        session = request("POST", wd + "/session", caps)["value"]["sessionId"]
        s = f"{wd}/session/{session}"
        request("POST", s + "/url", {"url": base + "/"})
        find = lambda css: request("POST", s + "/element", {"using": "css selector", "value": css})["value"]
        element_id = lambda e: next(iter(e.values()))
        text = lambda css: request("GET", f"{s}/element/{element_id(find(css))}/text")["value"]
        check("Research use only" in text(".banner"), "the research-use banner is shown")
        wait_until("the model's description", lambda: text("#model").startswith("Model "))
        check(api["model"] in text("#model"), "the page names the model the API serves")
        # Keyboard: Tab from the page's start reaches the file input.
        request("POST", s + "/execute/sync", {"script": "document.activeElement.blur(); return 0;", "args": []})
        for _ in range(6):
            request("POST", s + "/actions", {"actions": [{"type": "key", "id": "kb", "actions": [
                {"type": "keyDown", "value": "\ue004"}, {"type": "keyUp", "value": "\ue004"}]}]})
            if request("POST", s + "/execute/sync", {"script": "return document.activeElement.id;", "args": []})["value"] == "files":
                break
        check(request("POST", s + "/execute/sync", {"script": "return document.activeElement.id;", "args": []})["value"]
              == "files", "the file input is reachable by keyboard (Tab)")
        request("POST", f"{s}/element/{element_id(find('#files'))}/value", {"text": image})
        shown = wait_until("the result", lambda: text("[data-field=probability]"))
        shown_p = float(shown.split()[1])
        check(abs(shown_p - api["probability"]) <= 5.1e-5,  # shown to 4 decimals
             
              f"the probability shown ({shown_p}) is the API's ({api['probability']:.6f})")
        check(text("[data-field=label]") == api["label"], f"the label shown is the API's ({api['label']})")
        check(request("POST", s + "/execute/sync", {"script": "return document.querySelectorAll('.view img.overlay').length;",
                                                     "args": []})["value"] == 1, "the heat map overlay is shown")
        png = request("GET", s + "/screenshot")["value"]
        import base64
        with open(screenshot, "wb") as f:
            f.write(base64.b64decode(png))
        check(os.path.getsize(screenshot) > 10000, f"screenshot saved: {screenshot}")
    finally:
        if session:
            try:
                request("DELETE", f"{wd}/session/{session}")
            except Exception:
                pass
        chromedriver.terminate()
        server.terminate()
        server.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The web page of `fracture serve` in a real browser (Debian's chromium and
chromium-driver, over the WebDriver protocol; no Selenium needed).

Starts `fracture serve` with the built-in model on a free port, loads the page
in headless Chromium, uploads through the file input a generated
radiograph-like image (no FracAtlas pixels) as a JPEG and as a DICOM file,
together with a file that is not an image, waits for the results, and checks
that the probability and label shown for each picture are the API's for the
same bytes, that the heat map and the picture the server rendered from the
DICOM are shown, that the bad file's error is shown beside it, and that the
research-use banner is there and the page is usable by keyboard (the file
input takes focus). Saves a screenshot.

Usage: page_test.py FRACTURE_BINARY SCREENSHOT.png
Exit status 0 when every check passes; 1 with the failed check on stderr.
"""
import json
import os
import struct
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
    return noisy


def dicom_element(group, element, vr, value):
    """One explicit-VR little-endian data element, its value padded to an even length."""
    if len(value) % 2:
        value += b"\0" if vr in (b"UI", b"OB") else b" "
    head = struct.pack("<HH", group, element) + vr
    if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT"):
        return head + struct.pack("<HI", 0, len(value)) + value
    return head + struct.pack("<H", len(value)) + value


def write_dicom(path, pixels):
    """A digital X-ray (DX) Part-10 file: 12-bit MONOCHROME2 pixels in 16-bit words, as a
    detector writes them (the 8-bit picture scaled by 16), explicit VR little endian."""
    sop_class, sop_instance = b"1.2.840.10008.5.1.4.1.1.1.1", b"1.2.826.0.1.3680043.10.1044.7"
    meta = (dicom_element(2, 0x0001, b"OB", b"\0\1") + dicom_element(2, 0x0002, b"UI", sop_class) +
            dicom_element(2, 0x0003, b"UI", sop_instance) + dicom_element(2, 0x0010, b"UI", b"1.2.840.10008.1.2.1") +
            dicom_element(2, 0x0012, b"UI", b"1.2.826.0.1.3680043.10.1044"))
    us = lambda v: struct.pack("<H", v)
    rows, columns = pixels.shape
    data = (dicom_element(8, 0x0016, b"UI", sop_class) + dicom_element(8, 0x0018, b"UI", sop_instance) +
            dicom_element(8, 0x0060, b"CS", b"DX") + dicom_element(0x28, 0x0002, b"US", us(1)) +
            dicom_element(0x28, 0x0004, b"CS", b"MONOCHROME2") + dicom_element(0x28, 0x0010, b"US", us(rows)) +
            dicom_element(0x28, 0x0011, b"US", us(columns)) + dicom_element(0x28, 0x0100, b"US", us(16)) +
            dicom_element(0x28, 0x0101, b"US", us(12)) + dicom_element(0x28, 0x0102, b"US", us(11)) +
            dicom_element(0x28, 0x0103, b"US", us(0)) +
            dicom_element(0x7FE0, 0x0010, b"OW", (pixels.astype("<u2") * 16).tobytes()))
    with open(path, "wb") as f:
        f.write(b"\0" * 128 + b"DICM" + dicom_element(2, 0x0000, b"UL", struct.pack("<I", len(meta))) + meta + data)


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
    dicom = os.path.join(work, "generated-forearm.dcm")
    bad = os.path.join(work, "notes.dcm")
    write_dicom(dicom, radiograph_like(image))
    with open(bad, "w") as f:
        f.write("not a radiograph, only text\n")
    port, driver_port = free_port(), free_port()
    server = subprocess.Popen([fracture, "-q", "serve", "--port", str(port)], stderr=subprocess.PIPE)
    chromedriver = subprocess.Popen([driver, f"--port={driver_port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base, wd = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{driver_port}"
    session = None
    try:
        wait_until("the server", lambda: request("GET", base + "/readyz")["status"] == "ready")
        api = {path: request("POST", base + "/v1/predict?name=" + os.path.basename(path), open(path, "rb").read(),
                             {"Content-Type": "application/octet-stream"}) for path in (image, dicom)}
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
        script = lambda js: request("POST", s + "/execute/sync", {"script": js, "args": []})["value"]
        check("Research use only" in text(".banner"), "the research-use banner is shown")
        wait_until("the model's description", lambda: text("#model").startswith("Model "))
        check(api[image]["model"] in text("#model"), "the page names the model the API serves")
        # Keyboard: Tab from the page's start reaches the file input.
        script("document.activeElement.blur(); return 0;")
        for _ in range(6):
            request("POST", s + "/actions", {"actions": [{"type": "key", "id": "kb", "actions": [
                {"type": "keyDown", "value": "\ue004"}, {"type": "keyUp", "value": "\ue004"}]}]})
            if script("return document.activeElement.id;") == "files":
                break
        check(script("return document.activeElement.id;") == "files", "the file input is reachable by keyboard (Tab)")
        # Three files at once (WebDriver takes them newline-separated): each gets its own card.
        request("POST", f"{s}/element/{element_id(find('#files'))}/value", {"text": "\n".join([image, dicom, bad])})
        for path in (image, dicom):
            name = os.path.basename(path)
            card = f'section[aria-label="{name}"]'
            shown = wait_until(f"the result for {name}", lambda: text(card + " [data-field=probability]"))
            shown_p = float(shown.split()[1])
            check(abs(shown_p - api[path]["probability"]) <= 5.1e-5,  # shown to 4 decimals
                  f"{name}: the probability shown ({shown_p}) is the API's ({api[path]['probability']:.6f})")
            check(text(card + " [data-field=label]") == api[path]["label"], f"{name}: the label shown is the API's ({api[path]['label']})")
            # The picture is the server's rendering (a browser cannot draw DICOM), so it must have loaded.
            check(wait_until(f"the picture of {name}", lambda: script(
                f"const i = document.querySelector('{card} .view img:not(.overlay)'); return i && i.complete && i.naturalWidth;"))
                  > 0, f"{name}: the radiograph is shown")
            check(script(f"return document.querySelectorAll('{card} .view img.overlay').length;") == 1,
                  f"{name}: the heat map overlay is shown")
        error = wait_until("the bad file's error", lambda: text('section[aria-label="notes.dcm"] .error'))
        check(error.startswith("notes.dcm: ") and "DICOM" in error, f"notes.dcm: the error is shown beside the file ({error!r})")
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

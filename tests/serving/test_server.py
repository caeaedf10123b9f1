"""A real server for test-style (ONNX Runtime, model from the BentoML model store): batching, correctness,
hostile inputs, metrics, OpenAPI, the playground in headless Chromium, clean shutdown."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import zlib
from pathlib import Path

import httpx
import numpy as np
import pytest
from serving_helpers import engine_serve, free_port, png_bytes, random_image, start_or_fail
from PIL import Image

from styleengine.serving.metrics import parse_histogram

MAX_REQUEST = 256 * 1024
MAX_IMAGE = 128 * 1024


@pytest.fixture(scope="module")
def server(test_style_model, bento_home, tmp_path_factory):
    log = tmp_path_factory.mktemp("logs") / "test-style-server.log"
    srv = engine_serve(
        "test-style", "--runtime", "onnxruntime", "--model", test_style_model["tag"], "--allow-random-weights",
        "--max-batch-size", "8", "--max-latency-ms", "20000", "--max-concurrency", "64", "--timeout", "60",
        "--arg", f"max_request_bytes={MAX_REQUEST}", "--arg", f"max_image_bytes={MAX_IMAGE}",
        "--arg", "max_pixels=262144", "--arg", "max_side=1024",
        home=bento_home, log_path=log,
    )
    yield from start_or_fail(srv)


@pytest.fixture(scope="module")
def reference():
    """In-process test-style on torch (the weights the ONNX export was made from: seeded random init)."""
    from styleengine.data import from_uint8, to_uint8
    from styleengine.plugins import load_engine
    from styleengine.sessions import open_sessions
    from styleengine.style import StyleRequest

    engine = load_engine()
    style = engine.style_class("test-style")()
    sessions = open_sessions(engine, style, "torch")

    def run(img: np.ndarray, strength: float) -> np.ndarray:
        [res] = style.infer(sessions, [StyleRequest(images={"image": from_uint8(img)})], style.Config(strength=strength))
        return to_uint8(res.image)

    return run


def post(server, image: bytes, *, path: str = "/stylize", filename: str = "in.png", ctype: str = "image/png", data=None, headers=None):
    return httpx.post(server.url(path), files={"image": (filename, image, ctype)}, data=data or {}, headers=headers, timeout=30)


def test_ready_live_and_ui(server):
    assert httpx.get(server.url("/readyz")).status_code == 200
    assert httpx.get(server.url("/livez")).status_code == 200
    page = httpx.get(server.url("/ui/"))
    assert page.status_code == 200 and "styleengine playground" in page.text
    assert httpx.get(server.url("/ui"), follow_redirects=False).status_code in (301, 307, 308)
    info = httpx.get(server.url("/ui/info.json")).json()
    assert info["style"] == "test-style" and info["runtime"] == "onnxruntime"
    assert info["images"][0]["name"] == "image" and "strength" in info["params"]["properties"]


def test_sixteen_concurrent_requests_are_batched_and_exact(server, reference):
    cases = []
    for i in range(16):
        h, w = (24, 32) if i < 10 else (40, 48)  # two sizes, two strengths: several groups, some large
        strength = 0.5 if i < 10 or i % 2 else 1.0
        cases.append((random_image(h, w, seed=i), strength))

    async def go():
        async with httpx.AsyncClient(timeout=60) as c:
            return await asyncio.gather(*[
                c.post(server.url("/stylize"), files={"image": ("in.png", png_bytes(img), "image/png")}, data={"strength": str(s)})
                for img, s in cases
            ])

    responses = asyncio.run(go())
    sizes = []
    for (img, strength), r in zip(cases, responses, strict=True):
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "image/png"
        out = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"))
        ref = reference(img, strength)
        assert out.shape == img.shape
        assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1  # ONNX Runtime vs torch: within 1/255
        sizes.append(int(r.headers["x-batch-size"]))
        assert "inference;dur=" in r.headers["server-timing"]
    assert max(sizes) > 1, f"no batch larger than 1 formed: {sizes}"
    metrics = httpx.get(server.url("/metrics")).text
    hist = parse_histogram(metrics, "styleengine_batch_size", style="test-style")
    assert hist["+Inf"] > hist["1.0"], "the batch-size histogram shows no batch larger than 1"
    assert 'styleengine_request_duration_seconds_count{endpoint="stylize"' in metrics


def test_json_variant_and_content_negotiation(server, reference):
    img = random_image(16, 24, seed=99)
    r = post(server, png_bytes(img), path="/stylize.json", data={"strength": "0.25"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["format"] == "png" and (body["width"], body["height"]) == (24, 16)
    assert body["seed"] is None and body["batch_size"] >= 1 and body["style"] == "test-style"
    assert set(body["timings"]) == {"queue_ms", "inference_ms", "total_ms"}
    out = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["image"]))).convert("RGB"))
    assert np.abs(out.astype(int) - reference(img, 0.25).astype(int)).max() <= 1

    assert post(server, png_bytes(img), headers={"Accept": "application/json"}).json()["format"] == "png"
    jpeg = post(server, png_bytes(img), headers={"Accept": "image/jpeg"})
    assert jpeg.status_code == 200 and jpeg.headers["content-type"] == "image/jpeg" and jpeg.content[:3] == b"\xff\xd8\xff"
    r406 = post(server, png_bytes(img), headers={"Accept": "text/html"})
    assert r406.status_code == 406 and r406.json()["error"] == "not_acceptable"


def _truncated_png() -> bytes:
    data = png_bytes(random_image(32, 32, 1))
    return data[: len(data) // 2]


def _bomb_png() -> bytes:
    """A real decompression bomb: 4000x4000 black pixels, about 20 kB compressed."""
    buf = io.BytesIO()
    Image.new("L", (4000, 4000)).save(buf, "PNG")
    return buf.getvalue()


def _lying_header_png() -> bytes:
    """A PNG whose header claims 100000 x 100000 pixels (refused from the header alone)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def _gif() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "GIF")
    return buf.getvalue()


def _apng() -> bytes:
    buf = io.BytesIO()
    frames = [Image.new("RGB", (8, 8), c) for c in ("red", "blue")]
    frames[0].save(buf, "PNG", save_all=True, append_images=frames[1:])
    return buf.getvalue()


BAD_FILES = [
    # (name, bytes factory, filename, content type, status, code)
    ("not an image", lambda: b"hello, this is text" * 10, "in.png", "image/png", 415, "unsupported_format"),
    ("empty", lambda: b"", "in.png", "image/png", 400, "empty_image"),
    ("truncated", _truncated_png, "in.png", "image/png", 400, "truncated_image"),
    ("bomb", _bomb_png, "in.png", "image/png", 413, "too_many_pixels"),
    ("lying header", _lying_header_png, "in.png", "image/png", 413, "too_many_pixels"),
    ("gif", _gif, "in.gif", "image/gif", 415, "unsupported_format"),
    ("png named jpg", lambda: png_bytes(random_image(8, 8)), "in.jpg", "image/jpeg", 415, "format_mismatch"),
    ("animated", _apng, "in.png", "image/png", 422, "animated_image"),
    ("image over the image limit", lambda: b"\x89PNG\r\n\x1a\n" + b"\x00" * (MAX_IMAGE + 10), "in.png", "image/png", 413, "image_too_large"),
]

BAD_PARAMS = [
    ({"strength": "NaN"}, "strength"),
    ({"strength": "Infinity"}, "strength"),
    ({"strength": "-Infinity"}, "strength"),
    ({"strength": "1e999"}, "strength"),
    ({"strength": "5"}, "strength"),
    ({"strength": "-0.1"}, "strength"),
    ({"strength": "abc"}, "strength"),
    ({"strength": "9" * 5000}, "strength"),
    ({"seed": "-1"}, "seed"),
    ({"seed": "1e3"}, "seed"),
    ({"seed": str(2**64)}, "seed"),
]


def test_hostile_inputs_get_the_right_4xx_and_the_server_stays_healthy(server):
    good = png_bytes(random_image(16, 16, 3))
    for name, make, filename, ctype, status, code in BAD_FILES:
        r = post(server, make(), filename=filename, ctype=ctype)
        assert r.status_code == status, f"{name}: {r.status_code} {r.text}"
        body = r.json()
        assert body["error"] == code and body["detail"], name
        assert body.get("field") == "image", name
    for data, fld in BAD_PARAMS:
        r = post(server, good, data=data)
        assert r.status_code == 422, f"{data}: {r.status_code} {r.text}"
        assert r.json()["error"] == "invalid_parameter" and r.json()["field"] == fld, r.text
        assert fld in r.json()["detail"]
    cases = [
        # unknown field, missing image, a URL instead of a file (never fetched), duplicate parameter
        (dict(files={"image": ("a.png", good, "image/png")}, data={"colour": "red"}), 422, "unknown_field"),
        (dict(data={"strength": "0.5"}, files={"other": ("a.png", good, "image/png")}), 422, "unknown_field"),
        (dict(files={"strength": (None, "0.5"), "dummy": (None, "")}), 422, "unknown_field"),
        (dict(files={"strength": ("s.txt", b"0.5", "text/plain"), "image": ("a.png", good, "image/png")}), 422, "invalid_field"),
        (dict(files={"image": (None, "http://127.0.0.1:9/evil.png")}), 422, "invalid_field"),
        (dict(data={"image": "http://127.0.0.1:9/evil.png"}), 415, "unsupported_media_type"),
        (dict(files=[("image", ("a.png", good, "image/png")), ("image", ("b.png", good, "image/png"))]), 422, "too_many_files"),
        (dict(files={"image": ("a.png", good, "image/png")}, data={"strength": ["0.5", "0.6"]}), 422, "duplicate_field"),
    ]
    for kwargs, status, code in cases:
        r = httpx.post(server.url("/stylize"), timeout=30, **kwargs)
        assert r.status_code == status and r.json()["error"] == code, f"{kwargs.get('data')}: {r.status_code} {r.text}"
    r = httpx.post(server.url("/stylize"), files={"strength": (None, "0.5")}, timeout=30)
    assert r.status_code == 422 and r.json()["error"] == "missing_field" and r.json()["field"] == "image"
    r = httpx.post(server.url("/stylize"), json={"image": "x"}, timeout=30)
    assert r.status_code == 415 and r.json()["error"] == "unsupported_media_type"
    r = httpx.post(server.url("/stylize"), content=b"--x\r\nbroken", headers={"content-type": "multipart/form-data; boundary=x"}, timeout=30)
    assert r.status_code in (400, 422), r.text
    # oversized bodies: declared, and streamed without Content-Length (chunked)
    r = httpx.post(server.url("/stylize"), files={"image": ("big.png", b"\x89PNG" + b"\x00" * MAX_REQUEST, "image/png")}, timeout=30)
    assert r.status_code == 413 and r.json()["error"] == "request_too_large"

    def chunks():
        yield b"--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"x.png\"\r\nContent-Type: image/png\r\n\r\n"
        for _ in range(2 * MAX_REQUEST // 8192):
            yield b"\x00" * 8192

    r = httpx.post(server.url("/stylize"), content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"}, timeout=30)
    assert r.status_code == 413 and r.json()["error"] == "request_too_large"
    # still healthy, still correct
    assert httpx.get(server.url("/readyz")).status_code == 200
    assert post(server, good).status_code == 200
    assert "Traceback" not in httpx.get(server.url("/metrics")).text


def test_413_before_the_body_is_read(server):
    """A declared Content-Length over the limit is answered at once, without waiting for the body."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(
            b"POST /stylize HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            + f"Content-Length: {50 * 1024 * 1024}\r\n\r\n".encode() + b"--b\r\n"
        )
        t0 = time.monotonic()
        head = s.recv(4096)
        assert time.monotonic() - t0 < 5
    assert head.startswith(b"HTTP/1.1 413"), head[:200]
    assert b"request_too_large" in head or b"content-length" in head.lower()


def test_openapi_documents_the_style_parameters(server):
    spec = httpx.get(server.url("/docs.json")).json()
    body = spec["paths"]["/stylize"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    props = body["properties"]
    assert props["strength"]["maximum"] == 1.0 and props["strength"]["minimum"] == 0.0
    assert props["image"]["format"] == "binary" and "seed" in props
    assert "/stylize.json" in spec["paths"]
    assert "styleengine-runner" not in json.dumps(spec["paths"])  # the runner is internal
    for route in ("/stylize", "/stylize.json"):
        responses = spec["paths"][route]["post"]["responses"]
        assert {"200", "400", "408", "413", "415", "422", "429", "503", "504"} <= set(responses), sorted(responses)
        assert "too_many_requests" in responses["429"]["description"]
        assert responses["422"]["content"]["application/json"]["schema"]["allOf"][0]["$ref"] == "#/components/schemas/StyleengineError"
    assert spec["components"]["schemas"]["StyleengineError"]["required"] == ["error", "detail"]
    assert {"type": "null"} in props["seed"]["anyOf"]  # omitted or null: the server draws one


CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Chromium is not installed (/usr/bin/chromium): apt-get install -y chromium")
def test_playground_in_headless_chromium(server, tmp_path):
    from httpx_ws import connect_ws



    image = tmp_path / "photo.png"
    image.write_bytes(png_bytes(random_image(40, 56, 5)))
    port = free_port()
    profile = Path(tempfile.mkdtemp(prefix="chromium-profile-"))
    cmd = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-default-apps", "--disable-extensions", "--mute-audio",
        f"--user-data-dir={profile}", f"--remote-debugging-port={port}", "--remote-allow-origins=*", server.url("/ui/"),
    ]
    browser = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        ws_url = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and ws_url is None:
            try:
                targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=2).json()
                ws_url = next((t["webSocketDebuggerUrl"] for t in targets if t.get("type") == "page" and "/ui/" in t.get("url", "")), None)
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.3)
        assert ws_url, "Chromium's DevTools endpoint did not come up"
        with connect_ws(ws_url, httpx.Client(), max_message_size_bytes=16 << 20) as ws:
            ids = iter(range(1, 10_000))

            def cdp(method: str, **params):
                mid = next(ids)
                ws.send_json({"id": mid, "method": method, "params": params})
                while True:
                    msg = ws.receive_json(timeout=30)
                    if msg.get("id") == mid:
                        assert "error" not in msg, msg
                        return msg["result"]

            def js(expr: str):
                return cdp("Runtime.evaluate", expression=expr, returnByValue=True)["result"].get("value")

            def wait_js(expr: str, timeout: float = 30.0):
                t0 = time.monotonic()
                while time.monotonic() - t0 < timeout:
                    value = js(expr)
                    if value:
                        return value
                    time.sleep(0.2)
                page_error = js("document.getElementById('error').textContent")
                raise AssertionError(f"timed out waiting for {expr}; page error: {page_error}")

            wait_js("document.body.dataset.ready === 'true'")
            assert js("document.getElementById('p-strength') !== null")  # the form came from the Config schema
            doc = cdp("DOM.getDocument")
            node = cdp("DOM.querySelector", nodeId=doc["root"]["nodeId"], selector="#f-image")["nodeId"]
            cdp("DOM.setFileInputFiles", nodeId=node, files=[str(image)])
            js("document.getElementById('f-image').dispatchEvent(new Event('change'))")
            js("document.getElementById('p-strength').value = '0.5'")
            js("document.getElementById('submit').click()")
            width = wait_js("(() => { const i = document.getElementById('result-image'); return i && i.complete ? i.naturalWidth : 0 })()")
            assert width == 56
            assert js("document.querySelector('#input-view img').naturalWidth") == 56
            assert js("document.getElementById('t-total').textContent").endswith("ms")
    finally:
        browser.terminate()
        try:
            browser.wait(10)
        except subprocess.TimeoutExpired:
            browser.kill()
        shutil.rmtree(profile, ignore_errors=True)


def test_server_stops_cleanly(server):
    rc = server.stop()
    assert rc in (0, -15, 143), f"exit status {rc}:\n{server.log()[-3000:]}"
    assert "Traceback" not in server.log(), server.log()[-5000:]
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url("/livez"), timeout=2)

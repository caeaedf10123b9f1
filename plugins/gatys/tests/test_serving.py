"""The optimisation served as a long job over real HTTP (`engine serve gatys`): BentoML task routes with
progress in the status, a bounded number of jobs (429 beyond), cancellation that stops the work within one
iteration, and a result equal to the in-process run with the same seed."""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("bentoml")
httpx = pytest.importorskip("httpx")

SERVING = Path(__file__).resolve().parents[3] / "tests" / "serving"
sys.path.append(str(SERVING))
from serving_helpers import engine_serve, png_bytes, random_image  # noqa: E402

PARAMS = {"image_size": 32, "content_layers": ["relu2_1"], "style_layers": ["relu1_1", "relu2_1"]}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import json

    root = tmp_path_factory.mktemp("gatys_serve")
    args = [a for k, v in PARAMS.items() for a in ("--param", f"{k}={json.dumps(v) if isinstance(v, list) else v}")]
    srv = engine_serve("gatys", *args, home=root / "home", log_path=root / "server.log",
                       env={"STYLEENGINE_TASK_MAX_RUNNING": "1", "STYLEENGINE_TASK_MAX_QUEUED": "1"})
    srv.start()
    try:
        srv.wait_for("/readyz", timeout=120)
        yield srv
    finally:
        srv.stop()


def _files():
    return [("content", ("c.png", png_bytes(random_image(32, 32, 1)), "image/png")),
            ("style", ("s.png", png_bytes(random_image(24, 32, 2)), "image/png"))]


def _status(srv, tid, **extra):
    return httpx.get(srv.url("/stylize_task/status"), params={"task_id": tid, **extra}, timeout=10).json()


def _wait(srv, tid, pred, timeout=60):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        st = _status(srv, tid)
        if pred(st):
            return st
        time.sleep(0.1)
    raise AssertionError(f"task {tid}: {st}")


def test_task_progress_limit_cancel_and_result(server):
    long = httpx.post(server.url("/stylize_task/submit"), files=_files(), data={"num_iterations": "5000", "print_iter": "1", "save_every": "10", "seed": "3"}, timeout=30)
    assert long.status_code == 200, long.text
    tid = long.json()["task_id"]
    st = _wait(server, tid, lambda s: s.get("progress", {}).get("step", 0) >= 12)
    assert st["status"] == "in_progress" and st["state"] == "running" and st["progress"]["total"] == 5000
    assert set(st["progress"]["losses"]) == {"content", "style", "tv", "total"}
    with_preview = _status(server, tid, preview="1")
    from PIL import Image

    import base64

    assert Image.open(io.BytesIO(base64.b64decode(with_preview["preview"]))).size == (32, 32)

    queued = httpx.post(server.url("/stylize_task/submit"), files=_files(), data={"num_iterations": "5", "seed": "11"}, timeout=30)
    assert queued.status_code == 200
    refused = httpx.post(server.url("/stylize_task/submit"), files=_files(), data={"num_iterations": "5"}, timeout=30)
    assert refused.status_code == 429 and refused.json()["error"] == "too_many_jobs"

    c = httpx.put(server.url("/stylize_task/cancel"), params={"task_id": tid}, timeout=10)
    assert c.status_code == 200
    at_cancel = c.json()["progress"]["step"]
    st = _wait(server, tid, lambda s: s["state"] == "canceled")
    time.sleep(0.5)
    st = _status(server, tid)
    assert st["status"] == "canceled" and at_cancel <= st["progress"]["step"] <= at_cancel + 1  # stopped within one iteration

    qid = queued.json()["task_id"]
    _wait(server, qid, lambda s: s["status"] == "completed")
    got = httpx.get(server.url("/stylize_task/get"), params={"task_id": qid}, timeout=10)
    assert got.status_code == 200 and got.headers["content-type"] == "image/png" and got.headers["x-seed"] == "11"
    served = np.asarray(Image.open(io.BytesIO(got.content)).convert("RGB"))

    # the same request in this process
    import torch

    from styleengine.data import from_uint8
    from styleengine.style import StyleRequest
    from styleengine_gatys import GatysStyle

    torch.set_num_threads(1)
    style = GatysStyle(device="cpu")
    req = StyleRequest(images={"content": from_uint8(random_image(32, 32, 1)), "style": [from_uint8(random_image(24, 32, 2))]}, seed=11)
    [res] = style.infer({}, [req], style.parse_config({**PARAMS, "num_iterations": 5}))
    mine = (np.clip(res.image, 0, 1) * 255).round().astype(np.uint8)
    assert served.shape == mine.shape == (32, 32, 3)
    assert np.abs(served.astype(int) - mine.astype(int)).max() <= 1
    assert httpx.get(server.url("/stylize_task/status"), params={"task_id": "nope"}, timeout=10).status_code == 404

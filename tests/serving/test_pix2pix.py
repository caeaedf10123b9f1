"""The same service serving pix2pix (tiny U-Net, random weights, ONNX Runtime): no pix2pix-specific server
code; batched concurrent requests equal in-process inference; seeds come back.  Skipped where the pix2pix
plugin is not installed."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys

import httpx
import numpy as np
import pytest
from PIL import Image
from serving_helpers import REPO, engine_serve, png_bytes, random_image, server_env, start_or_fail

TINY = {"netG": "unet_128", "ngf": 4}


def _has_pix2pix() -> bool:
    from styleengine.plugins import load_engine

    return "pix2pix" in load_engine().styles


pytestmark = pytest.mark.skipif(not _has_pix2pix(), reason="the pix2pix plugin is not installed")


@pytest.fixture(scope="module")
def server(bento_home, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("p2p")
    out = tmp / "artifacts"
    profile = tmp / "small.yaml"  # sides up to 256: a quick parity check at the max shapes
    profile.write_text("dims:\n  height: {min: 128, opt: 128, max: 256}\n  width: {min: 128, opt: 128, max: 256}\n  batch: {min: 1, opt: 2, max: 4}\n")
    sets = [a for k, v in TINY.items() for a in ("--model-set", f"{k}={v}")]
    r = subprocess.run(
        [sys.executable, "-m", "styleengine", "-q", "export", "pix2pix", "--allow-random-weights", *sets, "--profile", str(profile),
         "--out", str(out), "--bento-model"],
        env=server_env(bento_home), cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, r.stderr
    srv = engine_serve(
        "pix2pix", "--runtime", "onnxruntime", "--model", "styleengine-pix2pix-eval:latest", "--allow-random-weights",
        "--max-batch-size", "4", "--max-latency-ms", "20000",
        home=bento_home, log_path=tmp_path_factory.mktemp("logs") / "pix2pix.log",
    )
    yield from start_or_fail(srv)


@pytest.fixture(scope="module")
def reference():
    from styleengine.data import from_uint8, to_uint8
    from styleengine.plugins import load_engine
    from styleengine.sessions import open_sessions
    from styleengine.style import StyleRequest

    engine = load_engine()
    style = engine.style_class("pix2pix")(TINY, variant="eval")
    sessions = open_sessions(engine, style, "torch")

    def run(img: np.ndarray, seed: int) -> np.ndarray:
        [res] = style.infer(sessions, [StyleRequest(images={"image": from_uint8(img)}, seed=seed)], style.Config())
        return to_uint8(res.image)

    return run


def test_pix2pix_batched_requests_match_in_process_inference(server, reference):
    cases = [(random_image(*((128, 128) if i < 6 else (96, 160)), seed=i), 100 + i) for i in range(8)]

    async def go():
        async with httpx.AsyncClient(timeout=120) as c:
            return await asyncio.gather(*[
                c.post(server.url("/stylize"), files={"image": ("in.png", png_bytes(img), "image/png")}, data={"seed": str(seed)})
                for img, seed in cases
            ])

    sizes = []
    for (img, seed), r in zip(cases, asyncio.run(go()), strict=True):
        assert r.status_code == 200, r.text
        assert r.headers["x-seed"] == str(seed)
        out = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"))
        assert out.shape == img.shape
        assert np.abs(out.astype(int) - reference(img, seed).astype(int)).max() <= 1
        sizes.append(int(r.headers["x-batch-size"]))
    assert max(sizes) > 1, sizes
    info = httpx.get(server.url("/ui/info.json")).json()
    assert info["style"] == "pix2pix" and "size" in info["params"]["properties"] and info["seeded"] is True
    bad = httpx.post(server.url("/stylize"), files={"image": ("in.png", png_bytes(random_image(8, 8)), "image/png")}, data={"size": "2"})
    assert bad.status_code == 422 and bad.json()["field"] == "size"

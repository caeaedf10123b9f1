"""The same service serving pix2pix (tiny U-Net, random weights, ONNX Runtime): no pix2pix-specific server
code; batched concurrent requests equal in-process inference; seeds come back.  Skipped where the pix2pix
plugin is not installed."""

from __future__ import annotations

import asyncio
import io

import httpx
import numpy as np
import pytest
from PIL import Image
from serving_helpers import PIX2PIX_TINY as TINY
from serving_helpers import engine_serve, png_bytes, random_image, start_or_fail


@pytest.fixture(scope="module")
def server(bento_home, pix2pix_model, tmp_path_factory):
    srv = engine_serve(
        "pix2pix", "--runtime", "onnxruntime", "--model", pix2pix_model["tag"], "--allow-random-weights",
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

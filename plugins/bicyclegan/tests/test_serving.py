"""The generic service's request parsing for BicycleGAN: the optional example image, bounded n_samples, sync, z as
JSON, and the request schema built from the Config; the runner's answer carries every sample."""

from __future__ import annotations

import asyncio
import io

import numpy as np
import pytest
from PIL import Image

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")


def png(h: int, w: int) -> tuple[str, bytes, str]:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(h * w).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, format="PNG")
    return ("x.png", buf.getvalue(), "image/png")


def test_requests_parse_and_validate() -> None:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from styleengine.data import ImageLimits
    from styleengine.serving.errors import ApiError
    from styleengine.serving.schema import RequestLimits, build_input_model, parse_request
    from styleengine_bicyclegan import BicycleGAN

    limits = RequestLimits(ImageLimits(max_bytes=1 << 20))

    async def endpoint(request: Request):  # noqa: ANN202
        try:
            p = await parse_request(request, BicycleGAN, limits)
        except ApiError as exc:
            return exc.response()
        return JSONResponse({"images": sorted(p.images), "params": p.params, "seed": p.seed})

    app = Starlette(routes=[Route("/", endpoint, methods=["POST"])])

    async def run():  # noqa: ANN202
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            plain = await c.post("/", files=[("image", png(8, 8)), ("n_samples", (None, "3")), ("sync", (None, "true")), ("seed", (None, "5"))])
            example = await c.post("/", files=[("image", png(8, 8)), ("style", png(6, 4)), ("z", (None, "[[0.1, 0.2], [0.3, 0.4]]"))])
            too_many = await c.post("/", files=[("image", png(8, 8)), ("n_samples", (None, "65"))])
            bad_z = await c.post("/", files=[("image", png(8, 8)), ("z", (None, "[0.1, 99]"))])
            return plain, example, too_many, bad_z

    plain, example, too_many, bad_z = asyncio.run(run())
    assert plain.status_code == 200, plain.json()
    body = plain.json()
    assert body["images"] == ["image"] and body["seed"] == 5
    assert body["params"]["n_samples"] == 3 and body["params"]["sync"] is True and body["params"]["z"] is None
    assert example.status_code == 200 and example.json()["images"] == ["image", "style"]
    assert example.json()["params"]["z"] == [[0.1, 0.2], [0.3, 0.4]]
    assert too_many.status_code == 422 and too_many.json()["field"] == "n_samples"
    assert bad_z.status_code == 422 and bad_z.json()["error"] == "invalid_parameter"
    schema = build_input_model(BicycleGAN, limits).model_json_schema()
    assert schema["properties"]["n_samples"]["maximum"] == 64 and "style" in schema["properties"]
    assert "style" not in schema.get("required", [])


def test_the_runner_batches_requests_and_answers_every_sample() -> None:
    """The generic runner (what the service's endpoints call): requests of one shape and parameters go into one
    style_infer call, each answer carries its samples (``images``) and the side-by-side grid (``image``)."""
    import time

    from styleengine.data import from_uint8, to_uint8
    from styleengine.serving.args import ServeArgs
    from styleengine.serving.runner import RunnerCore, RunnerItem
    from styleengine.style import StyleRequest

    core = RunnerCore(ServeArgs(style="bicyclegan", allow_random_weights=True, max_batch_size=4, max_latency_ms=60_000,
                                model_set={"netG": "unet_128", "ngf": 4, "nef": 4, "netE": "resnet_128"}))
    core.start(background=False)
    assert core.ready, core.error
    rng = np.random.default_rng(0)
    imgs = [(rng.random((40, 60, 3)) * 255).astype(np.uint8) for _ in range(4)]
    params = core.style.Config(n_samples=3).model_dump(mode="json")
    items = [RunnerItem(id=str(i), images={"image": im}, params=params, seed=20 + i, sent_at=time.time()) for i, im in enumerate(imgs)]
    outs = core.run_batch(items)
    assert core.buckets[-1] == 4 and [o.status for o in outs] == [200] * 4 and {o.batch_size for o in outs} == {4}
    for i, (im, o) in enumerate(zip(imgs, outs, strict=True)):
        assert o.seed == 20 + i and len(o.images) == 3 and o.image.shape == (40, 180, 3)
        [ref] = core.style.infer(core.sessions, [StyleRequest({"image": from_uint8(im)}, seed=20 + i)], core.style.Config(n_samples=3))
        for got, want in zip(o.images, ref.images, strict=True):
            assert np.abs(got.astype(int) - to_uint8(want).astype(int)).max() <= 1  # 12 rows in 8 + 4 vs 3: float rounding

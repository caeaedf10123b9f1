"""The generic service with this style: image + instruction in, edited image out, batched; the form and /ui info.

In-process (no server processes): the request parser and the playground's field list come from the style's
InputContract, and the runner batches requests with different instructions into one ``style_infer`` call on
the exported tiny graphs.
"""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from ip2p_helpers import FAST
from PIL import Image
from styleengine_instruct_pix2pix import InstructPix2PixStyle

pytest.importorskip("starlette")


def test_playground_info_shows_the_instruction_field():
    from styleengine.serving.args import ServeArgs
    from styleengine.serving.ui import style_info

    info = style_info(InstructPix2PixStyle, ServeArgs(style="instruct_pix2pix"), 8)
    texts = {t["name"]: t for t in info["texts"]}
    assert texts["instruction"]["required"] and texts["instruction"]["max_length"] == 500
    assert not texts["negative_prompt"]["required"]
    assert [i["name"] for i in info["images"]] == ["image"] and info["seeded"]
    props = info["params"]["properties"]
    assert props["steps"]["maximum"] == 500 and props["scheduler"]["default"] == "euler_ancestral"


def _png(h: int, w: int, seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray((np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def test_request_parsing_needs_the_instruction():
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from styleengine.data import ImageLimits
    from styleengine.serving.errors import ApiError
    from styleengine.serving.schema import RequestLimits, build_input_model, parse_request

    limits = RequestLimits(ImageLimits())
    model = build_input_model(InstructPix2PixStyle, limits)
    assert {"image", "instruction", "negative_prompt", "steps", "seed"} <= set(model.model_fields)

    async def endpoint(request):
        try:
            parsed = await parse_request(request, InstructPix2PixStyle, limits)
        except ApiError as exc:
            return JSONResponse(exc.body(), status_code=exc.status)
        return JSONResponse({"texts": parsed.texts, "params": parsed.params, "seed": parsed.seed})

    client = TestClient(Starlette(routes=[Route("/stylize", endpoint, methods=["POST"])]))
    files = {"image": ("a.png", _png(40, 56, 0), "image/png")}
    r = client.post("/stylize", files=files, data={"instruction": "make it snowy", "steps": "2"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["texts"] == {"instruction": "make it snowy"} and body["params"]["steps"] == 2 and body["seed"] is not None
    r = client.post("/stylize", files=files, data={"steps": "2"})
    assert r.status_code == 422 and r.json()["field"] == "instruction"
    r = client.post("/stylize", files=files, data={"instruction": "x" * 501})
    assert r.status_code == 422 and r.json()["error"] == "text_too_long"
    r = client.post("/stylize", files=files, data={"instruction": "x", "image_guidance_scale": "nan"})
    assert r.status_code == 422 and r.json()["field"] == "image_guidance_scale"


def test_runner_batches_requests_with_different_instructions(exported):
    """The service's runner on the exported tiny graphs (ONNX Runtime): three requests, one parameter group,
    split into the graphs' batch buckets (2 + 1); each result equals the request run alone."""
    from styleengine.serving.args import ServeArgs
    from styleengine.serving.runner import RunnerCore, RunnerItem

    out, _ = exported
    args = ServeArgs(style="ip2p", runtime="onnxruntime", artifacts=str(out), allow_random_weights=True,
                     max_batch_size=4, warmup=False)
    core = RunnerCore(args)
    core.start(background=False)
    assert core.ready, core.error
    assert core.buckets == (1, 2)  # the tiny profile's graphs take 1..2 requests
    rng = np.random.default_rng(0)
    images = [(rng.random((48, 64, 3)) * 255).astype(np.uint8) for _ in range(3)]
    instructions = ["make it snowy", "turn the sky red", "add fireworks"]
    params = dict(FAST)

    def item(i: int) -> RunnerItem:
        return RunnerItem(id=f"r{i}", images={"image": images[i]}, texts={"instruction": instructions[i]}, params=params,
                          seed=10 + i, sent_at=time.time())

    outs = core.run_batch([item(i) for i in range(3)])
    assert [o.status for o in outs] == [200, 200, 200], [o.detail for o in outs]
    assert [o.batch_size for o in outs] == [2, 2, 1] and all(o.dispatch_size == 3 for o in outs)
    assert all(o.image.shape == (48, 64, 3) and o.image.dtype == np.uint8 for o in outs)
    assert [o.seed for o in outs] == [10, 11, 12]
    alone = core.run_batch([item(0)])[0]
    assert np.abs(alone.image.astype(int) - outs[0].image.astype(int)).max() <= 1
    bad = core.run_batch([RunnerItem(id="big", images={"image": images[0]}, texts={"instruction": "x"},
                                     params={**params, "resolution": 512}, seed=1, sent_at=time.time())])[0]
    assert bad.status == 422 and bad.error == "unsupported_size"
    core.stop()

"""AdaIN through the generic service: two image fields (content, several styles), an optional mask, parameters.

In-process (no server processes): the request parser and the playground's field list come from the style's
InputContract, and the service's runner stacks requests with *different* style images of equal sizes into one
``style_infer`` call, each result equal to that request run alone.  The HTTP path itself (multipart over a
real ``bentoml serve``) is covered by tests/serving with pix2pix and the test style: nothing in it is
style-specific.
"""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from adain_helpers import smooth_image
from PIL import Image
from styleengine_adain.style import AdaINStyle

pytest.importorskip("starlette")

#: Process every image at its own size (the 512 defaults would resize 40x56 test images up to 512).
OWN_SIZE = {"content_size": 0, "style_size": 0}


def _png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray((np.clip(img, 0, 1) * 255).round().astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _uint8(img: np.ndarray) -> np.ndarray:
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def test_playground_info_lists_content_styles_and_mask():
    from styleengine.serving.args import ServeArgs
    from styleengine.serving.ui import style_info

    info = style_info(AdaINStyle, ServeArgs(style="adain"), 8)
    fields = [(i["name"], i["multiple"], i["required"]) for i in info["images"]]
    assert fields == [("content", False, True), ("style", True, True), ("mask", False, False)]
    props = info["params"]["properties"]
    assert props["alpha"]["minimum"] == 0.0 and props["alpha"]["maximum"] == 1.0 and "preserve_color" in props
    assert info["texts"] == []


def test_request_parsing_two_image_fields_and_parameters():
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from styleengine.data import ImageLimits
    from styleengine.serving.errors import ApiError
    from styleengine.serving.schema import RequestLimits, build_input_model, parse_request

    limits = RequestLimits(ImageLimits(), max_images_per_field=2)
    schema = build_input_model(AdaINStyle, limits).model_json_schema()
    assert schema["properties"]["style"]["type"] == "array" and {"content", "alpha", "style_weights"} <= set(schema["properties"])

    async def endpoint(request):
        try:
            p = await parse_request(request, AdaINStyle, limits)
        except ApiError as exc:
            return exc.response()
        return JSONResponse({"content": list(p.images["content"].shape), "style": [list(a.shape) for a in p.images["style"]],
                             "params": p.params})

    client = TestClient(Starlette(routes=[Route("/stylize", endpoint, methods=["POST"])]))
    content = ("c.png", _png(smooth_image(40, 56, 1)), "image/png")
    style_a = ("a.png", _png(smooth_image(32, 48, 2)), "image/png")
    style_b = ("b.png", _png(smooth_image(48, 40, 3)), "image/png")
    r = client.post("/stylize", files=[("content", content), ("style", style_a), ("style", style_b)],
                    data={"alpha": "0.6", "style_weights": "[0.25, 0.75]"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["content"] == [40, 56, 3] and body["style"] == [[32, 48, 3], [48, 40, 3]]
    assert body["params"]["alpha"] == 0.6 and body["params"]["style_weights"] == [0.25, 0.75]

    missing = client.post("/stylize", files=[("content", content)])
    assert missing.status_code == 422 and missing.json()["field"] == "style"
    three = client.post("/stylize", files=[("content", content), ("style", style_a), ("style", style_a), ("style", style_b)])
    assert three.status_code == 422 and three.json()["error"] == "too_many_files"
    bad_alpha = client.post("/stylize", files=[("content", content), ("style", style_a)], data={"alpha": "NaN"})
    assert bad_alpha.status_code == 422 and bad_alpha.json()["field"] == "alpha"
    zero_weights = client.post("/stylize", files=[("content", content), ("style", style_a)], data={"style_weights": "[0]"})
    assert zero_weights.status_code == 422 and zero_weights.json()["error"] == "invalid_parameter"


@pytest.fixture(scope="module")
def core():
    """The service's runner on torch with random weights (the graphs' shapes do not matter on torch)."""
    from styleengine.serving.args import ServeArgs
    from styleengine.serving.runner import RunnerCore

    args = ServeArgs(style="adain", runtime="torch", allow_random_weights=True, max_batch_size=4, warmup=False)
    core = RunnerCore(args)
    core.start(background=False)
    assert core.ready, core.error
    yield core
    core.stop()


def test_runner_stacks_requests_with_different_style_images(core):
    from styleengine.serving.runner import RunnerItem

    contents = [_uint8(smooth_image(40, 56, 10 + i)) for i in range(3)]
    styles = [_uint8(smooth_image(32, 48, 20 + i)) for i in range(3)]

    def item(i: int, **params: object) -> RunnerItem:
        return RunnerItem(id=f"r{i}", images={"content": contents[i], "style": [styles[i]]}, texts={},
                          params={**OWN_SIZE, "alpha": 0.8, **params}, seed=None, sent_at=time.time())

    outs = core.run_batch([item(0), item(1), item(2)])
    assert [o.status for o in outs] == [200, 200, 200], [o.detail for o in outs]
    assert core.buckets == (1, 2, 4)
    assert [o.batch_size for o in outs] == [2, 2, 1] and all(o.dispatch_size == 3 for o in outs)
    assert all(o.image.shape == (40, 56, 3) and o.image.dtype == np.uint8 for o in outs)
    for i in range(3):  # stacked with other requests' styles, each gets its own result (uint8 rounding of
        alone = core.run_batch([item(i)])[0]  # float sums a batched convolution may order differently: <= 1 level)
        assert alone.batch_size == 1
        assert np.abs(alone.image.astype(int) - outs[i].image.astype(int)).max() <= 1, i
    # a request with other parameters is never stacked with these
    mixed = core.run_batch([item(0), item(1, alpha=0.3)])
    assert [o.batch_size for o in mixed] == [1, 1]
    assert np.abs(mixed[0].image.astype(int) - outs[0].image.astype(int)).max() <= 1
    [low_alpha] = core.run_batch([item(1, alpha=0.3)])
    assert np.array_equal(mixed[1].image, low_alpha.image)


def test_runner_two_styles_with_weights_and_a_mask(core):
    from styleengine.serving.runner import RunnerItem

    content = _uint8(smooth_image(40, 56, 1))
    styles = [_uint8(smooth_image(32, 48, 2)), _uint8(smooth_image(48, 40, 3))]

    def run(images: dict, **params: object):
        [out] = core.run_batch([RunnerItem(id="x", images=images, texts={}, params={**OWN_SIZE, **params}, seed=None, sent_at=time.time())])
        assert out.status == 200, out.detail
        return out

    single = run({"content": content, "style": styles[:1]}).image
    assert np.array_equal(run({"content": content, "style": styles}, style_weights=[1.0, 0.0]).image, single)  # (1, 0): the first alone
    assert np.array_equal(run({"content": content, "style": styles}).image,
                          run({"content": content, "style": styles}, style_weights=[0.5, 0.5]).image)  # default: equal weights
    half = np.zeros((40, 56, 3), np.uint8)
    half[:, :28] = 255
    masked = run({"content": content, "style": styles, "mask": half})
    assert masked.info.get("mask") and masked.image.shape == (40, 56, 3)  # the mask field reached the pipeline
    white = run({"content": content, "style": styles[:1], "mask": np.full((40, 56, 3), 255, np.uint8)})
    assert np.abs(white.image.astype(int) - single.astype(int)).max() <= 1  # an all-white mask is plain AdaIN

"""In-process tests of the serving pieces (no server): grouping, buckets, the runner core (results
identical to unbatched inference, deadlines, queue budget, cancellation), the body limit, cancellation
tokens, the request guard and the CLI's argument checks."""

from __future__ import annotations

import asyncio
import sys
import time

import httpx
import numpy as np
import pytest
from serving_helpers import REPO

from styleengine import cancel
from styleengine.serving.args import ServeArgs
from styleengine.serving.batching import bucket_sizes, group_key, plan_chunks, split_count


def test_bucket_sizes_and_split():
    assert bucket_sizes(8) == (1, 2, 4, 8)
    assert bucket_sizes(8, graph_max=4) == (1, 2, 4)
    assert bucket_sizes(6) == (1, 2, 4, 6)
    assert bucket_sizes(1) == (1,)
    assert split_count(7, (1, 2, 4)) == [4, 2, 1]
    assert split_count(13, (1, 2, 4, 6)) == [6, 6, 1]
    assert split_count(0, (1,)) == []
    with pytest.raises(ValueError):
        split_count(3, (2, 4))


def test_grouping_by_shapes_and_params_keeps_arrival_order():
    a, b = np.zeros((8, 8, 3)), np.zeros((16, 8, 3))
    keys = [
        group_key({"image": a}, {"strength": 1.0}),
        group_key({"image": b}, {"strength": 1.0}),
        group_key({"image": a}, {"strength": 0.5}),
        group_key({"image": a}, {"strength": 1.0}),
        group_key({"image": a}, {"strength": 1.0}),
        group_key({"image": a, "style": [a, a]}, {"strength": 1.0}),
        group_key({"image": a, "style": [a]}, {"strength": 1.0}),
    ]
    assert keys[0] == keys[3] == keys[4] and keys[0] != keys[1] and keys[0] != keys[2] and keys[5] != keys[6]
    assert plan_chunks(keys, (1, 2)) == [[0, 3], [4], [1], [2], [5], [6]]


@pytest.fixture(scope="module")
def core():
    from styleengine.serving.runner import RunnerCore

    c = RunnerCore(ServeArgs(style="test-style", allow_random_weights=True, max_batch_size=8, max_latency_ms=60_000))
    c.start(background=False)
    assert c.ready, c.error
    return c


def item(img, strength=1.0, **kw):
    from styleengine.serving.runner import RunnerItem

    return RunnerItem(id=kw.pop("id", "r"), images={"image": img}, params={"strength": strength}, sent_at=kw.pop("sent_at", time.time()), **kw)


def test_runner_batches_never_change_results(core):
    from styleengine.data import from_uint8, to_uint8
    from styleengine.style import StyleRequest

    assert core.buckets == (1, 2, 4)  # test-style's graph takes batches up to 4; warm-up ran each
    rng = np.random.default_rng(0)
    imgs = [(rng.random((h, 16, 3)) * 255).astype(np.uint8) for h in (8, 8, 16, 8, 8, 8, 8, 16)]
    strengths = [1.0, 1.0, 1.0, 0.5, 1.0, 1.0, 1.0, 1.0]
    outs = core.run_batch([item(im, s, id=str(i)) for i, (im, s) in enumerate(zip(imgs, strengths, strict=True))])
    assert [o.status for o in outs] == [200] * 8
    assert [o.batch_size for o in outs] == [4, 4, 2, 1, 4, 4, 1, 2]  # groups: 5x(8,1.0) -> 4+1, 2x16, 1x0.5
    for im, s, o in zip(imgs, strengths, outs, strict=True):
        [ref] = core.style.infer(core.sessions, [StyleRequest(images={"image": from_uint8(im)})], core.style.Config(strength=s))
        assert np.array_equal(o.image, to_uint8(ref.image))
        assert o.dispatch_size == 8


def test_runner_deadline_and_queue_budget(core):
    now = time.time()
    img = np.zeros((8, 8, 3), np.uint8)
    outs = core.run_batch([
        item(img, id="late", deadline=now - 1),
        item(img, id="stale", sent_at=now - 120),
        item(img, id="fine", deadline=now + 30),
    ])
    assert [(o.id, o.status, o.error) for o in outs] == [("late", 504, "timeout"), ("stale", 503, "overloaded"), ("fine", 200, None)]


def test_runner_refuses_before_ready_and_bad_sizes():
    from styleengine.serving.runner import RunnerCore

    c = RunnerCore(ServeArgs(style="test-style", allow_random_weights=True))
    [o] = c.run_batch([item(np.zeros((8, 8, 3), np.uint8))])
    assert (o.status, o.error) == (503, "not_ready")
    c.start(background=False)
    [o] = c.run_batch([item(np.zeros((8, 3000, 3), np.uint8))])  # test-style pads up to 2048 at most
    assert o.status == 422 and o.error == "unsupported_size"


def test_runner_needs_weights_or_permission():
    from styleengine.serving.preflight import StartupError
    from styleengine.serving.runner import RunnerCore

    with pytest.raises(StartupError, match="test-style has no weights loaded.*--allow-random-weights"):
        RunnerCore(ServeArgs(style="test-style"))


def test_runner_cancels_iterative_work_at_the_deadline():
    sys.path.insert(0, str(REPO / "tests" / "serving"))
    from styleengine.plugins import load_engine
    from styleengine.serving.runner import RunnerCore

    engine = load_engine(extra_plugins=["slow_style"])
    c = RunnerCore(ServeArgs(style="slow-style", allow_random_weights=True), engine=engine)
    c.start(background=False)
    from styleengine.serving.runner import RunnerItem

    t0 = time.monotonic()
    [o] = c.run_batch([RunnerItem(id="x", images={"image": np.zeros((8, 8, 3), np.uint8)}, params={"steps": 200, "step_ms": 10},
                                  sent_at=time.time(), deadline=time.time() + 0.3)])
    assert o.status == 504 and o.error == "timeout"
    assert time.monotonic() - t0 < 1.5


def test_cancel_tokens():
    assert not cancel.is_cancelled()
    cancel.check()  # no token: a no-op
    token = cancel.CancelToken(time.monotonic() + 0.05)
    with cancel.use_token(token):
        cb = cancel.step_callback()
        assert cb(1, 10, None) is True
        cancel.check()
        time.sleep(0.06)
        assert cancel.is_cancelled() and cb(2, 10, None) is False
        with pytest.raises(cancel.Cancelled):
            cancel.check()
    assert cancel.current() is None
    t = cancel.CancelToken()
    t.cancel("client gone")
    assert t.cancelled and t.reason == "client gone" and t.remaining() is None


def _guarded_app(**kw):
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from styleengine.serving.guard import RequestGuard

    gate = asyncio.Event()
    seen = []

    async def echo(request: Request):
        body = await request.body()
        seen.append(len(body))
        if request.query_params.get("wait"):
            await gate.wait()
        return JSONResponse({"n": len(body)})

    app = Starlette(routes=[Route("/stylize", echo, methods=["POST"]), Route("/healthz", echo, methods=["GET"])])
    opts = {"max_bytes": 1000, "body_timeout_s": 0.5, "max_concurrency": 2, "timeout_s": 5.0} | kw
    return RequestGuard(app, guarded=["/stylize"], **opts), gate, seen


def test_guard_body_limits_and_json_errors():
    guard, _, _ = _guarded_app()

    async def run():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=guard), base_url="http://t") as c:
            async def gen():
                for _ in range(10):
                    yield b"x" * 300

            return (
                await c.post("/stylize", content=b"x" * 1000),
                await c.post("/stylize", content=b"x" * 1001),
                await c.post("/stylize", content=gen()),
                await c.post("/stylize", content=b"x", headers={"content-length": "abc"}),
                await c.get("/stylize"),
                await c.get("/healthz"),
            )

    ok, declared, streamed, bad, get, health = asyncio.run(run())
    assert ok.status_code == 200 and ok.json() == {"n": 1000}
    assert declared.status_code == 413 and declared.json()["error"] == "request_too_large"
    assert streamed.status_code == 413 and streamed.headers["connection"] == "close"
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_request"
    assert get.status_code == 405 and get.json()["error"] == "method_not_allowed"
    assert health.status_code == 200  # unguarded routes pass through untouched


def test_guard_slow_bodies_hold_no_slot_and_time_out_with_408():
    """Two trickling bodies and a full concurrency limit of 2: the fast request still gets its answer."""
    guard, gate, seen = _guarded_app(max_concurrency=1)

    async def run():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=guard), base_url="http://t", timeout=10) as c:
            async def trickle():
                for _ in range(50):
                    yield b"x"
                    await asyncio.sleep(0.05)  # 50 bytes over 2.5 s: past the 0.5 s receipt deadline

            slow = [asyncio.create_task(c.post("/stylize", content=trickle(), headers={"content-length": "50"})) for _ in range(2)]
            await asyncio.sleep(0.1)
            fast = await c.post("/stylize", content=b"abc")  # no slot is held by the slow bodies
            return fast, await asyncio.gather(*slow)

    fast, slow = asyncio.run(run())
    assert fast.status_code == 200 and fast.json() == {"n": 3}
    assert [r.status_code for r in slow] == [408, 408]
    assert all(r.json()["error"] == "request_timeout" for r in slow)
    assert seen == [3]  # the slow bodies never reached the application


def test_guard_refuses_exactly_the_excess_with_429_and_times_out_with_504():
    guard, gate, _ = _guarded_app(max_concurrency=2, timeout_s=0.5)

    async def run():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=guard), base_url="http://t", timeout=10) as c:
            held = [asyncio.create_task(c.post("/stylize?wait=1", content=b"a")) for _ in range(2)]
            await asyncio.sleep(0.1)
            extra = await asyncio.gather(*[c.post("/stylize", content=b"b") for _ in range(3)])
            return extra, await asyncio.gather(*held)

    extra, held = asyncio.run(run())
    assert [r.status_code for r in extra] == [429, 429, 429]
    assert extra[0].json()["error"] == "too_many_requests" and "retry-after" in extra[0].headers
    assert [r.status_code for r in held] == [504, 504] and held[0].json()["error"] == "timeout"
    assert guard.inflight == 0  # the slots are released


def test_serve_args_validation_and_cli_errors():
    assert ServeArgs(style="x", max_batch_size="4").max_batch_size == 4
    with pytest.raises(ValueError):
        ServeArgs(style="x", timeout_s=float("nan"))
    with pytest.raises(ValueError):
        ServeArgs(style="x", model="m", artifacts="/a")
    with pytest.raises(ValueError):
        ServeArgs(style="x", colour="red")
    assert ServeArgs(style="x", allow_random_weights=True).as_cli_args() == ["--arg", "style=x", "--arg", "allow_random_weights=true"]
    from click.testing import CliRunner

    from styleengine.cli import cli

    runner = CliRunner()
    with runner.isolated_filesystem():  # no export/artifacts here: onnxruntime has nothing to serve
        r = runner.invoke(cli, ["serve", "test-style", "--runtime", "onnxruntime", "--dry-run"])
    assert r.exit_code == 1 and "engine export test-style --bento-model" in r.output
    r = runner.invoke(cli, ["serve", "teststyle", "--allow-random-weights", "--dry-run", "--port", "4000"])
    assert r.exit_code == 0, r.output
    assert "--host 127.0.0.1 --port 4000" in r.output and "style=test-style" in r.output


def test_negotiation():
    from styleengine.serving.errors import ApiError
    from styleengine.serving.schema import negotiate

    accepts = (None, "*/*", "image/jpeg", "application/json", "image/jpeg;q=0.4, image/png", "text/html, */*;q=0.1", "image/*")
    assert [negotiate(a, False) for a in accepts] == ["png", "png", "jpeg", "json", "png", "png", "png"]
    assert (negotiate("*/*", True), negotiate(None, True, "jpeg")) == ("png-json", "jpeg-json")
    with pytest.raises(ApiError) as err:
        negotiate("text/html", False)
    assert err.value.status == 406

def test_multi_image_and_text_fields_parse_and_document():
    """An AdaIN-like contract (content + several style images) with an InstructPix2Pix-like instruction."""
    import asyncio

    from pydantic import Field
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from styleengine.data import ImageLimits
    from styleengine.serving.errors import ApiError
    from styleengine.serving.schema import RequestLimits, build_input_model, parse_request
    from styleengine.serving.ui import style_info
    from styleengine.style import ImageField, InputContract, Style, StyleConfig, TextField
    from serving_helpers import png_bytes, random_image

    class Cfg(StyleConfig):
        alpha: float = Field(1.0, ge=0, le=1)

    class Multi(Style):
        name = "multi"
        Config = Cfg
        inputs = InputContract(images=(ImageField("content"), ImageField("style", multiple=True)),
                               texts=(TextField("instruction", "what to do", max_length=20),), seeded=True)

    limits = RequestLimits(ImageLimits(max_bytes=1 << 20), max_images_per_field=3)

    async def endpoint(request: Request):
        try:
            p = await parse_request(request, Multi, limits)
        except ApiError as exc:
            return exc.response()
        return JSONResponse({"content": list(p.images["content"].shape), "style": [list(a.shape) for a in p.images["style"]],
                             "texts": p.texts, "params": p.params, "seed": p.seed})

    app = Starlette(routes=[Route("/", endpoint, methods=["POST"])])
    img = lambda h, w: ("x.png", png_bytes(random_image(h, w)), "image/png")  # noqa: E731

    async def run():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            ok = await c.post("/", files=[("content", img(8, 8)), ("style", img(4, 6)), ("style", img(6, 4)),
                                          ("instruction", (None, '"make it snowy"')), ("alpha", (None, "0.5"))])
            too_many = await c.post("/", files=[("content", img(8, 8)), *[("style", img(4, 4))] * 4, ("instruction", (None, "x"))])
            missing_text = await c.post("/", files=[("content", img(8, 8)), ("style", img(4, 4))])
            long_text = await c.post("/", files=[("content", img(8, 8)), ("style", img(4, 4)), ("instruction", (None, "y" * 21))])
            return ok, too_many, missing_text, long_text

    ok, too_many, missing_text, long_text = asyncio.run(run())
    body = ok.json()
    assert ok.status_code == 200, body
    assert body["content"] == [8, 8, 3] and body["style"] == [[4, 6, 3], [6, 4, 3]]
    assert body["texts"] == {"instruction": "make it snowy"} and body["params"] == {"alpha": 0.5}
    assert isinstance(body["seed"], int)  # seeded style: a seed is drawn when none is given
    assert too_many.status_code == 422 and too_many.json()["error"] == "too_many_files"
    assert missing_text.status_code == 422 and missing_text.json()["field"] == "instruction"
    assert long_text.status_code == 422 and long_text.json()["error"] == "text_too_long"

    schema = build_input_model(Multi, limits).model_json_schema()
    assert schema["properties"]["style"]["type"] == "array" and schema["properties"]["instruction"]["maxLength"] == 20
    info = style_info(Multi, ServeArgs(style="multi"), 3)
    assert [t["name"] for t in info["texts"]] == ["instruction"]
    assert [(i["name"], i["multiple"]) for i in info["images"]] == [("content", False), ("style", True)]


def _tensorrt_ok() -> bool:
    from styleengine.export.tensorrt import tensorrt_available

    return tensorrt_available()[0]


@pytest.mark.tensorrt
@pytest.mark.gpu
@pytest.mark.skipif(not _tensorrt_ok(), reason="needs the tensorrt package and a CUDA GPU")
def test_tensorrt_runner_builds_engines_at_startup(test_style_model, tmp_path, monkeypatch):
    """Artifacts without engines: the runner builds them for this GPU before it reports ready."""
    from styleengine.data import from_uint8, to_uint8
    from styleengine.export.manifest import Manifest
    from styleengine.serving.runner import RunnerCore
    from styleengine.style import StyleRequest

    monkeypatch.setenv("STYLEENGINE_CACHE", str(tmp_path / "cache"))
    c = RunnerCore(ServeArgs(style="test-style", runtime="tensorrt", artifacts=test_style_model["artifacts"], allow_random_weights=True,
                             device="cuda", precision="fp32", max_batch_size=4))
    c.start(background=False)
    assert c.ready, c.error
    built = list((tmp_path / "cache" / "serving-engines").glob("*/manifest.json"))
    assert built and all(g.engine is not None for g in Manifest.load(built[0]).graphs.values())
    img = (np.random.default_rng(0).random((16, 24, 3)) * 255).astype(np.uint8)
    outs = c.run_batch([item(img, 1.0, id=str(i)) for i in range(3)])
    assert [o.status for o in outs] == [200] * 3
    from styleengine.plugins import load_engine
    from styleengine.sessions import open_sessions

    engine = load_engine()
    style = engine.style_class("test-style")()
    [ref] = style.infer(open_sessions(engine, style, "torch"), [StyleRequest(images={"image": from_uint8(img)})], style.Config())
    assert np.abs(outs[0].image.astype(int) - to_uint8(ref.image).astype(int)).max() <= 2


def test_openapi_lists_every_error_code_the_service_answers():
    """Every error code raised anywhere in the serving code and the image decoder is documented under the
    status it is answered with (a new code without documentation fails here)."""
    import json
    import re
    from pathlib import Path

    import styleengine.data.errors as data_errors
    import styleengine.serving as serving
    from styleengine.serving.openapi import STATUSES, complete

    documented = {code: status for status, (_, codes) in STATUSES.items() for code in codes}
    # tasks.py answers the task routes (/stylize_task/*: 409 canceled, 429 too_many_jobs), not /stylize
    sources = [p.read_text() for p in Path(serving.__file__).parent.glob("*.py") if p.name != "tasks.py"]
    found: set[tuple[int, str]] = set()
    for text in sources:
        found |= {(int(s), c) for s, c in re.findall(r'ApiError\(\s*(\d{3}),\s*"([a-z_]+)"', text)}
        found |= {(int(s), c) for s, c in re.findall(r'_refuse\(send, (\d{3}), "([a-z_]+)"', text)}
        found |= {(int(s), c) for s, c in re.findall(r'status=(\d{3}), error="([a-z_]+)"', text)}
        found |= {(int(s), c) for s, c in re.findall(r'return (\d{3}), "([a-z_]+)"', text)}
    text = Path(data_errors.__file__).read_text()
    found |= {(int(s), c) for c, s in re.findall(r'code = "([a-z_]+)"\n\s+http_status = (\d{3})', text)}
    assert len(found) > 20, found
    found.discard((405, "method_not_allowed"))  # answered on other methods, not on the documented POST
    missing = sorted((s, c) for s, c in found if documented.get(c) != s)
    assert not missing, f"undocumented (status, code): {missing}"

    spec = {"paths": {"/stylize": {"post": {"responses": {"200": {}, "400": {"description": "bentoml"}},
                                            "requestBody": {"content": {"multipart/form-data": {"schema": {"properties": {
                                                "seed": {"type": "integer", "minimum": 0, "maximum": 10}}}}}}}}}}
    done = complete(spec, ["/stylize", "/absent"])
    responses = done["paths"]["/stylize"]["post"]["responses"]
    assert set(responses) == {"200", *map(str, STATUSES)} and "bentoml" not in json.dumps(responses)
    seed = done["paths"]["/stylize"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]["seed"]
    assert seed == {"anyOf": [{"type": "integer", "minimum": 0, "maximum": 10}, {"type": "null"}]}
    assert spec["paths"]["/stylize"]["post"]["responses"]["400"] == {"description": "bentoml"}  # the input is not changed


def test_playground_info_names_the_task_endpoint_for_long_jobs():
    from styleengine.plugins import load_engine
    from styleengine.serving.ui import style_info

    base = load_engine().style_class("test-style")
    long_job = type("LongJob", (base,), {"long_running": True})
    assert style_info(base, ServeArgs(style="test-style"), 8)["endpoints"]["task"] is None
    assert style_info(long_job, ServeArgs(style="test-style"), 8)["endpoints"]["task"] == "/stylize_task"
    assert style_info(long_job, ServeArgs(style="test-style", topology="split"), 8)["endpoints"]["task"] is None  # tasks: single only

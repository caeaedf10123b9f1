"""The generic BentoML service: one module serves any style, chosen by arguments.

    bentoml serve styleengine.serving.service:StyleAPI --arg style=test-style --arg runtime=onnxruntime \\
        --arg model=styleengine-test-style-default:latest --arg allow_random_weights=true
    engine serve test-style --runtime onnxruntime         # the same, with checks and loopback defaults

``StyleAPI`` (public): ``POST /stylize`` (the image: PNG, or JPEG by ``Accept``; JSON with ``Accept:
application/json``) and ``POST /stylize.json``, the playground at ``/ui``, ``/readyz`` / ``/livez``,
``/metrics``.  The input model is generated from the style (:mod:`.schema`), so OpenAPI documents every
parameter.  :class:`~styleengine.serving.guard.RequestGuard` enforces body limits and deadlines, the
concurrency limit and the timeout before a request reaches the endpoint; :mod:`.protocol` closes
connections whose headers do not arrive in time.

**Topologies** (``topology`` argument; measured in ``benchmarks/results``):

``single`` (the default with one API worker)
    The API process runs the model: requests go to a :class:`~styleengine.serving.batcher.Batcher` in the
    same process, which dispatches at once when the model is idle and batches whatever queued while it was
    busy.  No inter-process hop, no pickling, one process with torch.
``split`` (the default with several API workers)
    API workers forward each request to one ``StyleRunner`` service (``bentoml.depends``), whose own
    Batcher feeds the model: several processes decode and encode for one model (a GPU fed by many CPUs).

Either way :class:`~styleengine.serving.runner.RunnerCore` groups the batch by sizes and parameters and
calls ``engine.hook.style_infer`` per bucket, so plugin wrappers apply.  The model is a ``BentoModel`` on
the service that runs it, so ``bentoml build`` packages it.

Start-up: the module runs the torch-free preflight when BentoML's supervisor imports it, before any worker
starts; a worker whose start-up fails stops the whole server with its reason (:mod:`.lifecycle`).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import sys
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

import bentoml
from bentoml.validators import ContentType
from pydantic import BaseModel, Field

from ..data import ImageLimits, encode_image
from ..plugins import get_engine
from . import lifecycle, preflight, protocol, tasks
from .args import ServeArgs
from .errors import ApiError
from .guard import RequestGuard
from .runner import RunnerItem, RunnerOutput
from .schema import ParsedRequest, RequestLimits, build_input_model, negotiate, take_parsed
from .ui import make_app, style_info

log = logging.getLogger("styleengine.serving")
if log.level == logging.NOTSET:  # BentoML configures its own loggers; ours report start-up and warm-up
    log.setLevel(logging.INFO)

ARGS: ServeArgs = bentoml.use_arguments(ServeArgs)
lifecycle.install_supervisor_handler()
protocol.install(ARGS.header_timeout_s)
ENGINE = get_engine(extra_plugins=[p.strip() for p in ARGS.plugins.split(",") if p.strip()])
STYLE_CLS: Any = ENGINE.style_class(ARGS.style)
RUNTIME: str = ENGINE.runtimes.resolve(ARGS.runtime)
SPLIT = ARGS.split


def _preflight() -> tuple[Path | None, Any]:
    try:
        model_dir = preflight.model_dir_of(ARGS.model)
        return model_dir, preflight.preflight(ENGINE, ARGS, model_dir, hand_over=not lifecycle.is_worker())
    except preflight.StartupError as exc:
        if lifecycle.is_worker():
            lifecycle.fail_startup(str(exc))
        print(f"error: the server cannot start: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(lifecycle.STARTUP_FAILED) from None


MODEL_DIR, PLAN = _preflight()
_SPECS = preflight.manifest_specs(PLAN, ENGINE)
LIMITS = RequestLimits(
    image=ImageLimits(max_bytes=ARGS.max_image_bytes, max_pixels=ARGS.max_pixels, max_side=min(ARGS.max_side, 65536)),
    max_images_per_field=ARGS.max_images_per_field,
    defaults=preflight.request_defaults(STYLE_CLS, ARGS, _SPECS),
)
StylizeRequest = build_input_model(STYLE_CLS, LIMITS)
MODEL = bentoml.models.BentoModel(bentoml.models.get(ARGS.model).tag) if ARGS.model else None
ENDPOINTS = ("/stylize", "/stylize.json")
#: Long jobs (styles with long_running inference, single topology): /stylize_task/{submit,status,get,cancel}.
TASKS = tasks.JobManager.from_env(ARGS.task_max_running, ARGS.task_max_queued) if STYLE_CLS.long_running and not SPLIT else None


class StylizeResult(BaseModel):
    """``POST /stylize.json``: the result image and how it was made."""

    image: str = Field(description="the result image, base64 (for several outputs: a grid of them)")
    images: list[str] | None = Field(None, description="every output image, base64, when the style made several")
    format: str = Field(description="png or jpeg")
    width: int
    height: int
    seed: int | None = Field(description="the seed used (null for deterministic styles)")
    batch_size: int = Field(description="requests in the inference call this one ran in")
    dispatch_size: int = Field(description="requests the batcher handed to the model together")
    timings: dict[str, float] = Field(description="queue_ms, inference_ms, total_ms (server side)")
    style: str
    runtime: str
    random_weights: bool = Field(False, description="true when the model has random weights (tests, latency work)")


def _model_core() -> Any:
    """RunnerCore + Batcher for the process that runs the model; start-up failures stop the server."""
    from .batcher import Batcher
    from .metrics import RunnerMetrics
    from .runner import RunnerCore

    try:
        core = RunnerCore(ARGS, MODEL_DIR, engine=ENGINE, metrics=RunnerMetrics(STYLE_CLS.name, RUNTIME), on_failure=lifecycle.fail_startup)
    except Exception as exc:  # noqa: BLE001 - weights that do not load, a broken plugin: stop, never respawn
        log.debug("start-up failed", exc_info=True)
        lifecycle.fail_startup(str(exc) if isinstance(exc, preflight.StartupError | ValueError | OSError) else f"{type(exc).__name__}: {exc}")
        raise
    batcher: Batcher[RunnerItem, RunnerOutput] = Batcher(core.run_batch, max_batch_size=ARGS.max_batch_size, linger_ms=ARGS.linger_ms)
    core.start(background=True)
    return core, batcher


# -- split topology: the runner service ----------------------------------------------------------------------
class _Runner:
    def __init__(self) -> None:
        self.core, self.batcher = _model_core()

    def __is_ready__(self) -> bool:
        return self.core.ready

    def __is_alive__(self) -> bool:
        return not self.core.failed

    @bentoml.api
    async def infer(self, item: RunnerItem) -> RunnerOutput:
        return await self.batcher.submit(item)

    @bentoml.on_shutdown
    def shutdown(self) -> None:
        self.core.stop()
        self.batcher.close()


if SPLIT:
    StyleRunner: Any = bentoml.service(name="styleengine-runner", workers=1, traffic={"timeout": ARGS.timeout_s + 30})(
        type("StyleRunner", (_Runner,), {"__doc__": "Internal: batched inference for the styleengine API.", **({"model": MODEL} if MODEL else {})})
    )


# -- the public API ----------------------------------------------------------------------------------------
class _API:
    """styleengine: image style transfer.  POST /stylize with the style's image fields (multipart) and
    parameters; the playground is at /ui."""

    def __init__(self) -> None:
        from .metrics import ApiMetrics

        self.metrics = ApiMetrics(STYLE_CLS.name, RUNTIME)
        self.core = self.batcher = None
        if not SPLIT:
            self.core, self.batcher = _model_core()

    def __is_ready__(self) -> bool:
        return SPLIT or self.core.ready

    def __is_alive__(self) -> bool:
        return SPLIT or not self.core.failed

    @bentoml.api(route="/stylize", input_spec=StylizeRequest)
    async def stylize(self, ctx: bentoml.Context, **params: Any) -> Annotated[Path, ContentType("image/png")]:
        """Stylise the uploaded image(s).  Answers the image (PNG; JPEG with ``Accept: image/jpeg``; the
        JSON of /stylize.json with ``Accept: application/json``).  Headers: ``X-Seed``, ``X-Batch-Size``,
        ``Server-Timing`` (queue, inference, total), ``X-Random-Weights`` when the model is untrained."""
        return await self._handle(ctx, "stylize", json_endpoint=False)

    @bentoml.api(route="/stylize.json", input_spec=StylizeRequest, output_spec=StylizeResult)
    async def stylize_json(self, ctx: bentoml.Context, **params: Any) -> StylizeResult:
        """Like /stylize, answered as JSON: the image as base64 (PNG; JPEG with ``?format=jpeg``), the seed
        used, server timings and the batch size the request ran in."""
        return await self._handle(ctx, "stylize.json", json_endpoint=True)

    if TASKS is not None:

        @bentoml.task(route=tasks.TASK_ROUTE, input_spec=StylizeRequest)
        async def stylize_task(self, ctx: bentoml.Context, **params: Any) -> Annotated[Path, ContentType("image/png")]:
            """Long job (see styleengine.serving.tasks): submit at /stylize_task/submit, poll /stylize_task/status
            (progress, ?preview=1), fetch /stylize_task/get, stop with PUT /stylize_task/cancel."""
            png = lambda a: encode_image(a, "PNG", compress_level=ARGS.png_compress_level)  # noqa: E731
            return await tasks.run_task(ctx, TASKS, self.core, ENGINE, png)

    @bentoml.on_shutdown
    def shutdown(self) -> None:
        if self.core is not None:
            self.core.stop()
            self.batcher.close()

    async def _handle(self, ctx: bentoml.Context, endpoint: str, json_endpoint: bool) -> Any:
        import anyio.to_thread
        from starlette.responses import JSONResponse, Response

        t_start = time.perf_counter()
        status = 500
        try:
            parsed = take_parsed()
            t_start = parsed.received
            request = ctx.request
            kind = negotiate(request.headers.get("accept"), json_endpoint, request.query_params.get("format"))
            deadline = getattr(request.state, "styleengine_deadline", None) or time.time() + ARGS.timeout_s
            out, round_trip = await self._run(parsed, deadline)
            fmt = "jpeg" if kind.startswith("jpeg") else "png"
            images = out.images or []

            def encode() -> tuple[bytes, list[bytes]]:
                enc = lambda a: encode_image(a, fmt.upper(), quality=90, compress_level=ARGS.png_compress_level)  # noqa: E731
                return enc(out.image), [enc(a) for a in images] if kind.endswith("json") else []

            data, extra = await anyio.to_thread.run_sync(encode)
            total_ms = (time.perf_counter() - t_start) * 1000
            timings = {
                "queue_ms": round(max(0.0, round_trip * 1000 - out.inference_ms), 3),
                "inference_ms": round(out.inference_ms, 3),
                "total_ms": round(total_ms, 3),
            }
            h, w = out.image.shape[:2]
            headers = {
                "X-Batch-Size": str(out.batch_size),
                "X-Dispatch-Size": str(out.dispatch_size),
                "Server-Timing": ", ".join(f"{k[:-3]};dur={v:.1f}" for k, v in timings.items()),
                "Cache-Control": "no-store",
            }
            if out.seed is not None:
                headers["X-Seed"] = str(out.seed)
            if PLAN.random_weights:
                headers["X-Random-Weights"] = "true"
            status = 200
            if kind in ("png", "jpeg"):
                return Response(data, media_type=f"image/{fmt}", headers=headers)
            body = StylizeResult(
                image=base64.b64encode(data).decode(), images=[base64.b64encode(b).decode() for b in extra] or None, format=fmt,
                width=w, height=h, seed=out.seed, batch_size=out.batch_size, dispatch_size=out.dispatch_size, timings=timings,
                style=STYLE_CLS.name, runtime=RUNTIME, random_weights=PLAN.random_weights,
            )
            dumped = body.model_dump()  # seed stays (null for deterministic styles, as documented)
            if dumped["images"] is None:
                del dumped["images"]
            return JSONResponse(dumped, headers=headers)
        except ApiError as exc:
            status = exc.status
            return exc.response()
        except asyncio.CancelledError:  # the guard's timeout answers 504 and cancels us
            status = 504
            raise
        finally:
            # BentoML copies ctx.response.status_code onto responses of APIs that take a context.
            ctx.response.status_code = status
            self.metrics.observe_request(endpoint, status, time.perf_counter() - t_start)

    async def _run(self, parsed: ParsedRequest, deadline: float) -> tuple[RunnerOutput, float]:
        item = RunnerItem(
            id=uuid.uuid4().hex, images=parsed.images, texts=parsed.texts, params=parsed.params, seed=parsed.seed,
            sent_at=time.time(), deadline=deadline,
        )
        t0 = time.perf_counter()
        out = await (self._remote(item) if SPLIT else self.batcher.submit(item))
        round_trip = time.perf_counter() - t0
        if isinstance(out, dict):
            out = RunnerOutput.model_validate(out)
        if out.status != 200:
            headers = {"Retry-After": "1"} if out.status == 503 else None
            raise ApiError(out.status, out.error or "error", out.detail or "", headers=headers)
        return out, round_trip

    async def _remote(self, item: RunnerItem) -> RunnerOutput:
        from bentoml.exceptions import BentoMLException

        try:
            try:
                return await self.runner.to_async.infer(item)  # type: ignore[attr-defined]
            except (ConnectionResetError, BrokenPipeError, *_STALE_CONNECTION) as exc:
                # The keep-alive race: the runner closed an idle pooled connection just as this request was
                # written on it (its client keeps idle connections longer than the runner's worker does), so the
                # request almost always never reached the runner; and inference is idempotent (seeded), so even a
                # request that did is safe to run again: retry once, on a new connection.
                log.info("runner connection was closed under a request (%s); retrying once", type(exc).__name__)
                return await self.runner.to_async.infer(item)  # type: ignore[attr-defined]
        except BentoMLException as exc:
            code = int(getattr(exc, "error_code", 500))
            if code == 503:
                raise ApiError(503, "overloaded", "the server is overloaded: the request could not be queued in time; retry later",
                               headers={"Retry-After": "1"}) from None
            if code == 504:
                raise ApiError(504, "timeout", "the request timed out") from None
            log.error("runner call failed: %s", exc)
            raise ApiError(502, "runner_error", "the inference runner failed; the server log has the details") from None
        except Exception as exc:  # noqa: BLE001 - transport errors between the API and the runner
            log.error("runner call failed: %s: %s", type(exc).__name__, exc)
            raise ApiError(502, "runner_unavailable", "the inference runner could not be reached; retry later",
                           headers={"Retry-After": "1"}) from None


def _stale_connection_errors() -> tuple[type[BaseException], ...]:
    try:
        import aiohttp
    except ImportError:
        return ()
    return (aiohttp.ServerDisconnectedError, aiohttp.ClientConnectionResetError, aiohttp.ClientOSError)


_STALE_CONNECTION = _stale_connection_errors()
_api_attrs: dict[str, Any] = {"__doc__": _API.__doc__}
if SPLIT:
    _api_attrs["runner"] = bentoml.depends(StyleRunner)
elif MODEL is not None:
    _api_attrs["model"] = MODEL
_info = style_info(STYLE_CLS, ARGS, LIMITS.max_images_per_field, defaults=LIMITS.defaults, random_weights=PLAN.random_weights)

StyleAPI: Any = bentoml.asgi_app(make_app(_info), path="/ui", name="playground")(
    bentoml.service(
        name="styleengine",
        workers=ARGS.api_workers,
        # The guard enforces timeout_s and max_concurrency itself (after the body arrived); BentoML's
        # timeout is only a backstop, and its max_concurrency would count bodies still arriving.
        traffic={"timeout": ARGS.timeout_s + ARGS.body_timeout_s + 30},
        http={"host": "127.0.0.1"},
    )(type("StyleAPI", (_API,), _api_attrs))
)


def _rejected(code: str) -> None:
    from .metrics import count_rejected

    count_rejected(STYLE_CLS.name, RUNTIME, code)


if TASKS is not None:
    StyleAPI.add_asgi_middleware(tasks.TaskGuard, manager=TASKS)
StyleAPI.add_asgi_middleware(
    RequestGuard, guarded=ENDPOINTS, max_bytes=ARGS.max_request_bytes, body_timeout_s=ARGS.body_timeout_s,
    max_concurrency=ARGS.max_concurrency, timeout_s=ARGS.timeout_s, on_reject=_rejected,
)

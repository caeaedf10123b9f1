"""The generic BentoML service: one module serves any style, chosen by arguments.

    bentoml serve styleengine.serving.service:StyleAPI --arg style=test-style --arg runtime=onnxruntime \\
        --arg model=styleengine-test-style-default:latest --arg allow_random_weights=true
    engine serve test-style --runtime onnxruntime         # the same, with checks and loopback defaults

Two services, started together by ``bentoml serve``:

``StyleAPI`` (public)
    ``POST /stylize`` (image out: PNG, or JPEG by ``Accept``; JSON with ``Accept: application/json``) and
    ``POST /stylize.json`` (JSON: base64 image, seed used, timings, batch size).  The input model is
    generated from the style (:mod:`.schema`), so OpenAPI documents every parameter.  Traffic limits are
    BentoML's: ``max_concurrency`` (more requests in flight get 429) and ``timeout`` (504, and the
    request's deadline travels to the runner, which stops the work).  Bodies over ``max_request_bytes`` get
    413 before they are read (:mod:`.limits`).  ``/ui`` is the playground (:mod:`.ui`); ``/readyz`` is
    ready once the runner has warmed up (BentoML's runner probe asks the runner's ``/readyz``).

``StyleRunner`` (internal, batchable)
    ``infer(items)`` with ``@bentoml.api(batchable=True, max_batch_size=..., max_latency_ms=...)``:
    BentoML's adaptive batcher queues calls from the API workers and hands them over together;
    :class:`~styleengine.serving.runner.RunnerCore` groups them by sizes and parameters, splits them into
    warmed-up bucket sizes and calls ``engine.hook.style_infer`` once per chunk, so plugin wrappers
    (timing, watermarks, safety filters) apply.  The exported model is declared as a ``BentoModel`` so
    ``bentoml build`` packages it into the Bento.

Arguments: :class:`~styleengine.serving.args.ServeArgs`.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

import bentoml
from bentoml.validators import ContentType
from pydantic import BaseModel, Field

from ..data import ImageLimits, encode_image
from ..plugins import get_engine
from .args import ServeArgs
from .errors import ApiError
from .limits import BodyLimitMiddleware
from .runner import RunnerCore, RunnerItem, RunnerOutput
from .schema import ParsedRequest, RequestLimits, build_input_model, negotiate, take_parsed
from .ui import make_app, style_info

log = logging.getLogger("styleengine.serving")

ARGS: ServeArgs = bentoml.use_arguments(ServeArgs)
ENGINE = get_engine(extra_plugins=[p.strip() for p in ARGS.plugins.split(",") if p.strip()])
STYLE_CLS: Any = ENGINE.style_class(ARGS.style)
RUNTIME: str = ENGINE.runtimes.resolve(ARGS.runtime)
LIMITS = RequestLimits(
    image=ImageLimits(max_bytes=ARGS.max_image_bytes, max_pixels=ARGS.max_pixels, max_side=min(ARGS.max_side, 65536)),
    max_images_per_field=ARGS.max_images_per_field,
)
StylizeRequest = build_input_model(STYLE_CLS, LIMITS)


def _model_ref(tag: str | None) -> Any:
    """The BentoModel for ``tag``, checked to exist locally first: a missing model must be a clear
    error, not an attempt to fetch it from BentoCloud."""
    if not tag:
        return None
    try:
        stored = bentoml.models.get(tag)
    except bentoml.exceptions.NotFound:
        raise bentoml.exceptions.NotFound(
            f"model {tag!r} is not in the BentoML model store; create it with "
            f"`engine export {STYLE_CLS.name} --bento-model` (or `engine bento build`)"
        ) from None
    return bentoml.models.BentoModel(stored.tag)


MODEL = _model_ref(ARGS.model)


class StylizeResult(BaseModel):
    """``POST /stylize.json``: the result image and how it was made."""

    image: str = Field(description="the result image, base64")
    format: str = Field(description="png or jpeg")
    width: int
    height: int
    seed: int | None = Field(description="the seed used (null for deterministic styles)")
    batch_size: int = Field(description="requests in the inference call this one ran in")
    dispatch_size: int = Field(description="requests the batcher handed to the runner together")
    timings: dict[str, float] = Field(description="queue_ms, inference_ms, total_ms (server side)")
    style: str
    runtime: str


# -- the batchable runner ------------------------------------------------------------------------------
_runner_attrs: dict[str, Any] = {"__doc__": "Internal: batched inference for the styleengine API."}
if MODEL is not None:
    _runner_attrs["model"] = MODEL


class _Runner:
    model: Any = None

    def __init__(self) -> None:
        from .metrics import RunnerMetrics

        model_dir = Path(self.model.path) if MODEL is not None else None
        self.core = RunnerCore(ARGS, model_dir, engine=ENGINE, metrics=RunnerMetrics(STYLE_CLS.name, RUNTIME))
        self.core.start(background=True)

    def __is_ready__(self) -> bool:
        return self.core.ready

    def __is_alive__(self) -> bool:
        return not self.core.failed

    @bentoml.api(batchable=ARGS.max_batch_size > 1, max_batch_size=max(2, ARGS.max_batch_size), max_latency_ms=ARGS.max_latency_ms)
    def infer(self, items: list[RunnerItem]) -> list[RunnerOutput]:
        return self.core.run_batch(items)

    @bentoml.on_shutdown
    def shutdown(self) -> None:
        self.core.stop()


StyleRunner = bentoml.service(
    name="styleengine-runner",
    workers=1,
    traffic={"timeout": ARGS.timeout_s + 30},
)(type("StyleRunner", (_Runner,), _runner_attrs))


# -- the public API ----------------------------------------------------------------------------------------
@bentoml.asgi_app(make_app(style_info(STYLE_CLS, ARGS, LIMITS.max_images_per_field)), path="/ui", name="playground")
@bentoml.service(
    name="styleengine",
    workers=ARGS.api_workers,
    traffic={"timeout": ARGS.timeout_s, "max_concurrency": ARGS.max_concurrency},
    http={"host": "127.0.0.1"},
)
class StyleAPI:
    """styleengine: image style transfer.  POST /stylize with the style's image fields (multipart) and
    parameters; the playground is at /ui."""

    runner = bentoml.depends(StyleRunner)

    def __init__(self) -> None:
        from .metrics import ApiMetrics

        self.metrics = ApiMetrics(STYLE_CLS.name, RUNTIME)

    @bentoml.api(route="/stylize", input_spec=StylizeRequest)
    async def stylize(self, ctx: bentoml.Context, **params: Any) -> Annotated[Path, ContentType("image/png")]:
        """Stylise the uploaded image(s).  Answers the image (PNG; JPEG with ``Accept: image/jpeg``; the
        JSON of /stylize.json with ``Accept: application/json``).  Headers: ``X-Seed``, ``X-Batch-Size``,
        ``Server-Timing`` (queue, inference, total)."""
        return await self._handle(ctx, "stylize", json_endpoint=False)

    @bentoml.api(route="/stylize.json", input_spec=StylizeRequest, output_spec=StylizeResult)
    async def stylize_json(self, ctx: bentoml.Context, **params: Any) -> StylizeResult:
        """Like /stylize, answered as JSON: the image as base64 (PNG; JPEG with ``?format=jpeg``), the seed
        used, server timings and the batch size the request ran in."""
        return await self._handle(ctx, "stylize.json", json_endpoint=True)

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
            out, round_trip = await self._run(parsed)
            fmt = "jpeg" if kind.startswith("jpeg") else "png"
            data = await anyio.to_thread.run_sync(lambda: encode_image(out.image, fmt.upper(), quality=90))
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
            status = 200
            if kind in ("png", "jpeg"):
                return Response(data, media_type=f"image/{fmt}", headers=headers)
            body = StylizeResult(
                image=base64.b64encode(data).decode(), format=fmt, width=w, height=h, seed=out.seed,
                batch_size=out.batch_size, dispatch_size=out.dispatch_size, timings=timings,
                style=STYLE_CLS.name, runtime=RUNTIME,
            )
            return JSONResponse(body.model_dump(), headers=headers)
        except ApiError as exc:
            status = exc.status
            return exc.response()
        except asyncio.CancelledError:  # BentoML's timeout middleware answers 504 and cancels us
            status = 504
            raise
        finally:
            # BentoML copies ctx.response.status_code onto responses of APIs that take a context.
            ctx.response.status_code = status
            self.metrics.observe_request(endpoint, status, time.perf_counter() - t_start)

    async def _run(self, parsed: ParsedRequest) -> tuple[RunnerOutput, float]:
        from bentoml.exceptions import BentoMLException

        elapsed = time.perf_counter() - parsed.received
        now = time.time()
        item = RunnerItem(
            id=uuid.uuid4().hex, images=parsed.images, texts=parsed.texts, params=parsed.params, seed=parsed.seed,
            sent_at=now, deadline=now + max(0.0, ARGS.timeout_s - elapsed),
        )
        t0 = time.perf_counter()
        for attempt in range(2):
            try:
                outs = await self.runner.to_async.infer([item])
                break
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
                # A pooled keep-alive connection the runner has just closed fails on write: the request never
                # reached the runner, so it is sent again once (inference is stateless, a repeat is harmless).
                if attempt == 0 and _transport_error(exc):
                    log.warning("runner connection failed (%s: %s); retrying once", type(exc).__name__, exc)
                    continue
                log.error("runner call failed: %s: %s", type(exc).__name__, exc)
                raise ApiError(502, "runner_unavailable", "the inference runner could not be reached; retry later",
                               headers={"Retry-After": "1"}) from None
        round_trip = time.perf_counter() - t0
        out = outs[0]
        if isinstance(out, dict):
            out = RunnerOutput.model_validate(out)
        if out.status != 200:
            headers = {"Retry-After": "1"} if out.status == 503 else None
            raise ApiError(out.status, out.error or "error", out.detail or "", headers=headers)
        return out, round_trip


def _transport_error(exc: BaseException) -> bool:
    try:
        import aiohttp

        if isinstance(exc, aiohttp.ClientError):
            return True
    except ImportError:  # pragma: no cover - aiohttp is a BentoML dependency
        pass
    import httpx

    return isinstance(exc, OSError | httpx.TransportError)


StyleAPI.add_asgi_middleware(BodyLimitMiddleware, max_bytes=ARGS.max_request_bytes)

"""The runner's work, independent of BentoML: load the style and its sessions, warm up, run batches.

``RunnerCore`` is what the service's model process delegates to (the API service itself in the
``single`` topology, the runner service in ``split``); tests drive it in-process too.

Construction runs the preflight (:mod:`.preflight`) and builds the style from its plan: exported runtimes
load nothing but the artifact folder.  A failure raises :class:`StartupError` (one line).

Start-up (on a background thread, so ``/livez`` answers at once and ``/readyz`` waits); each step is logged,
each warm-up bucket before and after it runs, so a slow start is visible.  A failure calls ``on_failure``
(the service stops the whole server: :mod:`.lifecycle`):

1. optional ``warmup_delay_s`` (readiness tests);
2. for TensorRT: every engine in the artifacts is checked against this GPU and TensorRT version
   (``check_engine_record``); missing or mismatched engines are **built** from the ONNX into a cache folder
   (the model store may be read-only), through the ``build_engine`` hook and its engine cache, so the
   first deployment on a new GPU builds once and later starts are cache hits;
3. sessions open (the manifest is checked: style, variant, weights);
4. **warm-up**: ``style_infer`` runs once at every batch bucket (see :mod:`.batching`) on synthetic
   requests at the graphs' optimal size, with the server's request defaults (inside the exported dims).  A bucket that fails is dropped (logged) and larger ones with it,
   so the runner never forms a batch its graphs cannot take; if batch size 1 fails, start-up fails and
   ``/livez`` turns unhealthy.

A batch: items are grouped and split into bucket-sized chunks; each chunk runs under a
:class:`~styleengine.cancel.CancelToken` whose deadline is the latest deadline of its requests, so a
chunk whose requests all timed out stops at the pipeline's next check.  Before a chunk starts, requests
already past their deadline get 504 and requests that waited longer than ``max_latency_ms`` get 503:
neither costs inference time.  Errors are per chunk and never leak internals: bad sizes are 422,
cancellation 504, anything else 500 with the traceback in the server log only.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .. import cancel
from ..data import from_uint8, to_uint8
from ..spec import GraphSpec
from .args import ServeArgs
from .batching import bucket_sizes, group_key, plan_chunks
from .preflight import StartupError, graph_batch_max, warm_size

log = logging.getLogger("styleengine.serving")



class RunnerItem(BaseModel):
    """One request as the API service hands it to the runner (pickled between the two processes)."""

    model_config = ConfigDict(arbitrary_types_allowed=True, protected_namespaces=())
    id: str
    images: dict[str, Any]  # field -> HxWx3 uint8/float32 array, or a list of them
    texts: dict[str, str] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    seed: int | None = None
    sent_at: float  # time.time() when the API sent it
    deadline: float | None = None  # time.time() after which nobody waits for the result


class RunnerOutput(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True, protected_namespaces=())
    id: str
    status: int = 200
    error: str | None = None
    detail: str | None = None
    image: Any = None  # HxWx3 uint8
    images: list[Any] | None = None  # several outputs (StyleResult.images), each HxWx3 uint8
    seed: int | None = None
    batch_size: int = 0  # requests in the style_infer call this one ran in
    dispatch_size: int = 0  # requests in the runner call (what BentoML's batcher formed)
    queue_ms: float = 0.0  # from the API sending it to its chunk starting
    inference_ms: float = 0.0
    info: dict[str, Any] = Field(default_factory=dict)


class RunnerCore:
    """Load, warm up and run one style.  ``on_failure(reason)`` is called when start-up fails (the
    service stops the server through :func:`styleengine.serving.lifecycle.fail_startup`)."""

    def __init__(self, args: ServeArgs, model_dir: str | Path | None = None, engine: Any = None, metrics: Any = None,
                 on_failure: Callable[[str], None] | None = None) -> None:
        from ..loading import LoadError, load_style
        from ..plugins import get_engine
        from . import preflight

        self.args = args
        self.engine = engine or get_engine(extra_plugins=[p for p in args.plugins.split(",") if p.strip()])
        self.model_dir = Path(model_dir) if model_dir else None
        self.metrics = metrics
        self.on_failure = on_failure
        self.state = "starting"
        self.error: str | None = None
        self.sessions: dict[str, Any] | None = None
        self.buckets: tuple[int, ...] = (1,)
        self.runtime = self.engine.runtimes.resolve(args.runtime)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.plan = preflight.plan(self.engine, args, self.model_dir)
        self.manifest = self.plan.manifest
        self.random_weights = self.plan.random_weights
        try:
            self.style = load_style(self.engine, self.plan)
        except LoadError as exc:
            raise StartupError(str(exc)) from None
        #: What a request gets for parameters it leaves out (the style's serving defaults, then --params).
        self.defaults = preflight.request_defaults(type(self.style), args, self._manifest_specs())

    # -- start-up ------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self.state == "ready"

    @property
    def failed(self) -> bool:
        return self.state == "failed"

    def artifacts_dir(self) -> Path | None:
        return self.plan.artifacts

    def start(self, background: bool = True) -> None:
        if background:
            self._thread = threading.Thread(target=self._startup, name="styleengine-startup", daemon=True)
            self._thread.start()
        else:
            self._startup()

    def stop(self) -> None:
        self._stop.set()

    def _startup(self) -> None:
        t0 = time.perf_counter()
        try:
            if self.args.warmup_delay_s and self._stop.wait(self.args.warmup_delay_s):
                return
            self.state = "loading"
            log.info("styleengine runner: opening %s sessions for %s (%s)", self.runtime, self.style.name, self.style.variant)
            self.sessions = self._open_sessions()
            specs = self._specs()
            self.buckets = bucket_sizes(self.args.max_batch_size, graph_batch_max(specs))
            if self.args.warmup:
                self.state = "warming"
                self._warmup(specs)
            self.state = "ready"
            log.info("styleengine runner ready in %.1f s: %s on %s, batch buckets %s%s", time.perf_counter() - t0, self.style.name,
                     self.runtime, list(self.buckets), " (RANDOM WEIGHTS)" if self.random_weights else "")
        except Exception as exc:  # noqa: BLE001 - reported through /livez, the log and on_failure
            self.error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, StartupError) else str(exc)
            self.state = "failed"
            log.debug("styleengine runner failed to start", exc_info=True)
            if self.on_failure is not None:
                self.on_failure(self.error)
            else:
                log.error("styleengine runner failed to start: %s", self.error)

    def _manifest_specs(self) -> list[GraphSpec]:
        from .preflight import manifest_specs

        return manifest_specs(self.plan, self.engine)

    def _specs(self) -> list[GraphSpec]:
        return self._manifest_specs() or list(self.style.graphs())

    def _open_sessions(self) -> dict[str, Any]:
        from ..runtime.base import SessionOptions
        from ..sessions import open_sessions

        art = self.artifacts_dir()
        if self.runtime == "tensorrt" and art is not None:
            art = ensure_engines(self.engine, art, precision=self.args.precision)
        device = self.args.device
        if self.runtime == "tensorrt" and not device.startswith("cuda"):
            device = "cuda"  # engines run on the GPU whatever the default device says
        if not self.plan.torch_graphs(self.engine) and device == "cpu":
            # The pipeline's own torch ops are small; a full torch thread pool spinning after each of them
            # steals the CPU ONNX Runtime needs (measured: 9 ms per call at batch 1).
            import torch

            torch.set_num_threads(1)
        options = SessionOptions(device=device, precision=self.args.precision, extra={"allow_spinning": False})
        return open_sessions(self.engine, self.style, self.runtime, artifacts=art, options=options)

    def _warmup(self, specs: list[GraphSpec]) -> None:
        from ..style import StyleRequest

        h, w = warm_size(self.style, specs)
        rng = np.random.default_rng(0)
        cfg = self.style.parse_config(self.defaults)
        usable: list[int] = []
        try:
            choices = type(self.style).text_choices(dict(self.args.model_set or {}))
        except Exception:  # noqa: BLE001 - suggestions only
            choices = {}
        for b in self.buckets:
            reqs = []
            for i in range(b):
                images: dict[str, Any] = {}
                for f in self.style.inputs.images:
                    img = rng.random((h, w, 3), dtype=np.float32)
                    images[f.name] = [img] if f.multiple else img
                texts = {}
                for t in self.style.inputs.texts:
                    if t.name not in choices:
                        texts[t.name] = "warm-up"
                    elif choices[t.name]:  # a field with known values (e.g. adapter names) warms up with one of them
                        texts[t.name] = choices[t.name][0]
                reqs.append(StyleRequest(images=images, texts=texts, seed=i, id=f"warmup-{b}-{i}"))
            log.info("warm-up: batch %d at %dx%d (buckets %s) ...", b, w, h, list(self.buckets))
            t0 = time.perf_counter()
            try:
                results = self.engine.hook.style_infer(style=self.style, sessions=self.sessions, batch=reqs, cfg=cfg)
                if len(results) != b:
                    raise RuntimeError(f"style_infer returned {len(results)} results for {b} requests")
            except Exception as exc:
                if b == 1:
                    raise StartupError(f"warm-up failed at batch size 1 ({w}x{h}, parameters {self.defaults}): {type(exc).__name__}: {exc}") from exc
                log.warning("warm-up at batch size %d failed (%s: %s); serving with batch sizes %s", b, type(exc).__name__, exc, usable)
                break
            usable.append(b)
            log.info("warm-up: batch %d at %dx%d done in %.0f ms", b, w, h, (time.perf_counter() - t0) * 1000)
        self.buckets = tuple(usable)

    # -- serving -------------------------------------------------------------------------------
    def run_batch(self, items: list[RunnerItem]) -> list[RunnerOutput]:
        from ..style import StyleRequest

        n = len(items)
        if not self.ready:
            detail = "the runner is still warming up" if not self.failed else "the runner failed to start"
            return [RunnerOutput(id=it.id, status=503, error="not_ready", detail=detail, dispatch_size=n) for it in items]
        if self.metrics is not None:
            self.metrics.observe_dispatch(n)
        outputs: list[RunnerOutput | None] = [None] * n
        keys = [group_key(it.images, it.params) for it in items]
        max_wait = self.args.max_latency_ms / 1000.0
        for chunk in plan_chunks(keys, self.buckets):
            now = time.time()
            live = []
            for i in chunk:
                it = items[i]
                waited = now - it.sent_at
                if it.deadline is not None and now >= it.deadline:
                    outputs[i] = self._error(it, 504, "timeout", "the request timed out while queued", n, waited)
                elif waited > max_wait:
                    outputs[i] = self._error(
                        it, 503, "overloaded",
                        f"the request waited {waited * 1000:.0f} ms in the queue, over max_latency_ms={self.args.max_latency_ms}", n, waited,
                    )
                else:
                    live.append(i)
            if not live:
                continue
            deadlines = [items[i].deadline for i in live]
            deadline = None if any(d is None for d in deadlines) else max(d for d in deadlines if d is not None)
            mono_deadline = None if deadline is None else time.monotonic() + (deadline - time.time())
            token = cancel.CancelToken(mono_deadline, reason="request timed out")
            first = items[live[0]]

            def attempt(part: list[int]) -> tuple[int, str | None, str | None, Any, float]:
                t0 = time.perf_counter()
                status, code, detail, results = 200, None, None, None
                try:
                    reqs = [
                        StyleRequest(images=_as_float(items[i].images), texts=dict(items[i].texts), seed=items[i].seed, id=items[i].id)
                        for i in part
                    ]
                    cfg = self.style.parse_config(first.params)
                    with cancel.use_token(token):
                        token.check()
                        results = self.engine.hook.style_infer(style=self.style, sessions=self.sessions, batch=reqs, cfg=cfg)
                    if results is None or len(results) != len(part):
                        raise RuntimeError(f"style_infer returned {0 if results is None else len(results)} results for {len(part)} requests")
                except Exception as exc:  # noqa: BLE001 - mapped to a status, never leaked
                    status, code, detail = self._classify(exc, token)
                return status, code, detail, results, time.perf_counter() - t0

            # A request the style refuses for what it asks (RequestError, e.g. an unknown LoRA name) fails its whole
            # batch: run that batch again request by request, so only the offending one is refused.
            first_try = attempt(live)
            parts = [(live, first_try)]
            if first_try[1] == "invalid_request" and len(live) > 1:
                parts = [([i], attempt([i])) for i in live]
            for part, (status, code, detail, results, elapsed) in parts:
                if self.metrics is not None:
                    self.metrics.observe_chunk(len(part), elapsed, [now - items[i].sent_at for i in part], status)
                for j, i in enumerate(part):
                    it = items[i]
                    common = dict(id=it.id, batch_size=len(part), dispatch_size=n, queue_ms=(now - it.sent_at) * 1000,
                                  inference_ms=elapsed * 1000)
                    if status != 200:
                        outputs[i] = RunnerOutput(status=status, error=code, detail=detail, seed=it.seed, **common)
                        continue
                    res = results[j]  # type: ignore[index]
                    outputs[i] = RunnerOutput(
                        image=to_uint8(np.asarray(res.image)), seed=res.seed if res.seed is not None else it.seed,
                        images=[to_uint8(np.asarray(a)) for a in res.images] if getattr(res, "images", None) else None,
                        info=_json_safe(res.info), **common,
                    )
        return [o if o is not None else RunnerOutput(id=items[k].id, status=500, error="internal", detail="no result") for k, o in enumerate(outputs)]

    def _error(self, it: RunnerItem, status: int, code: str, detail: str, n: int, waited: float) -> RunnerOutput:
        if self.metrics is not None:
            self.metrics.observe_rejected(code)
        return RunnerOutput(id=it.id, status=status, error=code, detail=detail, seed=it.seed, dispatch_size=n, queue_ms=waited * 1000)

    def _classify(self, exc: Exception, token: cancel.CancelToken) -> tuple[int, str, str]:
        from ..preprocess import SizeError
        from ..spec import SpecError
        from ..style import RequestError

        if isinstance(exc, cancel.Cancelled) or token.cancelled:
            return 504, "timeout", f"the request timed out; inference was stopped ({token.reason or 'cancelled'})"
        if isinstance(exc, SizeError | SpecError):
            return 422, "unsupported_size", str(exc)
        if isinstance(exc, RequestError):
            return 400, "invalid_request", str(exc).splitlines()[0]
        if isinstance(exc, ValidationError):
            return 422, "invalid_parameter", str(exc).splitlines()[0]
        if isinstance(exc, MemoryError):
            return 507, "out_of_memory", "not enough memory to run this request; try a smaller image"
        log.exception("inference failed for style %s", self.style.name)
        return 500, "inference_failed", "inference failed; the server log has the details"


def _as_float(images: dict[str, Any]) -> dict[str, Any]:
    def conv(a: Any) -> Any:
        if isinstance(a, list | tuple):
            return [conv(x) for x in a]
        a = np.asarray(a)
        return from_uint8(a) if a.dtype == np.uint8 else np.ascontiguousarray(a, dtype=np.float32)

    return {k: conv(v) for k, v in images.items()}


def _json_safe(info: dict[str, Any]) -> dict[str, Any]:
    import json

    out = {}
    for k, v in (info or {}).items():
        try:
            json.dumps(v)
        except (TypeError, ValueError):
            continue
        out[str(k)] = v
    return out


# -- TensorRT: engines checked (or built) for this GPU at start-up ------------------------------------------
def engine_cache_root() -> Path:
    import os

    base = os.environ.get("STYLEENGINE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "styleengine")
    return Path(base) / "serving-engines"


def ensure_engines(engine: Any, artifacts: Path, *, precision: str = "fp32") -> Path:
    """Artifacts whose TensorRT engines all match this GPU and TensorRT version.

    Engines recorded in the manifest are checked (version, compute capability, file hash).  When any is
    missing or stale, the ONNX files are copied to a writable cache folder keyed by the manifest's hash
    and the missing engines are built there (through the ``build_engine`` hook, which has its own engine
    cache).  Returns the folder to load from.
    """
    from ..export.manifest import EngineRecord, Manifest
    from ..export.options import ExportOptions
    from ..export.tensorrt import gpu_identity, import_tensorrt
    from ..io import sha256_file
    from ..runtime.base import ArtifactMismatchError
    from ..runtime.tensorrt import check_engine_record

    trt = import_tensorrt()
    _, capability = gpu_identity()

    def stale_graphs(folder: Path, manifest: Manifest) -> list[str]:
        stale = []
        for name, rec in manifest.graphs.items():
            try:
                check_engine_record(rec, trt.__version__, capability)
                path = folder / rec.engine.path  # type: ignore[union-attr]
                if not path.is_file() or sha256_file(path) != rec.engine.sha256:  # type: ignore[union-attr]
                    raise ArtifactMismatchError(f"graph {name}: engine file missing or modified")
            except ArtifactMismatchError as exc:
                log.info("TensorRT engine for %s (%s) must be built here: %s", name, folder, exc)
                stale.append(name)
        return stale

    manifest = Manifest.load(artifacts)
    stale = stale_graphs(artifacts, manifest)
    if not stale:
        return artifacts
    # The precision asked for (``--precision``), else the one the artifacts were exported for.
    prec = precision if precision != "fp32" else (manifest.precision if manifest.precision in ("fp16", "bf16", "fp32") else "fp32")
    work = engine_cache_root() / f"{manifest.style}-{manifest.variant}-{manifest.sha256(artifacts)[:16]}-{prec}-{capability}-{trt.__version__}"
    if (work / "manifest.json").is_file():  # built by an earlier start on this machine
        built = Manifest.load(work)
        if not stale_graphs(work, built):
            return work
    work.mkdir(parents=True, exist_ok=True)
    for rec in manifest.graphs.values():
        for rel in [rec.onnx, *rec.external_data]:
            if rel and not (work / rel).exists():
                (work / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(artifacts / rel, work / rel)
    options = ExportOptions(out_dir=work, trt=True, precision=prec)  # type: ignore[arg-type]
    for name in stale:
        rec = manifest.graphs[name]
        spec = GraphSpec.from_dict(rec.spec)
        graph_prec = prec if prec in spec.precisions else "fp32"
        engine_path = work / f"{name}.{graph_prec}.plan"
        log.info("building the TensorRT engine for graph %s (%s); readiness waits for it", name, graph_prec)
        info = engine.hook.build_engine(spec=spec, onnx_path=work / (rec.onnx or f"{name}.onnx"), engine_path=engine_path, options=options)
        rec.engine = EngineRecord(path=engine_path.name, sha256=sha256_file(engine_path), **dict(info))
    manifest.write(work)
    return work

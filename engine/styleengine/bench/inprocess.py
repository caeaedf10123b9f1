"""``engine bench STYLE``: the style's full pipeline, in this process, per runtime × precision × size × batch.

What is timed is exactly what a caller of the engine gets: ``engine.hook.style_infer`` (so wrapper
plugins are included) on a batch of ``batch`` requests of ``size``×``size`` synthetic images, through
Sessions of the runtime under test.  Each Session is wrapped in a :class:`~.proxy.TimingSession`, so
every result also carries a per-graph breakdown (e.g. text encoder / UNet × steps / VAE decoder).

Runtimes are measured **interleaved**: for each (size, batch) every runtime runs back to back, so on a
noisy shared machine each runtime's ratio to torch eager compares numbers taken minutes, not tens of
minutes, apart.  torch eager (fp32, same device) is added as the baseline when not asked for.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .artifacts import covers, ensure_artifacts, manifest_hash
from .env import environment, now
from .inputs import make_requests, with_size
from .proxy import StageRecorder, wrap_sessions
from .stats import speedup, summarize
from .timing import PeakMemory, cuda_sync, measure

log = logging.getLogger(__name__)

__all__ = ["BenchConfig", "run_inprocess", "add_baseline_ratios", "SCHEMA"]

SCHEMA = "styleengine.bench/1"
BASELINE = "torch"


@dataclass
class BenchConfig:
    style: str
    runtimes: tuple[str, ...] = ("torch",)
    batches: tuple[int, ...] = (1,)
    sizes: tuple[int, ...] = (256,)
    precisions: tuple[str, ...] = ("fp32",)
    device: str = "cpu"
    warmup: int = 3
    iters: int | None = 20
    seconds: float | None = None
    min_iters: int = 3
    weights: str | None = None
    allow_random_weights: bool = False
    variant: str | None = None
    model_sets: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)
    artifacts: Path | None = None
    #: "pipeline" (the default), "graphs" (each graph alone, on the inputs the pipeline fed it) or "both".
    mode: str = "pipeline"
    vary_inputs: bool = False
    threads: int | None = None
    baseline: bool = True
    cache: Path | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("pipeline", "graphs", "both"):
            raise ValueError(f"mode must be pipeline, graphs or both, got {self.mode!r}")
        for what, values in (("batch", self.batches), ("size", self.sizes)):
            if not values or any(v < 1 for v in values):
                raise ValueError(f"--{what} needs positive integers, got {list(values)}")
        if self.warmup < 0 or self.min_iters < 1:
            raise ValueError("--warmup must be >= 0 and --min-iters >= 1")


def load_style(engine: Any, cfg: BenchConfig) -> Any:
    from ..weights import resolve

    cls = engine.style_class(cfg.style)
    style = cls(cls.ModelConfig(**cfg.model_sets), variant=cfg.variant)
    if cfg.weights:
        style.load_weights(resolve(cfg.weights))
    style.require_weights(cfg.allow_random_weights)
    return style


def _style_info(engine: Any, style: Any, params: Any) -> dict[str, Any]:
    entry = engine.styles.get(style.name)
    return {
        "name": style.name,
        "variant": style.variant,
        "distribution": entry.distribution,
        "version": entry.version,
        "model_config": style.model_config.model_dump(mode="json"),
        "weights": {"path": str(style.weights_path), "sha256": style.weights_sha256} if style.weights_path else "random",
        # one Config, or one per size where a parameter follows the size ("{size}")
        "params": {str(size): p.model_dump(mode="json") for size, p in params.items()} if len({id(p) for p in params.values()}) > 1
        else next(iter(params.values())).model_dump(mode="json"),
        "graphs": [s.name for s in style.graphs()] if style.has("export") else [],
    }


@dataclass
class _Target:
    """One runtime × precision with its open sessions (or why it has none)."""

    runtime: str
    precision: str
    sessions: dict[str, Any] | None = None
    recorder: StageRecorder = field(default_factory=StageRecorder)
    artifacts: Path | None = None
    status: str = "ok"
    reason: str = ""

    @property
    def label(self) -> str:
        return self.runtime if self.precision == "fp32" else f"{self.runtime} {self.precision}"


def _open_target(engine: Any, style: Any, params: Any, cfg: BenchConfig, runtime: str, precision: str, say: Callable[[str], None]) -> _Target:
    from ..runtime.base import ArtifactMismatchError, DamagedArtifactError, RuntimeUnavailableError, SessionOptions
    from ..sessions import open_sessions

    t = _Target(runtime, precision)
    rt_cls = engine.runtime_class(runtime)
    ok, reason = rt_cls.availability()
    if not ok:
        t.status, t.reason = "unavailable", reason
        return t
    try:
        if rt_cls.needs != "module":
            if not style.has("export"):
                raise RuntimeUnavailableError(f"style {style.name} has no exportable graph; only torch runs it")
            if cfg.artifacts is not None:
                t.artifacts = cfg.artifacts
                from ..export.manifest import Manifest

                for problem in covers(Manifest.load(cfg.artifacts), cfg.batches, cfg.sizes):
                    say(f"warning: {cfg.artifacts}: {problem}")
            else:
                t.artifacts = ensure_artifacts(
                    engine, style, params=params, batches=cfg.batches, sizes=cfg.sizes, texts=cfg.texts, trt=rt_cls.needs == "engine",
                    precision=precision, cache=cfg.cache, say=say,
                )
        options = SessionOptions(device=cfg.device, precision=precision, threads=cfg.threads)  # type: ignore[arg-type]
        t.sessions = open_sessions(engine, style, runtime, artifacts=t.artifacts, options=options)
    except DamagedArtifactError:
        raise  # damaged files (the user's folder or the cache) are an error, not a runtime quietly left out
    except (RuntimeUnavailableError, ArtifactMismatchError) as exc:
        t.status, t.reason = "unavailable", str(exc)
    except Exception as exc:  # noqa: BLE001 - one runtime failing must not lose the others' numbers
        log.debug("opening %s failed", runtime, exc_info=True)
        t.status, t.reason = "error", f"{type(exc).__name__}: {exc}"
    return t


def _row(t: _Target, cfg: BenchConfig, batch: int, size: int, mode: str, graph: str | None) -> dict[str, Any]:
    return {
        "runtime": t.runtime,
        "precision": t.precision,
        "device": cfg.device,
        "mode": mode,
        "graph": graph,
        "batch": batch,
        "size": size,
        "status": "ok",
        "sessions": {n: {"runtime": s.runtime, "device": s.device} for n, s in (t.sessions or {}).items()},
        "manifest_sha256": manifest_hash(t.artifacts) if t.artifacts else None,
    }


def _bench_pipeline(engine: Any, style: Any, params: Any, t: _Target, cfg: BenchConfig, batch: int, size: int) -> list[dict[str, Any]]:
    """``params``: the style's Config for this size."""
    assert t.sessions is not None
    sync = cuda_sync(cfg.device)
    rec = t.recorder
    rec.reset()
    rec.captured = {}
    proxied = wrap_sessions(t.sessions, rec)
    fixed = make_requests(style, batch, size, texts=cfg.texts)

    def prepare(i: int) -> Any:
        if not cfg.vary_inputs:
            return fixed
        return make_requests(style, batch, size, seed=i + 1 if i >= 0 else 100_000 - i, texts=cfg.texts)

    def run(reqs: Any) -> Any:
        out = engine.hook.style_infer(style=style, sessions=proxied, batch=reqs, cfg=params)
        if len(out) != len(reqs):
            raise RuntimeError(f"style_infer returned {len(out)} results for {len(reqs)} requests")
        return out

    rows = []
    timing = dict(warmup=cfg.warmup, iters=cfg.iters, seconds=cfg.seconds, min_iters=cfg.min_iters, sync=sync)
    if cfg.mode in ("pipeline", "both"):
        with PeakMemory(cfg.device) as mem:
            samples = measure(run, prepare=prepare, on_start=rec.begin, on_end=rec.end, **timing)  # type: ignore[arg-type]
        row = _row(t, cfg, batch, size, "pipeline", None)
        row["latency_ms"] = summarize(samples, batch)
        row["images_per_s"] = row["latency_ms"].pop("images_per_s")
        row["memory"] = mem.result()
        row["stages"] = rec.summary(row["latency_ms"]["mean"])
        rows.append(row)
    else:
        run(prepare(-1))  # one call to capture each graph's real inputs
    if cfg.mode in ("graphs", "both"):
        for gname, inputs in rec.captured.items():
            session = t.sessions[gname]
            with PeakMemory(cfg.device) as mem:
                samples = measure(lambda _: session.run(inputs), **timing)  # type: ignore[arg-type]
            row = _row(t, cfg, batch, size, "graph", gname)
            row["input_shapes"] = {k: list(getattr(v, "shape", ())) for k, v in inputs.items()}
            row["latency_ms"] = summarize(samples, batch)
            row["images_per_s"] = row["latency_ms"].pop("images_per_s")
            row["memory"] = mem.result()
            rows.append(row)
    return rows


def _error_row(t: _Target, cfg: BenchConfig, batch: int, size: int, exc: BaseException) -> dict[str, Any]:
    row = _row(t, cfg, batch, size, "pipeline", None)
    row.update(status="error", error=f"{type(exc).__name__}: {exc}")
    return row


def baseline_key(row: Mapping[str, Any], precision: str) -> tuple[Any, ...]:
    return (BASELINE, precision, row["device"], row["mode"], row["graph"], row["batch"], row["size"])


def add_baseline_ratios(results: list[dict[str, Any]]) -> None:
    """``vs_torch`` on every ok row: torch eager latency / this row's (p50 and mean), same device, mode,
    graph, batch and size; the baseline is torch fp32, else torch at the row's precision."""
    index = {
        (r["runtime"], r["precision"], r["device"], r["mode"], r["graph"], r["batch"], r["size"]): r
        for r in results
        if r.get("status") == "ok"
    }
    for r in results:
        if r.get("status") != "ok":
            continue
        base = index.get(baseline_key(r, "fp32")) or index.get(baseline_key(r, r["precision"]))
        if base is None:
            r["vs_torch"] = None
            continue
        r["vs_torch"] = {
            "p50": speedup(base["latency_ms"]["p50"], r["latency_ms"]["p50"]),
            "mean": speedup(base["latency_ms"]["mean"], r["latency_ms"]["mean"]),
            "baseline": f"{BASELINE} {base['precision']}",
        }


def run_inprocess(engine: Any, cfg: BenchConfig, say: Callable[[str], None] = log.info, argv: list[str] | None = None) -> dict[str, Any]:
    """Benchmark ``cfg.style`` in this process; returns the report (see ``benchmarks/README.md``)."""
    style = load_style(engine, cfg)
    # per size: a parameter given as "{size}" takes the image size (styles with a working resolution)
    params = {size: style.parse_config(with_size(cfg.params, size)) for size in cfg.sizes}
    if len({json.dumps(p.model_dump(mode="json"), sort_keys=True) for p in params.values()}) == 1:
        params = {size: next(iter(params.values())) for size in cfg.sizes}
    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)
    runtimes = [engine.runtimes.resolve(r) for r in cfg.runtimes]
    if cfg.baseline and BASELINE not in runtimes:
        runtimes.insert(0, BASELINE)
    precisions = list(dict.fromkeys(cfg.precisions))
    pairs = [(r, p) for r in dict.fromkeys(runtimes) for p in precisions]
    if cfg.baseline and (BASELINE, "fp32") not in pairs and "fp32" not in precisions:
        pairs.insert(0, (BASELINE, "fp32"))  # the ratio's reference, even when only fp16 was asked for

    targets = []
    for rt, prec in pairs:
        say(f"opening {rt} ({prec}, {cfg.device})")
        targets.append(_open_target(engine, style, params, cfg, rt, prec, say))
    live = [t for t in targets if t.status == "ok"]
    for t in targets:
        if t.status != "ok":
            say(f"{t.label}: {t.status}: {t.reason}")

    results: list[dict[str, Any]] = []
    for size in cfg.sizes:
        for batch in cfg.batches:
            for t in live:
                say(f"{t.label}: batch {batch}, {size}x{size}")
                try:
                    results += _bench_pipeline(engine, style, params[size], t, cfg, batch, size)
                except Exception as exc:  # noqa: BLE001 - e.g. out of memory at the largest batch
                    log.debug("bench failed", exc_info=True)
                    say(f"{t.label}: batch {batch}, {size}x{size} failed: {type(exc).__name__}: {exc}")
                    results.append(_error_row(t, cfg, batch, size, exc))
    add_baseline_ratios(results)

    env = environment()
    settings = {k: v for k, v in asdict(cfg).items() if k not in ("style", "weights", "allow_random_weights", "cache")}
    settings.update(artifacts=str(cfg.artifacts) if cfg.artifacts else None, torch_threads=env["machine"].get("torch_threads"))
    return {
        "schema": SCHEMA,
        "kind": "in-process",
        "created": now(),
        "command": argv if argv is not None else sys.argv,
        "style": _style_info(engine, style, params),
        "settings": settings,
        "machine": env["machine"],
        "versions": env["versions"],
        "runtimes": {
            t.label: {
                "runtime": t.runtime,
                "precision": t.precision,
                "status": t.status,
                "reason": t.reason or engine.runtime_class(t.runtime).availability()[1],
                "artifacts": str(t.artifacts) if t.artifacts else None,
                "manifest_sha256": manifest_hash(t.artifacts) if t.artifacts else None,
                "sessions": {n: {"runtime": s.runtime, "device": s.device} for n, s in (t.sessions or {}).items()},
            }
            for t in targets
        },
        "unavailable": [{"runtime": t.runtime, "precision": t.precision, "status": t.status, "reason": t.reason} for t in targets if t.status != "ok"],
        "results": results,
    }

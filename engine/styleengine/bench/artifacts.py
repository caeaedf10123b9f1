"""Exported artifacts for the runtimes that need them (onnxruntime, tensorrt).

With ``--artifacts DIR`` the bench uses that folder (and warns when its dims look too narrow for the
request).  Without it, the style is exported once into a cache folder
(``$STYLEENGINE_CACHE/bench/STYLE/VARIANT/KEY``) with an :class:`ExportProfile` that widens each graph's
own dims just enough to cover what the benchmark will feed it.  Nothing else changes, so the artifact is
the same validated export ``engine export`` makes.

What a graph is fed is **observed**, not guessed: the style's pipeline runs once on torch at the smallest
and at the largest (batch, size) requested, through recording Session proxies, and every Dim of every
input is widened to the range of sizes seen on its axis.  That is exact for any style: a diffusion UNet's
``unet_batch`` (guidance × requests) and ``latent_height`` (size / 8), a pipeline that splits a batch into
chunks, a style that resizes to a fixed size.  Should the torch run fail, dims are widened by name
instead (the batch dim to ``batch × its multiple``, ``height`` / ``width`` to the sizes).

``KEY`` hashes everything the artifact depends on (style, engine and exporter versions, model config,
weights, the request, precision, TensorRT), so a later bench reuses it and a changed model never reuses
a stale one.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..export.options import ExportOptions, ExportProfile, ExportProfileGraph, ProfileDim
from ..spec import Dim

log = logging.getLogger(__name__)

__all__ = ["observed_ranges", "named_ranges", "widened_profile", "covers", "ensure_artifacts", "manifest_hash"]

SIZE_DIMS = ("height", "width")
#: graph → dim name → (smallest, largest) value the benchmark feeds.
Ranges = dict[str, dict[str, tuple[int, int]]]


def _merge(ranges: Ranges, graph: str, dim: str, values: Sequence[int]) -> None:
    if not values:
        return
    lo, hi = ranges.setdefault(graph, {}).get(dim, (min(values), max(values)))
    ranges[graph][dim] = (min(lo, *values), max(hi, *values))


def observed_ranges(engine: Any, style: Any, params: Mapping[int, Any], batches: Sequence[int], sizes: Sequence[int],
                    texts: Mapping[str, str] | None = None) -> Ranges:
    """Run the pipeline on torch at (min batch, min size) and (max batch, max size) (``params``: the
    style's Config per size); the ranges of every Dim of every graph input seen."""
    from ..sessions import open_sessions
    from .inputs import make_requests
    from .proxy import StageRecorder, wrap_sessions

    rec = StageRecorder()
    sessions = wrap_sessions(open_sessions(engine, style, "torch"), rec)
    for b, s in sorted({(min(batches), min(sizes)), (max(batches), max(sizes))}):
        engine.hook.style_infer(style=style, sessions=sessions, batch=make_requests(style, b, s, texts=texts), cfg=params[s])
    ranges: Ranges = {}
    for spec in style.graphs():
        for t in spec.inputs:
            seen = rec.shapes.get((spec.name, t.name), set())
            for i, axis in enumerate(t.shape):
                if isinstance(axis, Dim):
                    _merge(ranges, spec.name, axis.name, [shape[i] for shape in seen if len(shape) > i])
    return ranges


def named_ranges(specs: Sequence[Any], batches: Sequence[int], sizes: Sequence[int]) -> Ranges:
    """The fallback: each graph's batch dim gets ``batch × multiple_of``, dims named height/width the sizes."""
    ranges: Ranges = {}
    for spec in specs:
        for name, dim in spec.dims.items():
            if name == spec.batch_dim:
                _merge(ranges, spec.name, name, [b * dim.multiple_of for b in batches])
            elif name in SIZE_DIMS:
                _merge(ranges, spec.name, name, list(sizes))
    return ranges


def _cover(dim: Dim, lo_hi: tuple[int, int]) -> ProfileDim | None:
    m = dim.multiple_of
    lo = min(dim.min, max(m, lo_hi[0] // m * m))
    hi = max(dim.max, -(-lo_hi[1] // m) * m)
    if (lo, hi) == (dim.min, dim.max):
        return None
    return ProfileDim(min=lo, opt=min(max(dim.opt, lo), hi), max=hi, multiple_of=m)


def widened_profile(specs: Sequence[Any], ranges: Ranges, name: str = "bench") -> ExportProfile:
    """A profile whose per-graph dims cover ``ranges`` (only the dims that need it; ``default`` if none)."""
    graphs: dict[str, ExportProfileGraph] = {}
    for spec in specs:
        dims = {}
        for dname, lo_hi in ranges.get(spec.name, {}).items():
            if dname in spec.dims and (wider := _cover(spec.dims[dname], lo_hi)) is not None:
                dims[dname] = wider
        if dims:
            graphs[spec.name] = ExportProfileGraph(dims=dims)
    return ExportProfile(name=name if graphs else "default", graphs=graphs)


def covers(manifest: Any, batches: Sequence[int], sizes: Sequence[int]) -> list[str]:
    """Likely problems (by dim names) with an artifact folder's recorded dims for this request."""
    from ..spec import GraphSpec

    specs = [GraphSpec.from_dict(rec.spec) for rec in manifest.graphs.values()]
    problems = []
    for spec in specs:
        for dname, (lo, hi) in named_ranges([spec], batches, sizes).get(spec.name, {}).items():
            d = spec.dims[dname]
            if lo < d.min or hi > d.max:
                problems.append(f"graph {spec.name}: {dname} needs [{lo}, {hi}], the artifact has [{d.min}, {d.max}]")
    return problems


def manifest_hash(folder: str | Path) -> str | None:
    from ..io import sha256_file

    p = Path(folder) / "manifest.json"
    return sha256_file(p) if p.is_file() else None


def _key(engine: Any, style: Any, material: Mapping[str, Any]) -> str:
    from ..export.manifest import library_versions

    entry = engine.styles.get(style.name)
    versions = library_versions()
    material = {
        **material,
        "style": style.name,
        "variant": style.variant,
        "distribution": f"{entry.distribution} {entry.version}",
        "versions": {k: versions.get(k) for k in ("styleengine", "torch", "onnx", "onnxscript", "tensorrt")},
        "model_config": style.model_config.model_dump(mode="json"),
        "weights": style.weights_sha256 or f"random:{style.init_seed}",
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()[:16]


def ensure_artifacts(
    engine: Any,
    style: Any,
    *,
    params: Mapping[int, Any],
    batches: Sequence[int],
    sizes: Sequence[int],
    texts: Mapping[str, str] | None = None,
    trt: bool = False,
    precision: str = "fp32",
    cache: Path | None = None,
    say: Callable[[str], None] = log.info,
) -> Path:
    """An exported (and validated) artifact folder for the request, from the cache or exported now."""
    from ..export.manifest import Manifest
    from ..weights import cache_dir

    request = {"batches": sorted(set(batches)), "sizes": sorted(set(sizes)),
               "params": {str(k): v.model_dump(mode="json") for k, v in sorted(params.items())},
               "texts": dict(texts or {}), "trt": trt, "precision": precision if trt or precision == "int8" else "fp32"}
    folder = (cache or cache_dir() / "bench") / style.name / style.variant / _key(engine, style, request)
    if (folder / "manifest.json").is_file():
        manifest = Manifest.load(folder)
        complete = all(g.engine for g in manifest.graphs.values()) if trt else all(
            "int8" in g.quantized for g in manifest.graphs.values()) if precision == "int8" else True
        if not manifest.verify_files(folder) and complete:
            say(f"using cached export {folder}")
            return folder
    specs = style.graphs()
    try:
        ranges = observed_ranges(engine, style, params, batches, sizes, texts)
    except Exception as exc:  # noqa: BLE001 - fall back to widening by dim names
        say(f"could not observe {style.name}'s graph inputs on torch ({type(exc).__name__}: {exc}); widening dims by name")
        ranges = named_ranges(specs, batches, sizes)
    profile = widened_profile(specs, ranges)
    widened = {g: {d: [v.min, v.max] for d, v in pg.dims.items()} for g, pg in profile.graphs.items()}
    say(f"exporting {style.name} ({style.variant}) to {folder}" + (f" with TensorRT {precision}" if trt else "")
        + (f"; dims widened: {widened}" if widened else ""))
    options = ExportOptions(out_dir=folder, trt=trt, int8=precision == "int8" and not trt, precision=precision if trt else "fp32",
                            profile=profile, extra={"progress": say})
    engine.hook.style_export(style=style, options=options)
    return folder

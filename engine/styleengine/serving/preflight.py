"""Everything a server can check before it starts, without torch (see :mod:`.lifecycle`).

:func:`preflight` resolves what the arguments name (the Bento model's folder, artifacts, weights), runs
:func:`styleengine.loading.plan_load` on it (runtime packages, devices, manifest and file digests,
weights format and digest, model config, random weights) and then checks what only serving needs: the
server's default request parameters validate, and the warm-up (the graphs' optimal size and every batch
bucket) lies inside the exported dims.  ``engine serve``, ``engine bento build`` and the service module
(in BentoML's supervisor, before any worker) all call it; a problem is one :class:`StartupError` line.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .args import ServeArgs
from ..spec import GraphSpec
from .batching import bucket_sizes

if TYPE_CHECKING:
    from ..loading import LoadPlan
    from ..plugins import Engine

ARTIFACTS_DIR = "artifacts"
WEIGHTS_DIR = "weights"


class StartupError(RuntimeError):
    """The server cannot start; the message is one line."""


@dataclass
class Resolved:
    """The folders the arguments stand for (a Bento model's ``artifacts/`` and ``weights/``)."""

    model_dir: Path | None
    artifacts: Path | None
    weights: str | None


def graph_batch_max(specs: list[GraphSpec]) -> int | None:
    """The smallest batch-dim maximum over the graphs (None when no graph has a batch dim)."""
    maxima = [s.dims[s.batch_dim].max for s in specs if s.batch_dim and s.batch_dim in s.dims]
    return min(maxima) if maxima else None


def warm_size(style: Any, specs: list[GraphSpec]) -> tuple[int, int]:
    """The image size warm-up uses: the graphs' optimal height/width when they declare them."""
    h = w = 64
    for s in specs:
        dims = s.dims
        if "height" in dims and "width" in dims:
            h, w = dims["height"].opt, dims["width"].opt
            break
    c = style.inputs
    h = min(max(h, c.min_side), c.max_side)
    w = min(max(w, c.min_side), c.max_side)
    return h, w


def model_dir_of(tag: str | None) -> Path | None:
    """The local folder of a BentoML model tag (refused clearly when it is not in the store)."""
    if not tag:
        return None
    import bentoml

    try:
        return Path(bentoml.models.get(tag).path)
    except bentoml.exceptions.NotFound:
        raise StartupError(
            f"model {tag!r} is not in the BentoML model store ({os.environ.get('BENTOML_HOME') or '~/bentoml'}); "
            "create it with `engine export STYLE --bento-model` (or `engine bento build`)"
        ) from None


def resolve(args: ServeArgs, model_dir: Path | None) -> Resolved:
    artifacts = Path(args.artifacts) if args.artifacts else None
    weights = args.weights
    if model_dir is not None:
        sub = model_dir / ARTIFACTS_DIR
        if (sub / "manifest.json").is_file():
            artifacts = sub
        if weights is None and (model_dir / WEIGHTS_DIR).is_dir():
            weights = str(model_dir / WEIGHTS_DIR)
    for what, value in (("artifacts", artifacts), ("weights", weights)):
        if value is not None and not str(value).startswith("hf://") and not Path(value).is_absolute():
            raise StartupError(
                f"{what} {value!r} is a relative path: a server may run in any folder, so give an absolute path "
                "(engine serve does) or serve a BentoML model (--model TAG)"
            )
    return Resolved(model_dir, artifacts, weights)


def plan(engine: Engine, args: ServeArgs, model_dir: Path | None = None, *, check_digests: bool = True) -> LoadPlan:
    from ..loading import LoadError, plan_load

    res = resolve(args, model_dir)
    try:
        return plan_load(
            engine, args.style, args.runtime, artifacts=res.artifacts, weights=res.weights, variant=args.variant,
            model_sets=args.model_set, allow_random_weights=args.allow_random_weights, precision=args.precision,
            device=args.device, check_digests=check_digests,
        )
    except LoadError as exc:
        raise StartupError(str(exc)) from None


def request_defaults(style_cls: Any, args: ServeArgs, specs: list[Any]) -> dict[str, Any]:
    """The parameters a request gets when it does not set them: the style's own serving defaults for
    these graphs (e.g. a diffusion style's working resolution inside the exported dims), then the
    server's ``params`` argument.  Validated against the style's Config."""
    from pydantic import ValidationError

    values = {**style_cls.serving_defaults(specs), **args.params}
    try:
        style_cls.Config(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise StartupError(f"server parameter defaults {values}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    return values


def check_warmup(style_cls: Any, args: ServeArgs, specs: list[Any]) -> tuple[int, ...]:
    """The batch buckets to warm up; refuses buckets or the warm-up size outside the graphs' dims."""
    buckets = bucket_sizes(args.max_batch_size, graph_batch_max(specs))
    h, w = warm_size(style_cls, specs)
    for s in specs:
        dims = s.dims
        for name, value in (("height", h), ("width", w)):
            d = dims.get(name)
            if d is not None and not d.accepts(value):
                raise StartupError(f"warm-up size {h}x{w} is outside graph {s.name}'s {name} range [{d.min}, {d.max}] (multiple of {d.multiple_of})")
    return buckets


def manifest_specs(p: LoadPlan, engine: Engine) -> list[GraphSpec]:
    """The graphs' specs as exported (empty when a graph runs on torch: its dims are the style's own)."""
    if p.manifest is None or p.torch_graphs(engine):
        return []
    return [GraphSpec.from_dict(r.spec) for r in p.manifest.graphs.values()]


def preflight(engine: Engine, args: ServeArgs, model_dir: Path | None = None, *, hand_over: bool = False) -> LoadPlan:
    """All torch-free checks; with ``hand_over`` the verified digests are passed to worker processes."""
    from ..spec import SpecError

    p = plan(engine, args, model_dir)
    try:
        specs = manifest_specs(p, engine)
    except (SpecError, KeyError, TypeError, ValueError) as exc:
        raise StartupError(f"{p.artifacts}/manifest.json: unreadable graph specs ({exc})") from None
    request_defaults(p.style_cls, args, specs)
    if specs:
        check_warmup(p.style_cls, args, specs)
    if hand_over:
        from ..io import ENV_VERIFIED, verified_digests

        os.environ[ENV_VERIFIED] = json.dumps(verified_digests())
    return p

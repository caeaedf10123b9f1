"""Open one Session per graph of a style, on the runtime asked for (per graph if need be).

torch runs the style's modules directly.  onnxruntime and tensorrt load the exported artifacts of an
``engine export`` folder; the manifest is checked first (style, variant, weights, and for engines the
TensorRT version and GPU), so a mismatch is refused when the sessions open, not at the first request.
Sessions on artifacts are built from the manifest's specs, so serving from ONNX never builds the
torch modules.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .export.manifest import Manifest
from .runtime.base import ArtifactMismatchError, RuntimeUnavailableError, Session, SessionOptions
from .spec import GraphSpec

if TYPE_CHECKING:
    from .plugins import Engine
    from .style import Style

log = logging.getLogger(__name__)


def parse_runtime_map(runtime: str, graph_runtimes: Mapping[str, str] | None = None) -> dict[str, str]:
    """``"onnxruntime"`` plus ``{"unet": "tensorrt"}`` → default + per-graph choices (key ``"*"`` = default)."""
    out = {"*": runtime}
    out.update(graph_runtimes or {})
    return out


def open_sessions(
    engine: Engine,
    style: Style,
    runtime: str | Mapping[str, str] = "torch",
    *,
    artifacts: str | Path | None = None,
    options: SessionOptions | None = None,
    check_weights: bool = True,
) -> dict[str, Session]:
    options = options or SessionOptions()
    choice = {"*": runtime} if isinstance(runtime, str) else dict(runtime)
    choice = {k: engine.runtimes.resolve(v) for k, v in choice.items()}
    manifest: Manifest | None = None
    needs_artifacts = any(engine.runtime_class(r).needs != "module" for r in choice.values())
    if needs_artifacts:
        if artifacts is None:
            raise ArtifactMismatchError(
                f"runtime {choice} needs exported artifacts: run `engine export {style.name}` and pass --artifacts DIR"
            )
        manifest = Manifest.load(artifacts)
        check_manifest(manifest, style, check_weights=check_weights)
        artifact_graphs = [n for n in manifest.graphs if engine.runtime_class(choice.get(n, choice["*"])).needs != "module"]
        manifest.check_files(artifacts, artifact_graphs)
    specs: dict[str, GraphSpec]
    if all(engine.runtime_class(r).needs != "module" for r in choice.values()) and manifest is not None:
        specs = {n: GraphSpec.from_dict(rec.spec) for n, rec in manifest.graphs.items()}
    else:
        specs = {s.name: s for s in style.graphs()}
    unknown = set(choice) - {"*"} - set(specs)
    if unknown:
        raise ValueError(f"per-graph runtime for unknown graphs {sorted(unknown)}; {style.name} has {sorted(specs)}")
    sessions: dict[str, Session] = {}
    for name, spec in specs.items():
        rt_name = choice.get(name, choice["*"])
        rt_cls = engine.runtime_class(rt_name)
        ok, reason = rt_cls.availability()
        if not ok:
            raise RuntimeUnavailableError(f"runtime {rt_name} is not available here: {reason}")
        rt = rt_cls()
        if rt_cls.needs == "module":
            if spec.module is None:  # spec came from a manifest; the torch graph needs the style's own
                spec = next(s for s in style.graphs() if s.name == name)
            sessions[name] = rt.load(spec, options)
            continue
        assert manifest is not None and artifacts is not None
        rec = manifest.graphs.get(name)
        if rec is None:
            raise ArtifactMismatchError(f"graph {name} is not in {artifacts}/manifest.json (exported: {sorted(manifest.graphs)})")
        if rt_cls.needs == "onnx":
            path = Path(artifacts) / (rec.onnx or "")
        else:
            if rec.engine is None:
                raise ArtifactMismatchError(f"graph {name}: no TensorRT engine in {artifacts} (export with --trt on this machine)")
            path = Path(artifacts) / rec.engine.path
        if not path.is_file():
            raise ArtifactMismatchError(f"graph {name}: {path} is missing")
        sessions[name] = rt.load(spec, options, artifact=path, record=rec, manifest=manifest)
        log.info("graph %s: %s on %s", name, rt_name, sessions[name].device)
    return sessions


def check_manifest(manifest: Manifest, style: Style, *, check_weights: bool = True) -> None:
    if manifest.style != style.name:
        raise ArtifactMismatchError(f"artifacts are for style {manifest.style!r}, not {style.name!r}")
    if manifest.variant != style.variant:
        raise ArtifactMismatchError(
            f"artifacts are variant {manifest.variant!r}, the style was asked for {style.variant!r} (pass --variant)"
        )
    if check_weights and style.weights_sha256 and manifest.weights and manifest.weights.get("sha256") != style.weights_sha256:
        raise ArtifactMismatchError(
            "artifacts were exported from other weights than the ones given (sha256 differs); re-export them"
        )


def session_devices(sessions: Mapping[str, Session]) -> dict[str, Any]:
    return {n: {"runtime": s.runtime, "device": s.device} for n, s in sessions.items()}

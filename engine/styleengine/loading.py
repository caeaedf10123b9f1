"""What a command needs to run a style, worked out and checked before anything heavy happens.

Every command that runs a style (``engine infer``, ``engine bench``, ``engine serve`` and the server's
own start-up) goes through the same two steps:

1. :func:`plan_load` — **torch-free** checks of everything that can be checked from files: the style and
   runtime names, the runtime's package, the artifact folder (its manifest, the sha256 of every file a
   session will load, style / variant / model config against the request), the weights (present, a
   readable format, an engine checkpoint's recorded tensor digest, its style and model config against
   ``--model-set``), and whether random weights would be served.  It returns a :class:`LoadPlan` or raises
   :class:`LoadError` with one line naming the problem.  The server runs it before BentoML starts a
   worker, so a server that cannot start says why and exits instead of restarting.
2. :func:`load_style` — builds the style from the plan.  Exported runtimes need **only the artifact
   folder**: the model config and variant come from its manifest, and no torch module is built or
   loaded (the ONNX files carry the weights).  torch needs the weights, loaded into modules built
   without a wasted random initialisation where the style allows it.

A model config given on the command line (``--model-set``) that contradicts the artifacts' manifest or
the checkpoint is refused naming both values, never silently replaced by the checkpoint's.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .export.manifest import Manifest
    from .plugins import Engine
    from .style import Style

log = logging.getLogger(__name__)

ARTIFACTS_ROOT = Path("export/artifacts")


class LoadError(ValueError):
    """A style cannot be run as asked; the message is one line that names the problem and the fix."""


@dataclass
class LoadPlan:
    style_cls: type
    runtimes: dict[str, str]  # "*" -> default runtime, graph -> runtime
    variant: str
    model_config: dict[str, Any]
    artifacts: Path | None = None
    manifest: Manifest | None = None
    weights: Path | None = None
    #: The weights are random: no weights given to torch, or artifacts exported from random weights.
    random_weights: bool = False
    #: Model-config keys the user set explicitly (checked again after the weights are loaded).
    explicit: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def needs_artifacts(self) -> bool:
        return self.artifacts is not None

    def torch_graphs(self, engine: Engine) -> bool:
        """Does any graph run on torch (so the style's modules and weights are needed)?"""
        return any(engine.runtime_class(r).needs == "module" for r in self.runtimes.values())


def default_artifacts(style: str, variant: str, precision: str = "fp32") -> Path:
    """``export/artifacts/STYLE/VARIANT/PRECISION``: each precision its own folder, so an fp16 TensorRT
    export never replaces the fp32 ONNX Runtime one.  Folders of the older layout (no precision level)
    are still found."""
    base = ARTIFACTS_ROOT / style / variant
    # int8 is a lossy copy kept inside the fp32 ONNX folder (`engine export --int8`), not a folder of its own
    new = base / ("fp32" if precision == "int8" else precision)
    if not (new / "manifest.json").is_file() and (base / "manifest.json").is_file():
        return base
    return new


# -- availability without importing torch ---------------------------------------------------------------
def package_missing(runtime: str) -> str | None:
    """Why ``runtime``'s package is not importable here (None: present).  Cheap: find_spec only."""
    module = {"onnxruntime": "onnxruntime", "tensorrt": "tensorrt", "openvino": "openvino", "torch": "torch"}.get(runtime)
    if module is None or importlib.util.find_spec(module) is not None:
        return None
    if runtime == "tensorrt":
        from .export.tensorrt import INSTALL_HINT

        return INSTALL_HINT
    if runtime == "onnxruntime":
        return "onnxruntime is not installed: pip install onnxruntime (or, from a checkout, make install)"
    return f"the {module} package is not installed"


def cuda_device_count() -> int:
    """CUDA devices visible to this process, asked of the driver (libcuda) so no torch import is needed."""
    import ctypes

    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return 0
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        count = ctypes.c_int(0)
        if lib.cuInit(0) != 0 or lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return 0
        return int(count.value)
    return 0


def check_device(device: str) -> None:
    if device == "cpu":
        return
    if not device.startswith("cuda") or (":" in device and not device.split(":", 1)[1].isdigit()):
        raise LoadError(f"device {device!r}: use cpu, cuda or cuda:N")
    n = cuda_device_count()
    index = int(device.split(":", 1)[1]) if ":" in device else 0
    if n == 0:
        raise LoadError(f"device {device}: no CUDA device is visible on this machine (serve on cpu, or check the driver and CUDA_VISIBLE_DEVICES)")
    if index >= n:
        raise LoadError(f"device {device}: this machine has {n} CUDA device(s) (cuda:0..cuda:{n - 1})")


# -- model config ------------------------------------------------------------------------------------------
def _validated(cls: type, values: Mapping[str, Any], what: str) -> Any:
    from pydantic import ValidationError

    try:
        return cls.ModelConfig(**values)  # type: ignore[attr-defined]
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or what}: {e['msg']}" for e in exc.errors())
        fields = ", ".join(cls.ModelConfig.model_fields)  # type: ignore[attr-defined]
        raise LoadError(f"invalid {what}: {problems} (model config keys: {fields or 'none'})") from None


def contradictions(explicit: Mapping[str, Any], actual: Mapping[str, Any]) -> list[str]:
    return [f"{k}={explicit[k]!r} but {actual.get(k)!r}" for k in explicit if k in actual and actual[k] != explicit[k]]


# -- the plan ----------------------------------------------------------------------------------------------
def plan_load(
    engine: Engine,
    style_name: str,
    runtime: str | Mapping[str, str] = "torch",
    *,
    artifacts: str | os.PathLike[str] | None = None,
    weights: str | None = None,
    variant: str | None = None,
    model_sets: Mapping[str, Any] | None = None,
    allow_random_weights: bool = False,
    precision: str = "fp32",
    device: str = "cpu",
    check_digests: bool = True,
) -> LoadPlan:
    """Check what can be checked without torch; see the module docstring."""
    from .registry import RegistryError

    try:
        cls = engine.style_class(style_name)
        choice = {"*": runtime} if isinstance(runtime, str) else {"*": "torch", **dict(runtime)}
        choice = {k: engine.runtimes.resolve(v) for k, v in choice.items()}
    except RegistryError as exc:
        raise LoadError(str(exc)) from None
    for rt in sorted(set(choice.values())):
        why = package_missing(rt)
        if why:
            raise LoadError(f"runtime {rt} is not available here: {why}")
    check_device("cuda" if "tensorrt" in choice.values() and device == "cpu" else device)
    sets = dict(model_sets or {})
    explicit = _validated(cls, sets, f"{cls.name} model config").model_dump(mode="json", include=set(sets)) if sets else {}
    needs_art = any(engine.runtime_class(r).needs != "module" for r in choice.values())
    plan = LoadPlan(cls, choice, variant or cls.variants[0], dict(explicit), explicit=explicit)
    try:
        cls.check_variant(variant)  # type: ignore[attr-defined]
    except ValueError as exc:
        raise LoadError(str(exc)) from None
    if needs_art:
        _plan_artifacts(engine, plan, artifacts, weights, variant, allow_random_weights, precision, check_digests)
    if weights is None and needs_art and plan.torch_graphs(engine) and plan.manifest is not None and plan.manifest.weights:
        recorded = plan.manifest.weights.get("path")
        if recorded and Path(recorded).exists():  # mixed runtimes: torch graphs use the exported weights
            weights = recorded
    if weights is not None and (not needs_art or plan.torch_graphs(engine)):
        _plan_weights(plan, weights, check_digests)
    if plan.torch_graphs(engine) and plan.weights is None:
        probe = cls(plan.model_config or None, variant=plan.variant)
        if probe.needs_weights:
            plan.random_weights = True
            if not allow_random_weights:
                from .style import WeightsRequiredError

                try:
                    probe.require_weights(False)
                except WeightsRequiredError as exc:
                    raise LoadError(str(exc)) from None
    return plan


def _plan_artifacts(engine: Engine, plan: LoadPlan, artifacts: Any, weights: str | None, variant: str | None,
                    allow_random: bool, precision: str, check_digests: bool) -> None:
    from .export.manifest import Manifest
    from .runtime.base import ArtifactMismatchError

    cls = plan.style_cls
    folder = Path(artifacts) if artifacts else default_artifacts(cls.name, plan.variant, precision)  # type: ignore[attr-defined]
    if not (folder / "manifest.json").is_file():
        how = f"run `engine export {cls.name}`" + (" --int8" if precision == "int8" else f" --precision {precision}" if precision != "fp32" else "")  # type: ignore[attr-defined]
        raise LoadError(f"no exported artifacts in {folder} (no manifest.json): {how}, or pass --artifacts DIR")
    try:
        manifest = Manifest.load(folder)
    except ValueError as exc:
        raise LoadError(str(exc)) from None
    if manifest.style != cls.name:  # type: ignore[attr-defined]
        raise LoadError(f"{folder} holds artifacts of style {manifest.style!r}, not {cls.name!r}")  # type: ignore[attr-defined]
    if variant and variant != manifest.variant:
        raise LoadError(f"{folder} holds variant {manifest.variant!r}, --variant asks for {variant!r}")
    plan.variant = manifest.variant
    bad = contradictions(plan.explicit, manifest.model_config_)
    if bad:
        raise LoadError(f"--model-set contradicts the artifacts in {folder}: {'; '.join(bad)} (exported with that model config)")
    plan.model_config = dict(manifest.model_config_)
    plan.artifacts = folder.resolve()
    plan.manifest = manifest
    if check_digests:
        graphs = [n for n in manifest.graphs if engine.runtime_class(plan.runtimes.get(n, plan.runtimes["*"])).needs != "module"]
        try:
            manifest.check_files(folder, graphs)
        except ArtifactMismatchError as exc:
            raise LoadError(str(exc)) from None
    if weights is not None and manifest.weights and not plan.torch_graphs(engine):
        from .weights import resolve, sha256_path

        try:
            given = resolve(weights)
        except FileNotFoundError as exc:
            raise LoadError(str(exc)) from None
        if sha256_path(given) != manifest.weights.get("sha256"):
            raise LoadError(f"--weights {weights} are not the weights the artifacts in {folder} were exported from (sha256 differs); re-export")
    if not manifest.weights:
        plan.random_weights = True
        if not allow_random:
            raise LoadError(
                f"the artifacts in {folder} were exported from random weights; pass --allow-random-weights "
                f"(latency work, tests) or export trained weights (engine export {cls.name} --weights W)"  # type: ignore[attr-defined]
            )
    elif allow_random:
        plan.warnings.append(f"the artifacts in {folder} carry trained weights; --allow-random-weights has no effect")


def _plan_weights(plan: LoadPlan, weights: str, check_digests: bool) -> None:
    from .weights import CorruptWeightsError, WeightsUnavailableError, checkpoint_config, is_engine_checkpoint, resolve, verify_safetensors

    cls = plan.style_cls
    try:
        path = resolve(weights)
    except (FileNotFoundError, WeightsUnavailableError, ValueError) as exc:
        raise LoadError(str(exc)) from None
    if path.is_file() and not os.access(path, os.R_OK):
        raise LoadError(f"weights {path}: not readable")
    if path.is_file() and path.stat().st_size == 0:
        raise LoadError(f"weights {path}: empty file")
    if is_engine_checkpoint(path):
        try:
            config = checkpoint_config(path)
            if check_digests:
                verify_safetensors(path / "model.safetensors" if path.is_dir() else path)
        except CorruptWeightsError as exc:
            raise LoadError(str(exc)) from None
        if config.get("style") not in (None, cls.name):  # type: ignore[attr-defined]
            raise LoadError(f"{path} holds weights of style {config.get('style')!r}, not {cls.name!r}")  # type: ignore[attr-defined]
        stored = config.get("model") or {}
        bad = contradictions(plan.explicit, stored)
        if bad:
            raise LoadError(f"--model-set contradicts the checkpoint {path}: {'; '.join(bad)} (trained with that model config)")
        plan.model_config = {**stored, **plan.explicit}
    plan.weights = path
    plan.random_weights = False


# -- building ------------------------------------------------------------------------------------------------
def load_style(engine: Engine, plan: LoadPlan) -> Style:
    """The style the plan describes; its modules are only built when a graph runs on torch."""
    style: Style = plan.style_cls(plan.model_config or None, variant=plan.variant)
    for w in plan.warnings:
        log.warning(w)
    if plan.weights is not None and plan.torch_graphs(engine):
        style.load_weights(plan.weights)
        actual = style.model_config.model_dump(mode="json")
        bad = contradictions(plan.explicit, actual)
        if bad:
            raise LoadError(f"--model-set contradicts the weights {plan.weights}: {'; '.join(bad)}")
    elif plan.manifest is not None and plan.manifest.weights:
        # Exported runtimes: the artifacts carry the weights; remember which, for reports and checks.
        style.weights_sha256 = plan.manifest.weights.get("sha256")
    return style

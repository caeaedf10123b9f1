"""Models in the BentoML model store and Bentos built from them.

* :func:`save_model` stores an exported artifact folder (``manifest.json``, ONNX files and external data,
  TensorRT engines) under ``artifacts/`` and, when the style was loaded from trained weights, the weights
  as an engine checkpoint (safetensors) under ``weights/`` (the torch runtime needs them), tagged
  ``styleengine-<style>-<variant>``.  Labels and metadata record the style, variant, manifest hash,
  precision and whether the weights are random.
* :func:`build_bento` builds a Bento for any style and runtime: the generic service
  (``styleengine.serving.service``) with the build arguments baked in (``args``), the model declared by the
  service (so it is packaged), and the Python environment: third-party requirements without CUDA wheels for
  the CPU runtimes, and wheels of ``styleengine`` and the style's distribution built offline from their
  local sources (``pip wheel --no-deps --no-build-isolation --no-index``), so the Bento is self-contained
  without a package index holding them.  ``lock_packages`` is off: building needs no network.

BentoML's usage tracking is switched off (``BENTOML_DO_NOT_TRACK``) before BentoML is imported here.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

from .args import ServeArgs

log = logging.getLogger("styleengine.serving")

SERVICE = "styleengine.serving.service:StyleAPI"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"

#: Third-party requirements of a Bento, per runtime family.  CPU Bentos take torch from the CPU index.
BASE_PACKAGES = [
    "torch==2.13.0", "numpy>=1.26", "pluggy>=1.5", "click>=8.1", "pydantic>=2.7", "pyyaml>=6", "safetensors>=0.4",
    "huggingface-hub>=0.24", "pillow>=10.3", "tqdm>=4.66", "onnx>=1.16", "onnxscript>=0.2", "accelerate>=0.33",
    "psutil>=5.9", "httpx>=0.27",
]
RUNTIME_PACKAGES = {
    "torch": ["onnxruntime>=1.18"],
    "onnxruntime": ["onnxruntime>=1.18"],
    "onnxruntime-gpu": ["onnxruntime-gpu>=1.18"],
    "tensorrt": ["tensorrt>=10", "onnxruntime-gpu>=1.18"],
}


def no_tracking() -> None:
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")


def _tag_name(raw: str) -> str:
    return re.sub(r"[^a-z0-9_.-]+", "-", raw.lower()).strip("-.")[:63]


def model_name(style: str, variant: str) -> str:
    """``styleengine-<style>-<variant>``, made a valid BentoML tag name."""
    return _tag_name(f"styleengine-{style}-{variant}")


def bento_name(style: str) -> str:
    return _tag_name(f"styleengine-{style}")


def save_model(style: Any, artifacts: str | Path | None = None, *, name: str | None = None) -> str:
    """Store what serving ``style`` needs as a BentoML model; returns the tag.

    ``artifacts`` (an ``engine export`` folder, checked against its manifest first) go under
    ``artifacts/``; the style's trained weights, when it has any loaded, under ``weights/`` as an engine
    checkpoint (the torch runtime needs them; exported runtimes do not).  A Bento then carries the model
    inside it: no path outside the Bento is ever recorded."""
    no_tracking()
    import bentoml

    from ..export.manifest import Manifest
    from ..weights import save_checkpoint

    manifest = None
    if artifacts is not None:
        artifacts = Path(artifacts)
        manifest = Manifest.load(artifacts)
        problems = manifest.verify_files(artifacts)
        if problems:
            raise ValueError(f"{artifacts}: cannot store a damaged export: {'; '.join(problems)}")
        if manifest.style != style.name or manifest.variant != style.variant:
            raise ValueError(f"{artifacts} holds {manifest.style}/{manifest.variant}, not {style.name}/{style.variant}")
    has_weights = style.weights_path is not None
    random_weights = (not manifest.weights) if manifest is not None else (not has_weights and style.needs_weights)
    labels = {"framework": "styleengine", "style": style.name, "variant": style.variant}
    meta = {
        "style": style.name,
        "variant": style.variant,
        "model_config": style.model_config.model_dump(mode="json"),
        "manifest_sha256": manifest.sha256(artifacts) if manifest is not None else "",
        "precision": manifest.precision if manifest is not None else "",
        "graphs": sorted(manifest.graphs) if manifest is not None else [],
        "engines": sorted(n for n, g in manifest.graphs.items() if g.engine is not None) if manifest is not None else [],
        "random_weights": random_weights,
        "weights_sha256": style.weights_sha256 or "",
    }
    with bentoml.models.create(name or model_name(style.name, style.variant), labels=labels, metadata=meta) as model:
        root = Path(model.path)
        if artifacts is not None:
            shutil.copytree(artifacts, root / "artifacts", ignore=shutil.ignore_patterns("*.tmp", ".*"))
        if has_weights:
            save_checkpoint(
                root / "weights", style.state_dict(), style=style.name, model_config=style.model_config.model_dump(mode="json"),
                meta={"source": str(style.weights_path), "sha256": style.weights_sha256},
            )
        (root / "styleengine.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return str(model.tag)


# -- Bentos ------------------------------------------------------------------------------------------------
def local_source(dist_name: str) -> Path | None:
    """The source folder of a distribution installed from a local path (editable or not), else None."""
    try:
        dist = metadata.distribution(dist_name)
    except metadata.PackageNotFoundError:
        return None
    raw = dist.read_text("direct_url.json")
    if not raw:
        return None
    url = json.loads(raw).get("url", "")
    if not url.startswith("file://"):
        return None
    path = Path(url[len("file://") :])
    return path if (path / "pyproject.toml").is_file() or (path / "setup.py").is_file() else None


_SOURCE_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "venv", "build", "dist", "__pycache__", "*.egg-info", ".pytest_cache", ".cache", "node_modules",
    "runs", "outputs", "demo-output", "*.onnx", "*.onnx.data", "*.plan", "*.safetensors", "*.pth", "*.ckpt",
)


def build_wheels(dists: list[str], out_dir: Path) -> tuple[list[Path], list[str]]:
    """Wheels of locally installed distributions (built offline), and requirement pins for the others."""
    wheels: list[Path] = []
    pins: list[str] = []
    for name in dict.fromkeys(dists):
        src = local_source(name)
        if src is None:
            try:
                pins.append(f"{name}=={metadata.version(name)}")
            except metadata.PackageNotFoundError:
                log.warning("distribution %s is not installed; the Bento will not contain it", name)
            continue
        before = set(out_dir.glob("*.whl"))
        with tempfile.TemporaryDirectory(prefix="styleengine-wheel-") as tmp:
            # Build from a clean copy: setuptools writes build/ and *.egg-info into the source tree, and a
            # stale build/lib would leak deleted modules into the wheel.
            copy = Path(tmp) / "src"
            shutil.copytree(src, copy, ignore=_SOURCE_IGNORE)
            cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", str(out_dir), str(copy)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"building a wheel of {name} from {src} failed:\n{proc.stderr.strip()[-2000:]}")
        wheels += sorted(set(out_dir.glob("*.whl")) - before)
    return wheels, pins


def python_options(runtime: str, wheels: list[str], pins: list[str]) -> dict[str, Any]:
    gpu = runtime in ("tensorrt", "onnxruntime-gpu")
    packages = [*BASE_PACKAGES, *RUNTIME_PACKAGES.get(runtime, RUNTIME_PACKAGES["onnxruntime"]), *pins]
    options: dict[str, Any] = {"packages": packages, "lock_packages": False}
    if not gpu:
        options["extra_index_url"] = [TORCH_CPU_INDEX]
    if wheels:
        # BentoML packs python.wheels in its v1 Bento layout (install.sh installs env/python/wheels/*.whl);
        # it logs that it falls back to v1 for them.  Paths are relative to the build context.
        options["wheels"] = list(wheels)
    return options


def build_bento(args: ServeArgs, *, style_distribution: str | None = None, version: str | None = None, wheels: bool = True) -> str:
    """Build a Bento serving ``args.style`` on ``args.runtime`` with ``args.model``; returns its tag.

    The model tag is pinned to the exact version in the store, so the Bento's arguments name the model
    version it packages (``:latest`` would follow later exports on the serving machine)."""
    no_tracking()
    import bentoml

    if args.model:
        args = args.model_copy(update={"model": str(bentoml.models.get(args.model).tag)})

    with tempfile.TemporaryDirectory(prefix="styleengine-bento-") as tmp:
        ctx = Path(tmp)
        (ctx / "service.py").write_text(
            '"""Generated by `engine bento build`: the generic styleengine service (arguments in bento.yaml)."""\n'
            "from styleengine.serving.service import StyleAPI  # noqa: F401  (its runner service, in the split topology, is found through it)\n"
        )
        wheel_files: list[Path] = []
        pins: list[str] = []
        if wheels:
            (ctx / "wheels").mkdir()
            dists = ["styleengine"] + ([style_distribution] if style_distribution and style_distribution != "styleengine" else [])
            wheel_files, pins = build_wheels(dists, ctx / "wheels")
        with contextlib.chdir(ctx):  # BentoML resolves wheel paths against the working directory
            bento = bentoml.bentos.build(
                "service:StyleAPI",
                name=bento_name(args.style),
                version=version,
                description=f"styleengine: style {args.style} on {args.runtime} (generic service styleengine.serving.service)",
                labels={"framework": "styleengine", "style": args.style, "runtime": args.runtime},
                include=["service.py"],
                python=python_options(args.runtime, [str(w.relative_to(ctx)) for w in wheel_files], pins),
                args=args.as_bento_args(),
                build_ctx=str(ctx),
            )
    return str(bento.tag)

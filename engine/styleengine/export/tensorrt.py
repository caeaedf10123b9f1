"""TensorRT engine builds (the ``build_engine`` hook's default) and everything around them.

What is testable without TensorRT lives in plain functions: the optimisation profile from a spec's
Dims, the cache key, the equivalent ``trtexec`` command line, and the clear error when the
``tensorrt`` package is missing.  The build itself is the TensorRT 10 Python API: explicit-batch
network from the ONNX parser, one optimisation profile (min/opt/max from the Dims), fp16/bf16 builder
flags, a persistent timing cache, and an engine cache keyed by what determines the engine bytes
(ONNX sha256, profile, precision, TensorRT version, GPU and compute capability).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from ..io import atomic_write_bytes, sha256_file
from ..runtime.base import RuntimeUnavailableError
from ..spec import GraphSpec

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "TensorRT is not installed: on a CUDA machine, from a checkout run `make install-tensorrt` "
    "(or pip install the styleengine wheel with its `tensorrt` extra); or build the plan with the trtexec command "
    "`engine export --trt` prints and record it with `engine import-engine`"
)


def import_tensorrt() -> Any:
    try:
        import tensorrt as trt  # type: ignore[import-not-found]
    except Exception as exc:  # noqa: BLE001 - ImportError or a broken CUDA install
        raise RuntimeUnavailableError(f"{INSTALL_HINT} ({type(exc).__name__}: {exc})") from exc
    return trt


def tensorrt_available() -> tuple[bool, str]:
    try:
        trt = import_tensorrt()
    except RuntimeUnavailableError as exc:
        return False, str(exc)
    try:
        import torch

        if not torch.cuda.is_available():
            return False, f"tensorrt {trt.__version__} is installed but no CUDA device is visible"
    except Exception as exc:  # noqa: BLE001
        return False, f"cannot query CUDA: {exc}"
    return True, f"tensorrt {trt.__version__}"


def gpu_identity() -> tuple[str, str]:
    """(GPU name, compute capability) of the current CUDA device."""
    import torch

    if not torch.cuda.is_available():
        raise RuntimeUnavailableError("TensorRT engines need a CUDA device; none is visible")
    i = torch.cuda.current_device()
    major, minor = torch.cuda.get_device_capability(i)
    return torch.cuda.get_device_name(i), f"{major}.{minor}"


def profile_shapes(spec: GraphSpec) -> dict[str, list[list[int]]]:
    """The optimisation profile as JSON-friendly lists: input → [min, opt, max] shapes."""
    return {name: [list(s) for s in shapes] for name, shapes in spec.trt_profile().items()}


def cache_key(onnx_sha256: str, spec: GraphSpec, precision: str, trt_version: str, gpu: str, capability: str) -> str:
    blob = json.dumps(
        {
            "onnx": onnx_sha256,
            "profile": profile_shapes(spec),
            "precision": precision,
            "tensorrt": trt_version,
            "gpu": gpu,
            "cc": capability,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def default_cache_dir() -> Path:
    base = os.environ.get("STYLEENGINE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "styleengine")
    return Path(base) / "engines"


def trtexec_command(spec: GraphSpec, onnx_path: Path, engine_path: Path, precision: str, timing_cache: Path | None = None) -> list[str]:
    """The ``trtexec`` invocation that builds the same engine (printed when TensorRT is missing here)."""

    def fmt(i: int) -> str:
        return ",".join(f"{name}:{'x'.join(map(str, shapes[i]))}" for name, shapes in profile_shapes(spec).items())

    cmd = [
        "trtexec",
        f"--onnx={onnx_path}",
        f"--saveEngine={engine_path}",
        f"--minShapes={fmt(0)}",
        f"--optShapes={fmt(1)}",
        f"--maxShapes={fmt(2)}",
    ]
    if precision == "fp16":
        cmd.append("--fp16")
    elif precision == "bf16":
        cmd.append("--bf16")
    if timing_cache:
        cmd.append(f"--timingCacheFile={timing_cache}")
    return cmd


def build_engine(
    spec: GraphSpec,
    onnx_path: Path,
    engine_path: Path,
    *,
    precision: str = "fp16",
    timing_cache: Path | None = None,
    engine_cache: Path | None = None,
    workspace_bytes: int = 8 << 30,
) -> dict[str, Any]:
    """Build (or fetch from the engine cache) a serialised engine for ``spec``; returns its record."""
    trt = import_tensorrt()
    gpu, cc = gpu_identity()
    onnx_sha = sha256_file(onnx_path)
    key = cache_key(onnx_sha, spec, precision, trt.__version__, gpu, cc)
    record = {
        "precision": precision,
        "tensorrt": trt.__version__,
        "gpu": gpu,
        "compute_capability": cc,
        "cache_key": key,
        "profile": profile_shapes(spec),
    }
    cache_dir = engine_cache or default_cache_dir()
    cached = cache_dir / f"{key}.plan"
    if cached.is_file():
        log.info("graph %s: engine cache hit %s", spec.name, cached)
        tmp = engine_path.with_name(engine_path.name + ".tmp")
        shutil.copyfile(cached, tmp)
        os.replace(tmp, engine_path)
        return {**record, "cache_hit": True}

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"graph {spec.name}: TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if precision in ("fp16", "bf16"):
        flag = getattr(trt.BuilderFlag, precision.upper(), None)
        if flag is None:
            raise RuntimeError(
                f"TensorRT {trt.__version__} has no {precision.upper()} builder flag (weak typing removed); "
                "export the ONNX in that precision and build a strongly typed network"
            )
        config.set_flag(flag)
    profile = builder.create_optimization_profile()
    for name, (mn, opt, mx) in spec.trt_profile().items():
        profile.set_shape(name, mn, opt, mx)
    config.add_optimization_profile(profile)
    cache_bytes = timing_cache.read_bytes() if timing_cache and timing_cache.is_file() else b""
    tcache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(tcache, ignore_mismatch=False)

    log.info("graph %s: building TensorRT %s engine (this takes minutes)", spec.name, precision)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"graph {spec.name}: TensorRT engine build failed (see the TensorRT log above)")
    data = bytes(serialized)
    atomic_write_bytes(engine_path, data)
    if timing_cache:
        atomic_write_bytes(timing_cache, bytes(config.get_timing_cache().serialize()))
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(cached, data)
    except OSError as exc:
        log.warning("could not write the engine cache %s: %s", cached, exc)
    return {**record, "cache_hit": False}

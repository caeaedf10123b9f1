"""ONNX Runtime: CPU by default; CUDA and TensorRT execution providers where onnxruntime-gpu is installed.

The provider a session really runs on is read back from ``InferenceSession.get_providers()`` after
creation and reported as ``session.device``.  ORT silently falls back to the CPU provider when a GPU
provider fails to initialise; we never let that pass as a GPU run: asking for CUDA and getting CPU
raises :class:`RuntimeUnavailableError` (or, with ``extra={"allow_cpu_fallback": True}``, warns).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .base import ArtifactMismatchError, Runtime, RuntimeUnavailableError, Session, SessionOptions, check_inputs, onnx_for_precision

log = logging.getLogger(__name__)

GPU_HINT = "install the `gpu` extra instead of onnxruntime: pip uninstall -y onnxruntime && pip install 'styleengine[gpu]'"

_NP_OF_ORT = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(bool)": "bool",
    "tensor(double)": "float64",
}


def _import_ort() -> Any:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise RuntimeUnavailableError("onnxruntime is not installed: pip install 'styleengine[cpu]'") from exc
    return ort


def providers_for(device: str, requested: tuple[str, ...] | None, precision: str) -> list[Any]:
    """Execution providers (with options) to ask for, in order of preference."""
    if requested:
        names = list(requested)
    elif device.startswith("cuda"):
        names = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    else:
        names = ["CPUExecutionProvider"]
    dev_id = int(device.split(":")[1]) if device.startswith("cuda:") else 0
    out: list[Any] = []
    for n in names:
        if n == "CUDAExecutionProvider":
            out.append((n, {"device_id": dev_id}))
        elif n == "TensorrtExecutionProvider":
            out.append((n, {"device_id": dev_id, "trt_fp16_enable": precision == "fp16", "trt_engine_cache_enable": True}))
        else:
            out.append(n)
    return out


class OrtSession:
    runtime = "onnxruntime"

    def __init__(self, spec: Any, path: Path, options: SessionOptions | None = None) -> None:
        import numpy as np

        ort = _import_ort()
        options = options or SessionOptions()
        wanted = providers_for(options.device, options.providers, options.precision)
        wanted_names = [p[0] if isinstance(p, tuple) else p for p in wanted]
        available = ort.get_available_providers()
        gpu_wanted = [p for p in wanted_names if p != "CPUExecutionProvider"]
        missing = [p for p in gpu_wanted if p not in available]
        if gpu_wanted and len(missing) == len(gpu_wanted):
            msg = f"onnxruntime: {', '.join(missing)} not available in this build (has {available}); {GPU_HINT}"
            if not options.extra.get("allow_cpu_fallback"):
                raise RuntimeUnavailableError(msg)
            warnings.warn(msg + "; running on CPU", RuntimeWarning, stacklevel=2)
        if options.precision == "int8" and gpu_wanted:
            raise RuntimeUnavailableError("onnxruntime: the int8 artifact runs on the CPU execution provider only")
        if options.precision not in ("fp32", "int8") and "TensorrtExecutionProvider" not in wanted_names:
            raise RuntimeUnavailableError(
                f"onnxruntime runs the exported fp32 ONNX; precision {options.precision} needs the TensorRT "
                "execution provider or the tensorrt/torch runtimes"
            )
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        if options.threads:
            so.intra_op_num_threads = options.threads
        if options.extra.get("allow_spinning") is False:
            # Servers: idle ORT threads spinning for work burn the CPU that request parsing, encoding and the
            # next batch need (measured: the runner's CPU per request fell from ~72 to ~18 ms).
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
            so.add_session_config_entry("session.inter_op.allow_spinning", "0")
        try:
            self._sess = ort.InferenceSession(str(path), sess_options=so, providers=[p for p in wanted if (p[0] if isinstance(p, tuple) else p) in available])
        except Exception as exc:  # ORT's pybind errors (InvalidProtobuf, Fail, InvalidGraph ...) carry multi-line text
            reason = " ".join(str(exc).split())
            raise ArtifactMismatchError(f"{path}: ONNX Runtime cannot load this graph ({type(exc).__name__}: {reason[:300]})") from None
        used = self._sess.get_providers()
        self.providers = used
        self.graph = spec.name
        self.input_names = [i.name for i in self._sess.get_inputs()]
        self.output_names = [o.name for o in self._sess.get_outputs()]
        if gpu_wanted and used[0] == "CPUExecutionProvider":
            msg = f"onnxruntime: asked for {gpu_wanted} but the session runs on {used[0]} (GPU provider failed to initialise)"
            if not options.extra.get("allow_cpu_fallback"):
                raise RuntimeUnavailableError(msg)
            warnings.warn(msg, RuntimeWarning, stacklevel=2)
        self.device = used[0]
        self.precision = options.precision
        self._on_cuda = used[0] in ("CUDAExecutionProvider", "TensorrtExecutionProvider")
        self._dtypes = {i.name: np.dtype(_NP_OF_ORT.get(i.type, "float32")) for i in self._sess.get_inputs()}
        self._np = np

    def run(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        import torch

        check_inputs(self.graph, self.input_names, inputs)
        if self._on_cuda:
            return self._run_bound(inputs)
        feeds = {}
        for n in self.input_names:
            v = inputs[n]
            arr = v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else self._np.asarray(v)
            feeds[n] = self._np.ascontiguousarray(arr.astype(self._dtypes[n], copy=False))
        outs = self._sess.run(self.output_names, feeds)
        return {n: torch.from_numpy(self._np.asarray(o)) for n, o in zip(self.output_names, outs, strict=True)}

    def _run_bound(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """CUDA: bind torch device memory directly (no host round trip); ORT allocates outputs on device."""
        import torch

        binding = self._sess.io_binding()
        keep = []
        for n in self.input_names:
            t = torch.as_tensor(inputs[n]).to("cuda").contiguous()
            t = t.to(getattr(torch, str(self._dtypes[n]))) if t.dtype != getattr(torch, str(self._dtypes[n])) else t
            keep.append(t)
            binding.bind_input(n, "cuda", t.device.index or 0, self._dtypes[n], tuple(t.shape), t.data_ptr())
        for n in self.output_names:
            binding.bind_output(n, "cuda")
        self._sess.run_with_iobinding(binding)
        outs = binding.get_outputs()
        return {n: torch.from_dlpack(o._ortvalue.to_dlpack()) if hasattr(o, "_ortvalue") else torch.from_numpy(o.numpy()) for n, o in zip(self.output_names, outs, strict=True)}


class OnnxRuntimeRuntime(Runtime):
    name = "onnxruntime"
    needs = "onnx"
    description = "ONNX Runtime (CPU; CUDA / TensorRT execution providers with onnxruntime-gpu)"

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        try:
            ort = _import_ort()
        except RuntimeUnavailableError as exc:
            return False, str(exc)
        return True, f"onnxruntime {ort.__version__}: {', '.join(ort.get_available_providers())}"

    @classmethod
    def devices(cls) -> list[str]:
        try:
            ort = _import_ort()
        except RuntimeUnavailableError:
            return []
        devs = ["cpu"]
        if "CUDAExecutionProvider" in ort.get_available_providers():
            import torch

            devs += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        return devs

    def load(self, spec: Any, options: SessionOptions, *, artifact: Path | None = None, record: Any = None, **_: Any) -> Session:
        if artifact is None:
            raise RuntimeUnavailableError(f"graph {spec.name}: no ONNX file to load (run `engine export` first)")
        # precision int8: the graph's own lossy artifact (`engine export --int8`), recorded in the manifest
        return OrtSession(spec, onnx_for_precision(spec.name, Path(artifact), record, options.precision), options)

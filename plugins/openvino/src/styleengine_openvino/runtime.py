"""The OpenVINO runtime: an export folder's ONNX graph compiled for the CPU.

* Loads the same ``GRAPH.onnx`` ONNX Runtime does (or, with precision ``int8``, the graph's recorded
  int8 artifact); the folder's files are checked against the manifest's sha256 before anything is read
  (``open_sessions`` does it for the CLI, server and bench; :meth:`OpenVINORuntime.load` does it again
  when given the manifest, so a direct caller cannot skip it).
* Input shapes are bounded from the GraphSpec's Dims (``Dimension(min, max)`` per symbolic axis), so the
  compiled model accepts exactly what the export was validated for.
* ``fp32`` and ``bf16`` are OpenVINO's ``INFERENCE_PRECISION_HINT``.  bf16 is offered only where the CPU
  plugin lists ``BF16`` in ``OPTIMIZATION_CAPABILITIES`` (AVX-512 BF16 / AMX); the precision the compiled
  model really uses is read back and a mismatch is an error, never a silent fp32 run.
* ``session.device`` reports what was read back: ``CPU(<full device name>, <inference precision>)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from styleengine.runtime.base import (
    ArtifactMismatchError,
    Runtime,
    RuntimeUnavailableError,
    Session,
    SessionOptions,
    check_inputs,
    onnx_for_precision,
)

INSTALL_HINT = "pip install styleengine-openvino (pulls the `openvino` wheel)"
#: precision asked for → OpenVINO element type name of INFERENCE_PRECISION_HINT.
_HINTS = {"fp32": "f32", "bf16": "bf16"}
_CORE: Any = None


def _import_ov() -> Any:
    try:
        import openvino as ov
    except ImportError as exc:
        raise RuntimeUnavailableError(f"openvino is not installed: {INSTALL_HINT}") from exc
    return ov


def core() -> Any:
    """One ``ov.Core`` per process (it owns the CPU plugin and its thread pool)."""
    global _CORE
    if _CORE is None:
        _CORE = _import_ov().Core()
    return _CORE


def cpu_capabilities() -> list[str]:
    return [str(c) for c in core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")]


def precision_available(precision: str) -> tuple[bool, str]:
    """Whether this CPU runs ``precision`` natively in OpenVINO, and why not."""
    if precision in ("fp32", "int8"):
        return True, "ok"
    if precision == "bf16":
        caps = cpu_capabilities()
        if "BF16" in caps:
            return True, "ok"
        return False, f"openvino: this CPU has no native bf16 (CPU plugin capabilities: {', '.join(caps)}); use fp32 or int8"
    return False, f"openvino: precision {precision} is not supported on the CPU (fp32, bf16 where the CPU has it, int8)"


def bounded_shapes(ov: Any, spec: Any) -> dict[str, Any]:
    """Input name → ``PartialShape`` with each symbolic axis bounded to the GraphSpec Dim's [min, max]."""
    out = {}
    for t in spec.inputs:
        dims = []
        for a in t.shape:
            if isinstance(a, int):
                dims.append(ov.Dimension(a))
            else:  # Dim or Derived: both answer .at(point)
                dims.append(ov.Dimension(a.at("min"), a.at("max")))
        out[t.name] = ov.PartialShape(dims)
    return out


def _type_name(value: Any) -> str:
    """``<Type: 'float32'>`` / ``Type.f32`` / ``"f32"`` → ``"f32"``-style short names."""
    name = getattr(value, "get_type_name", lambda: str(value))()
    return {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}.get(name, name)


class OpenVINOSession:
    runtime = "openvino"

    def __init__(self, spec: Any, path: Path, options: SessionOptions | None = None) -> None:
        import numpy as np

        ov = _import_ov()
        options = options or SessionOptions()
        if options.device not in ("cpu", "CPU"):
            raise RuntimeUnavailableError(f"openvino: device {options.device!r} is not supported by this plugin (CPU only)")
        ok, why = precision_available(options.precision)
        if not ok:
            raise RuntimeUnavailableError(why)
        c = core()
        try:
            model = c.read_model(str(path))
        except Exception as exc:  # OpenVINO's frontend errors are long, multi-line C++ texts
            reason = " ".join(str(exc).split())
            raise ArtifactMismatchError(f"{path}: OpenVINO cannot read this graph ({type(exc).__name__}: {reason[:300]})") from None
        names = [p.get_any_name() for p in model.inputs]
        if sorted(names) != sorted(spec.input_names):
            raise ArtifactMismatchError(f"{path}: graph inputs {names} differ from the manifest's {spec.input_names}")
        model.reshape(bounded_shapes(ov, spec))
        config: dict[str, Any] = {"PERFORMANCE_HINT": options.extra.get("performance_hint", "LATENCY")}
        if options.precision in _HINTS:
            config["INFERENCE_PRECISION_HINT"] = _HINTS[options.precision]
        if options.threads:
            config["INFERENCE_NUM_THREADS"] = int(options.threads)
        try:
            self._compiled = c.compile_model(model, "CPU", config)
        except Exception as exc:
            reason = " ".join(str(exc).split())
            raise ArtifactMismatchError(f"{path}: OpenVINO cannot compile this graph for the CPU ({reason[:300]})") from None
        #: Read back, never assumed: the inference precision the CPU plugin really uses.
        self.inference_precision = _type_name(self._compiled.get_property("INFERENCE_PRECISION_HINT"))
        want = _HINTS.get(options.precision)
        if want and self.inference_precision != want:
            raise RuntimeUnavailableError(
                f"openvino: asked for {options.precision} but the compiled model runs {self.inference_precision}"
            )
        self.precision = options.precision
        self.device_name = str(c.get_property("CPU", "FULL_DEVICE_NAME"))
        self.threads = int(self._compiled.get_property("INFERENCE_NUM_THREADS"))
        self.device = f"CPU({self.device_name}, {self.inference_precision}" + (", int8 graph)" if options.precision == "int8" else ")")
        self.graph = spec.name
        self.input_names = list(spec.input_names)
        self.output_names = list(spec.output_names)
        out_ports = {p.get_any_name(): p for p in self._compiled.outputs}
        missing = [n for n in self.output_names if n not in out_ports]
        if missing:
            raise ArtifactMismatchError(f"{path}: graph has no outputs {missing} (has {sorted(out_ports)})")
        self._out_ports = [out_ports[n] for n in self.output_names]
        self._dtypes = {t.name: np.dtype(t.dtype if t.dtype != "bfloat16" else "float32") for t in spec.inputs}
        self._request = self._compiled.create_infer_request()
        self._np = np

    def run(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        import torch

        np = self._np
        check_inputs(self.graph, self.input_names, inputs)
        feeds = {}
        for n in self.input_names:
            v = inputs[n]
            arr = v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
            feeds[n] = np.ascontiguousarray(arr.astype(self._dtypes[n], copy=False))
        res = self._request.infer(feeds)
        # copy: the request's output buffers are reused by the next call
        return {n: torch.from_numpy(np.array(res[p], copy=True)) for n, p in zip(self.output_names, self._out_ports, strict=True)}


class OpenVINORuntime(Runtime):
    name = "openvino"
    needs = "onnx"
    description = "OpenVINO (CPU; fp32, bf16 where the CPU has it, int8 artifacts) from the exported ONNX"

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        try:
            ov = _import_ov()
            caps = cpu_capabilities()
        except RuntimeUnavailableError as exc:
            return False, str(exc)
        except Exception as exc:  # noqa: BLE001 - must never raise
            return False, f"openvino cannot use the CPU: {type(exc).__name__}: {exc}"
        bf16 = "bf16" if "BF16" in caps else "no bf16 on this CPU"
        return True, f"openvino {ov.__version__}: CPU ({', '.join(caps)}; {bf16})"

    @classmethod
    def devices(cls) -> list[str]:
        ok, _ = cls.availability()
        return ["cpu"] if ok else []

    @classmethod
    def precisions(cls) -> list[str]:
        ok, _ = cls.availability()
        return [p for p in ("fp32", "bf16", "int8") if ok and precision_available(p)[0]]

    def load(self, spec: Any, options: SessionOptions, *, artifact: Path | None = None, record: Any = None,
             manifest: Any = None, **_: Any) -> Session:
        if artifact is None:
            raise RuntimeUnavailableError(f"graph {spec.name}: no ONNX file to load (run `engine export` first)")
        artifact = Path(artifact)
        if manifest is not None:
            manifest.check_files(artifact.parent, [spec.name])
        return OpenVINOSession(spec, onnx_for_precision(spec.name, artifact, record, options.precision), options)

"""TensorRT runtime: deserialise an engine, check it against this machine, bind shapes per call.

At load the engine's manifest record is compared with the installed TensorRT version and the GPU's
compute capability; a mismatch is refused with :class:`ArtifactMismatchError` (an engine is only
valid for the TensorRT version and GPU architecture that built it).  Each ``run`` sets the input
shapes (dynamic within the optimisation profile), allocates outputs as torch CUDA tensors, binds
addresses and enqueues on the current torch CUDA stream.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..export.plan_import import check_profile_covers
from ..export.tensorrt import gpu_identity, import_tensorrt, tensorrt_available
from .base import ArtifactMismatchError, Runtime, Session, SessionOptions, check_inputs


def check_engine_record(record: Any, trt_version: str, capability: str) -> None:
    """Refuse an engine built for another TensorRT version or GPU architecture."""
    if record is None or record.engine is None:
        raise ArtifactMismatchError("no TensorRT engine recorded in the manifest for this graph (export with --trt)")
    eng = record.engine
    if eng.tensorrt != trt_version:
        raise ArtifactMismatchError(
            f"graph {record.name}: engine built with TensorRT {eng.tensorrt}, this machine has {trt_version}; rebuild it"
        )
    if eng.compute_capability != capability:
        raise ArtifactMismatchError(
            f"graph {record.name}: engine built for compute capability {eng.compute_capability} ({eng.gpu}), "
            f"this GPU is {capability}; rebuild it on this machine"
        )


class TrtSession:
    runtime = "tensorrt"

    def __init__(self, spec: Any, engine_path: Path, record: Any, options: SessionOptions) -> None:
        import torch

        trt = import_tensorrt()
        name, cc = gpu_identity()
        check_engine_record(record, trt.__version__, cc)
        self.graph = spec.name
        self.input_names = spec.input_names
        self.output_names = spec.output_names
        self.device = f"cuda:{torch.cuda.current_device()}({name})"
        self._torch = torch
        self._trt = trt
        logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(logger)
        self.engine = self._runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise ArtifactMismatchError(f"graph {spec.name}: TensorRT could not deserialise {engine_path}")
        # The plan's own profile, read back: an imported (trtexec-built) plan is held to the exported dims too.
        check_profile_covers(spec.name, {n: [list(s) for s in self.engine.get_tensor_profile_shape(n, 0)] for n in spec.input_names}, spec)
        self.context = self.engine.create_execution_context()

    def _dtype(self, name: str) -> Any:
        torch, trt = self._torch, self._trt
        table = {
            trt.float32: torch.float32,
            trt.float16: torch.float16,
            trt.int32: torch.int32,
            trt.int64: torch.int64,
            trt.bool: torch.bool,
        }
        if hasattr(trt, "bfloat16"):
            table[trt.bfloat16] = torch.bfloat16
        return table[self.engine.get_tensor_dtype(name)]

    def run(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        torch = self._torch
        check_inputs(self.graph, self.input_names, inputs)
        keep = []
        for n in self.input_names:
            t = torch.as_tensor(inputs[n]).to("cuda", self._dtype(n)).contiguous()
            keep.append(t)
            if not self.context.set_input_shape(n, tuple(t.shape)):
                raise ValueError(f"graph {self.graph}: input {n} shape {tuple(t.shape)} is outside the engine's profile")
            self.context.set_tensor_address(n, t.data_ptr())
        outs = {}
        for n in self.output_names:
            shape = tuple(self.context.get_tensor_shape(n))
            out = torch.empty(shape, dtype=self._dtype(n), device="cuda")
            self.context.set_tensor_address(n, out.data_ptr())
            outs[n] = out
        stream = torch.cuda.current_stream()
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError(f"graph {self.graph}: TensorRT execution failed")
        stream.synchronize()
        return {k: (v.float() if v.is_floating_point() else v) for k, v in outs.items()}


class TensorRTRuntime(Runtime):
    name = "tensorrt"
    needs = "engine"
    description = "NVIDIA TensorRT engines (CUDA; fp16/bf16), built by `engine export --trt`"

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        return tensorrt_available()

    @classmethod
    def devices(cls) -> list[str]:
        ok, _ = tensorrt_available()
        return ["cuda:0"] if ok else []

    def load(self, spec: Any, options: SessionOptions, *, artifact: Path | None = None, record: Any = None, **_: Any) -> Session:
        if artifact is None:
            raise ArtifactMismatchError(f"graph {spec.name}: no engine file to load")
        return TrtSession(spec, artifact, record, options)

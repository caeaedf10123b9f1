"""torch eager runtime: runs a GraphSpec's module directly (CPU, or CUDA with fp16/bf16)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .base import Runtime, RuntimeUnavailableError, Session, SessionOptions, check_inputs

_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def outputs_as_dict(graph: str, names: list[str], out: Any) -> dict[str, Any]:
    """Normalise a module's return value (tensor, tuple/list, or dict) to {output name: tensor}."""
    if isinstance(out, Mapping):
        missing = [n for n in names if n not in out]
        if missing:
            raise KeyError(f"graph {graph}: module did not return outputs {missing}")
        return {n: out[n] for n in names}
    if isinstance(out, tuple | list):
        if len(out) != len(names):
            raise ValueError(f"graph {graph}: module returned {len(out)} outputs, spec declares {names}")
        return dict(zip(names, out, strict=True))
    if len(names) != 1:
        raise ValueError(f"graph {graph}: module returned one tensor, spec declares {names}")
    return {names[0]: out}


class TorchSession:
    runtime = "torch"

    def __init__(self, spec: Any, options: SessionOptions) -> None:
        import torch

        if spec.module is None:
            raise RuntimeUnavailableError(f"graph {spec.name}: no torch module to run (the style built none)")
        self.graph = spec.name
        self.input_names = spec.input_names
        self.output_names = spec.output_names
        dev = torch.device(options.device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeUnavailableError(f"torch: device {options.device!r} requested but CUDA is not available")
        if options.precision == "fp16" and dev.type == "cpu":
            raise RuntimeUnavailableError("torch: fp16 on CPU is not supported; use fp32 or bf16 on CPU, or a CUDA device")
        self._dtype = getattr(torch, _DTYPES[options.precision])
        module = spec.module
        if options.precision != "fp32":
            # Never mutate the style's fp32 module: other sessions (and parity checks) share it.
            module = copy.deepcopy(module).to(self._dtype)
        self.module = module.to(dev)
        self._torch = torch
        self._dev = dev
        self.device = str(dev) if dev.type == "cpu" else f"{dev}({torch.cuda.get_device_name(dev)})"
        self.precision = options.precision

    def run(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        torch = self._torch
        check_inputs(self.graph, self.input_names, inputs)
        feed = {}
        for n in self.input_names:
            t = torch.as_tensor(inputs[n]).to(self._dev)
            feed[n] = t.to(self._dtype) if t.is_floating_point() else t
        with torch.inference_mode():
            out = outputs_as_dict(self.graph, self.output_names, self.module(**feed))
        return {k: (v.float() if v.is_floating_point() else v) for k, v in out.items()}


class TorchRuntime(Runtime):
    name = "torch"
    needs = "module"
    description = "PyTorch eager (CPU; CUDA with fp16/bf16 where available)"

    @classmethod
    def devices(cls) -> list[str]:
        import torch

        return ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]

    def load(self, spec: Any, options: SessionOptions, *, artifact: Path | None = None, **_: Any) -> Session:
        return TorchSession(spec, options)

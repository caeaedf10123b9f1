"""torch eager runtime: runs a GraphSpec's module directly (CPU, or CUDA with fp16/bf16)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .base import Runtime, RuntimeUnavailableError, Session, SessionOptions, check_inputs

_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def cpu_has_bf16() -> tuple[bool, str]:
    """Native bf16 on this CPU (AVX-512 BF16 or AMX): without it oneDNN emulates bf16 and it is slower than fp32."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = next((line.split(":", 1)[1].split() for line in fh if line.startswith(("flags", "Features"))), [])
    except OSError:
        flags = []
    found = [f for f in ("avx512_bf16", "amx_bf16") if f in flags]
    if found:
        return True, ", ".join(found)
    return False, "this CPU has no native bf16 (no avx512_bf16 / amx_bf16 in /proc/cpuinfo)"


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
        if options.precision not in _DTYPES:
            raise RuntimeUnavailableError(f"torch: precision {options.precision} is not supported (fp32, bf16, fp16 on CUDA)")
        self._autocast = dev.type == "cpu" and options.precision == "bf16"
        if self._autocast:
            # CPU bf16: autocast over the fp32 module (convolutions and matmuls in bf16, norms stay fp32), only
            # where the CPU has native bf16 unless the caller accepts the emulated (slower) kind.
            ok, why = cpu_has_bf16()
            if not ok and not options.extra.get("allow_emulated_bf16"):
                raise RuntimeUnavailableError(f"torch: bf16 on CPU: {why}; use fp32 (or extra allow_emulated_bf16)")
        self._dtype = torch.float32 if self._autocast else getattr(torch, _DTYPES[options.precision])
        module = spec.module
        if options.precision != "fp32" and not self._autocast:
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
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self._autocast):
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

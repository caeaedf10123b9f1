"""Sessions for the loop outside a runtime: training-time sampling on the training modules, and where the
loop's tensors should live for a set of Sessions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch


class DirectSession:
    """A Session over a graph module in a given dtype, without copying it: validation images and class-image
    generation during training run on the very modules being trained (no export pinning, no deep copy)."""

    runtime = "torch"

    def __init__(self, spec: Any, device: torch.device | str, dtype: torch.dtype = torch.float32) -> None:
        self.graph, self.module, self.dtype = spec.name, spec.module, dtype
        self.input_names, self.output_names = spec.input_names, spec.output_names
        self._dev = torch.device(device)
        self.device = str(self._dev)

    def run(self, inputs: Any) -> dict[str, torch.Tensor]:
        from ..runtime.torch import outputs_as_dict

        feeds = {k: (v.to(self._dev, self.dtype) if v.is_floating_point() else v.to(self._dev)) for k, v in inputs.items()}
        with torch.no_grad(), torch.autocast(self._dev.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
            out = outputs_as_dict(self.graph, self.output_names, self.module(**feeds))
        return {k: v.float() for k, v in out.items()}


def direct_sessions(specs: Any, device: torch.device | str, dtype: torch.dtype = torch.float32) -> dict[str, DirectSession]:
    return {s.name: DirectSession(s, device, dtype) for s in specs}


def loop_device(sessions: Mapping[str, Any]) -> str:
    """Where the loop's tensors live: the UNet's CUDA device when it runs on one (no host round trips)."""
    s = sessions.get("unet")
    dev = str(getattr(s, "device", "cpu"))
    if dev.startswith("cuda"):
        return dev.split("(")[0]
    if dev in ("CUDAExecutionProvider", "TensorrtExecutionProvider"):
        return "cuda"
    return "cpu"

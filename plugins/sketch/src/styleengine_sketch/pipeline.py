"""The sketch pipeline over a Session (torch, ONNX Runtime or TensorRT alike).

Images are fitted to the graph's range (resized only when a side is outside it), stacked by size up to
the batch Dim's maximum, run once per stack; the exponent ``gamma`` is applied to the graph's output and
each image is restored to its request's size.  The filter is per pixel neighbourhood, so a batch never
changes a result.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch

from styleengine.preprocess import fit, from_tensor, restore
from styleengine.spec import Dim
from styleengine.style import InputContract, StyleRequest, StyleResult

from .config import Config


def run(session: Any, batch: Sequence[StyleRequest], cfg: Config, contract: InputContract, bdim: Dim, hdim: Dim, wdim: Dim) -> list[StyleResult]:
    dims = getattr(getattr(session, "spec", None), "dims", None) or {}
    bdim, hdim, wdim = dims.get("batch", bdim), dims.get("height", hdim), dims.get("width", wdim)
    fitted = [fit(req.image("image"), contract, hdim, wdim) for req in batch]
    groups: dict[tuple[int, int], list[int]] = {}
    for i, f in enumerate(fitted):
        groups.setdefault(tuple(f.tensor.shape[-2:]), []).append(i)
    outputs: dict[int, torch.Tensor] = {}
    run_ms: dict[int, float] = {}
    for members in groups.values():
        for start in range(0, len(members), bdim.max):
            chunk = members[start : start + bdim.max]
            t0 = time.perf_counter()
            out = session.run({"image": torch.cat([fitted[i].tensor for i in chunk])})["dodge"].float().cpu()
            elapsed = (time.perf_counter() - t0) * 1000
            out = out.clamp(0.0, 1.0) ** cfg.gamma
            for j, i in enumerate(chunk):
                outputs[i], run_ms[i] = out[j : j + 1], elapsed
    return [
        StyleResult(from_tensor(restore(outputs[i], f), contract.value_range), seed=req.seed, timings={"filter_ms": run_ms[i]},
                    info={"runtime": getattr(session, "runtime", "?")})
        for i, (req, f) in enumerate(zip(batch, fitted, strict=True))
    ]

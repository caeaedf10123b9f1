"""The inference pipeline, written once over Sessions: the same code runs on torch, ONNX Runtime or TensorRT.

For each request: exposure (per request), ``fit`` to a size the graph takes (pad up to the size multiple),
one graph call per stack of same-size images (up to the batch Dim's max), the ``strength`` blend, and
``restore`` back to the request's size.  Nothing mixes requests, so a batch equals its single runs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch

from styleengine import InputContract, StyleRequest, StyleResult
from styleengine.preprocess import fit, from_tensor, restore
from styleengine.spec import Dim

from .config import Config


def run(session: Any, batch: Sequence[StyleRequest], cfg: Config, contract: InputContract, dims: dict[str, Dim]) -> list[StyleResult]:
    # An exported session carries the dims it was exported with (an export profile may widen them).
    dims = {**dims, **(getattr(getattr(session, "spec", None), "dims", None) or {})}
    gain = 2.0**cfg.exposure
    fitted = []
    for req in batch:
        image = (req.image("image") * gain).clip(0.0, 1.0)
        fitted.append(fit(image, contract, dims["height"], dims["width"]))
    groups: dict[tuple[int, int], list[int]] = {}
    for i, f in enumerate(fitted):
        groups.setdefault(tuple(f.tensor.shape[-2:]), []).append(i)
    graded: dict[int, torch.Tensor] = {}
    elapsed: dict[int, float] = {}
    for members in groups.values():
        for start in range(0, len(members), dims["batch"].max):
            chunk = members[start : start + dims["batch"].max]
            t0 = time.perf_counter()
            out = session.run({"image": torch.cat([fitted[i].tensor for i in chunk])})["graded"].float().cpu()
            ms = (time.perf_counter() - t0) * 1000
            for j, i in enumerate(chunk):
                graded[i], elapsed[i] = out[j : j + 1], ms
    results = []
    for i, (req, f) in enumerate(zip(batch, fitted, strict=True)):
        blended = cfg.strength * graded[i] + (1.0 - cfg.strength) * f.tensor
        results.append(StyleResult(from_tensor(restore(blended, f), contract.value_range), seed=req.seed,
                                   timings={"graph_ms": elapsed[i]}, info={"runtime": getattr(session, "runtime", "?")}))
    return results

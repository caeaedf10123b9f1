"""Parity validation: an exported graph against torch eager at the spec's min / opt / max shapes."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..spec import POINTS, GraphSpec, Tolerance

#: PSNR reported for identical outputs (JSON has no infinity).
PSNR_IDENTICAL = 200.0


def compare(ref: np.ndarray, got: np.ndarray, tol: Tolerance, value_range: tuple[float, float] | None = None) -> dict[str, Any]:
    """Error statistics of ``got`` against ``ref`` and whether they are within ``tol``."""
    ref = np.asarray(ref, dtype=np.float64)
    got = np.asarray(got, dtype=np.float64)
    if ref.shape != got.shape:
        return {"passed": False, "error": f"shape {got.shape} != reference {ref.shape}"}
    if not np.all(np.isfinite(got)):
        return {"passed": False, "error": "output contains NaN or Inf", "nonfinite": int((~np.isfinite(got)).sum())}
    diff = np.abs(ref - got)
    max_abs = float(diff.max()) if diff.size else 0.0
    scale = float(np.abs(ref).max()) if ref.size else 0.0
    mse = float(np.mean(diff**2)) if diff.size else 0.0
    peak = (value_range[1] - value_range[0]) if value_range else (float(ref.max() - ref.min()) if ref.size else 1.0)
    peak = peak or 1.0
    psnr = PSNR_IDENTICAL if mse == 0 else min(PSNR_IDENTICAL, 10 * math.log10(peak**2 / mse))
    within = bool(np.all(diff <= tol.atol + tol.rtol * np.abs(ref)))
    passed = within and (tol.psnr is None or psnr >= tol.psnr)
    return {
        "max_abs": max_abs,
        "max_rel": max_abs / scale if scale else 0.0,
        "mean_abs": float(diff.mean()) if diff.size else 0.0,
        "psnr": round(psnr, 3),
        "within_tolerance": within,
        "passed": passed,
    }


def validate_graph(
    spec: GraphSpec,
    reference: Any,
    candidate: Any,
    *,
    points: tuple[str, ...] = POINTS,
    seed: int = 0,
) -> dict[str, Any]:
    """Run ``reference`` and ``candidate`` sessions on the same inputs at each point.

    Returns ``{point: {"shapes": ..., "outputs": {name: stats}, "passed": bool}, "passed": bool}``.
    """
    import torch

    result: dict[str, Any] = {}
    all_ok = True
    for i, point in enumerate(points):
        feeds = spec.example_inputs(point, seed=seed + i)  # type: ignore[arg-type]
        tfeeds = {k: torch.from_numpy(v) for k, v in feeds.items()}
        ref = reference.run(tfeeds)
        got = candidate.run(tfeeds)
        outs = {}
        for t in spec.outputs:
            outs[t.name] = compare(ref[t.name].float().cpu().numpy(), got[t.name].float().cpu().numpy(), spec.tolerance, t.value_range)
        ok = all(o["passed"] for o in outs.values())
        all_ok &= ok
        result[point] = {"shapes": {k: list(v.shape) for k, v in feeds.items()}, "outputs": outs, "passed": ok}
    result["passed"] = all_ok
    return result


def worst(parity: Mapping[str, Any]) -> dict[str, float]:
    """Worst max_abs and PSNR over all points and outputs (for one-line reports)."""
    max_abs, psnr = 0.0, PSNR_IDENTICAL
    for point, rec in parity.items():
        if point == "passed" or not isinstance(rec, Mapping):
            continue
        for o in rec["outputs"].values():
            max_abs = max(max_abs, o.get("max_abs", math.inf))
            psnr = min(psnr, o.get("psnr", 0.0))
    return {"max_abs": max_abs, "psnr": psnr}


def session_for_onnx(spec: GraphSpec, path: Path, device: str = "cpu") -> Any:
    from ..runtime.base import SessionOptions
    from ..runtime.onnxruntime import OrtSession

    return OrtSession(spec, path, SessionOptions(device=device))

"""Latency statistics: percentiles, mean ± stdev, throughput, and ratios to a baseline.

Pure Python (no numpy, no torch) so the serving layer, scripts and tests can use it anywhere.  Every
benchmark in the project reports through :func:`summarize`, so numbers from ``engine bench``, the HTTP
load generator and ``benchmarks/*.py`` scripts mean the same thing:

* percentiles use linear interpolation between closest ranks (numpy's default, "type 7"): the p50 of
  ``[1, 2, 3, 4]`` is 2.5;
* ``stdev`` is the sample standard deviation (n - 1 in the denominator; 0 for a single sample);
* ``images_per_s`` is ``batch / mean latency``: the steady-state throughput of back-to-back calls.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["PERCENTILES", "percentile", "summarize", "speedup", "images_per_second", "fmt_ms", "histogram", "mean_of_histogram"]

#: Percentiles every summary carries (p95 too: HTTP reports quote p50/p95/p99, in-process p50/p90/p99).
PERCENTILES: tuple[int, ...] = (50, 90, 95, 99)


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation between closest ranks."""
    if not samples:
        raise ValueError("percentile of no samples")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within [0, 100], got {q}")
    xs = sorted(float(x) for x in samples)
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def images_per_second(batch: int, mean_s: float) -> float:
    return batch / mean_s if mean_s > 0 else float("inf")


def summarize(samples_s: Iterable[float], batch: int = 1) -> dict[str, Any]:
    """Summary of per-call latencies given in **seconds**; the summary is in **milliseconds**.

    Keys: ``n``, ``mean``, ``stdev``, ``min``, ``max``, ``p50``, ``p90``, ``p95``, ``p99`` (ms) and
    ``images_per_s`` (``batch`` images per call).
    """
    xs = [float(x) for x in samples_s]
    if not xs:
        raise ValueError("no samples to summarize")
    if any(not math.isfinite(x) or x < 0 for x in xs):
        raise ValueError("latency samples must be finite and >= 0")
    n = len(xs)
    mean = math.fsum(xs) / n
    var = math.fsum((x - mean) ** 2 for x in xs) / (n - 1) if n > 1 else 0.0
    out: dict[str, Any] = {"n": n, "mean": mean * 1e3, "stdev": math.sqrt(var) * 1e3, "min": min(xs) * 1e3, "max": max(xs) * 1e3}
    for q in PERCENTILES:
        out[f"p{q}"] = percentile(xs, q) * 1e3
    out["images_per_s"] = images_per_second(batch, mean)
    return out


def speedup(baseline_ms: float | None, value_ms: float | None) -> float | None:
    """How many times faster ``value`` is than ``baseline`` (2.0 = half the latency); None if unknown."""
    if not baseline_ms or not value_ms or value_ms <= 0:
        return None
    return baseline_ms / value_ms


def fmt_ms(v: float | None) -> str:
    """Milliseconds with precision that suits the magnitude (0.0123, 1.23, 12.3, 123)."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if v < 1:
        return f"{v:.3f}"
    if v < 10:
        return f"{v:.2f}"
    if v < 100:
        return f"{v:.1f}"
    return f"{v:.0f}"


def histogram(values: Iterable[int]) -> dict[int, int]:
    """Counts of each value, sorted by value (e.g. batch sizes seen by a server)."""
    out: dict[int, int] = {}
    for v in values:
        out[int(v)] = out.get(int(v), 0) + 1
    return dict(sorted(out.items()))


def mean_of_histogram(hist: Mapping[Any, float]) -> float | None:
    total = sum(hist.values())
    if not total:
        return None
    return sum(float(k) * c for k, c in hist.items()) / total

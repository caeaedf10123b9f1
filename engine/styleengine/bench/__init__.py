"""Latency benchmarking: the timing and statistics behind ``engine bench`` (and ``benchmarks/``).

Modules (each small, importable alone):

* :mod:`.stats` — percentiles, mean ± stdev, images/s, ratios (pure Python; what every benchmark in the
  project reports through);
* :mod:`.timing` — the measurement loop (warm-up, CUDA sync, iterations or a time budget) and peak memory;
* :mod:`.proxy` — a Session proxy recording per-graph time (per-stage breakdown of multi-graph styles);
* :mod:`.inputs` — synthetic requests for a style's input contract;
* :mod:`.artifacts` — exports for onnxruntime / tensorrt, profile widened to the requested shapes;
* :mod:`.inprocess` — ``engine bench STYLE``; :mod:`.httpload` — ``engine bench STYLE --http URL``;
* :mod:`.report`, :mod:`.httpreport`, :mod:`.plots` — terminal table, Markdown, JSON, PNG.

Scripts that time something themselves use :func:`measure` and :func:`summarize`::

    from styleengine.bench import measure, summarize
    samples = measure(lambda _: session.run(feeds), warmup=3, iters=50, sync=cuda_sync(device))
    print(summarize(samples, batch=4))   # ms: n, mean, stdev, min, max, p50, p90, p95, p99; images_per_s
"""

from __future__ import annotations

from .stats import PERCENTILES, fmt_ms, histogram, images_per_second, mean_of_histogram, percentile, speedup, summarize
from .timing import PeakMemory, cuda_sync, measure, no_sync

__all__ = [
    "PERCENTILES",
    "PeakMemory",
    "cuda_sync",
    "fmt_ms",
    "histogram",
    "images_per_second",
    "mean_of_histogram",
    "measure",
    "no_sync",
    "percentile",
    "speedup",
    "summarize",
]

"""How the runner turns a dispatched batch of requests into ``style_infer`` calls.

BentoML's adaptive batcher hands the runner up to ``max_batch_size`` queued requests at once, of any
sizes and parameters.  Stacking those blindly would change results (padding to a common size, one
``strength`` for all), so the runner:

1. **groups** them by a key made of every image's shape (per field, in order, several images of a
   field included) and the validated parameters: only requests that would run the exact same graphs
   with the same settings share a call.  Texts and seeds stay per request (pipelines take them
   per request, e.g. one instruction per image);
2. **splits** each group into **buckets**: batch sizes 1, 2, 4, ... up to the smaller of
   ``max_batch_size`` and the graphs' batch-dim maximum.  The runner therefore only ever calls the
   graphs at those batch sizes, which warm-up runs once before the service reports ready (TensorRT
   profiles, ORT arena growth, cuDNN autotuning happen then, not on a user's request);
3. calls ``style_infer`` once per bucket-sized chunk, in arrival order of each group's first request.

Everything here is pure Python (no torch, no BentoML) so it is unit-tested directly.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

__all__ = ["bucket_sizes", "group_key", "plan_chunks", "split_count"]


def bucket_sizes(max_batch_size: int, graph_max: int | None = None) -> tuple[int, ...]:
    """Powers of two below the cap, and the cap itself: ``(1, 2, 4, 6)`` for a cap of 6."""
    cap = max(1, min(max_batch_size, graph_max) if graph_max else max_batch_size)
    sizes = {cap}
    b = 1
    while b < cap:
        sizes.add(b)
        b *= 2
    return tuple(sorted(sizes))


def split_count(n: int, buckets: Sequence[int]) -> list[int]:
    """Split ``n`` requests into chunk sizes taken from ``buckets``, largest first (7 → 4, 2, 1)."""
    if n <= 0:
        return []
    sizes = sorted(set(buckets), reverse=True)
    if 1 not in sizes:
        raise ValueError(f"buckets must include 1, got {list(buckets)}")
    out = []
    for b in sizes:
        while n >= b:
            out.append(b)
            n -= b
    return out


def _shape_of(value: Any) -> Hashable:
    if isinstance(value, list | tuple):
        return ("list", tuple(_shape_of(v) for v in value))
    shape = getattr(value, "shape", None)
    return tuple(shape) if shape is not None else repr(type(value))


def group_key(images: Mapping[str, Any], params: Mapping[str, Any]) -> Hashable:
    """Requests with equal keys can be stacked without changing any one's result."""
    shapes = tuple((name, _shape_of(images[name])) for name in sorted(images))
    return shapes, json.dumps(params, sort_keys=True, default=str)


def plan_chunks(keys: Iterable[Hashable], buckets: Sequence[int]) -> list[list[int]]:
    """Indices of the requests for each ``style_infer`` call: grouped by key, split into buckets."""
    groups: dict[Hashable, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    chunks: list[list[int]] = []
    for members in groups.values():
        start = 0
        for size in split_count(len(members), buckets):
            chunks.append(members[start : start + size])
            start += size
    return chunks

"""The style-feature cache: relu4_1 statistics of each style image, computed once and reused.

AdaIN only needs a style image's per-channel mean and standard deviation at relu4_1 (also for
interpolation and for the masked foreground/background variant: the *style* statistics are always
taken over the whole style image).  A served style (the same painting for thousands of photos) then
costs no encoder pass after the first request: each request runs the encoder once, on its content.

Entries are keyed by :func:`image_key` -- sha256 of the style image's float32 pixels and shape -- plus
everything that changes the statistics: the style size settings (``style_size``, ``crop``, the working
size range) and the encoder session (runtime, device, precision), since ONNX Runtime and torch features
differ in the last bits.  ``preserve_color`` recolours the style with the *content's* colours, so such
requests bypass the cache.  The cache is bounded (least recently used entries are dropped) and
thread-safe; the Style instance owns one and clears it whenever its weights change.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np


def image_key(img: np.ndarray) -> str:
    """sha256 of an image's float32 pixels and shape (the request's array, before any resizing)."""
    arr = np.ascontiguousarray(img, dtype=np.float32)
    h = hashlib.sha256()
    h.update(repr(arr.shape).encode())
    h.update(memoryview(arr).cast("B"))
    return h.hexdigest()


@dataclass(frozen=True)
class CacheStats:
    hits: int
    misses: int
    size: int
    maxsize: int


class StyleFeatureCache:
    """A thread-safe LRU mapping of keys to (mean, std) relu4_1 statistics."""

    def __init__(self, maxsize: int = 128) -> None:
        if maxsize < 0:
            raise ValueError(f"cache size must be >= 0, got {maxsize}")
        self.maxsize = maxsize
        self._data: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            value = self._data.get(key)
            if value is None:
                self._misses += 1
                return None
            self._data.move_to_end(key)
            self._hits += 1
            return value

    def put(self, key: Hashable, value: Any) -> None:
        if self.maxsize == 0:
            return
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._data

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(self._hits, self._misses, len(self._data), self.maxsize)

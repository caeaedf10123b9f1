"""The measurement loop and peak-memory tracking.

:func:`measure` warms up, then times back-to-back calls with ``time.perf_counter`` until an iteration
count or a time budget is reached.  Around each timed call it synchronises the device (``sync``: on
CUDA, ``torch.cuda.synchronize``), so asynchronous kernel launches are charged to the call that issued
them.  The garbage collector is collected before and disabled during the timed loop (as ``timeit``
does), so a collection does not land in one unlucky sample.  Work that must not be timed (building the
next inputs) goes in ``prepare``.

:class:`PeakMemory` records the process's peak resident set size over a region: on Linux exactly, by
resetting the kernel's high-water mark (``/proc/self/clear_refs``, value 5) and reading ``VmHWM``;
elsewhere by sampling ``psutil`` RSS on a thread.  Where CUDA is in use it also records torch's
``max_memory_allocated`` (memory that ONNX Runtime or TensorRT allocate themselves is not in it).
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["measure", "PeakMemory", "cuda_sync", "no_sync"]

MB = 1 << 20


def no_sync() -> None:
    return None


def cuda_sync(device: str) -> Callable[[], None]:
    """A synchronisation function for ``device`` (a no-op unless it is a CUDA device)."""
    if not str(device).startswith("cuda"):
        return no_sync
    import torch

    return torch.cuda.synchronize


def measure(
    run: Callable[[Any], Any],
    *,
    warmup: int = 3,
    iters: int | None = 20,
    seconds: float | None = None,
    min_iters: int = 3,
    sync: Callable[[], None] = no_sync,
    prepare: Callable[[int], Any] | None = None,
    on_start: Callable[[], None] | None = None,
    on_end: Callable[[], None] | None = None,
) -> list[float]:
    """Per-call latencies in seconds.

    ``prepare(i)`` (untimed) returns the argument of the ``i``-th call (``None`` without it).  With
    ``seconds`` the loop runs until that much time has passed and at least ``min_iters`` calls were
    timed, capped at ``iters`` if given; otherwise exactly ``iters`` calls.  ``on_start`` / ``on_end``
    bracket each timed call outside the clock (the stage recorder uses them).
    """
    if seconds is None and not iters:
        raise ValueError("give iters or seconds")
    if iters is not None and iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    if seconds is not None and seconds <= 0:
        raise ValueError(f"seconds must be > 0, got {seconds}")
    for i in range(max(0, warmup)):
        run(prepare(-1 - i) if prepare else None)
        sync()
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    samples: list[float] = []
    start = time.perf_counter()
    try:
        while True:
            arg = prepare(len(samples)) if prepare else None
            if on_start:
                on_start()
            sync()
            t0 = time.perf_counter()
            run(arg)
            sync()
            samples.append(time.perf_counter() - t0)
            if on_end:
                on_end()
            n = len(samples)
            if seconds is None:
                if n >= iters:  # type: ignore[operator]
                    break
            elif (n >= min_iters and time.perf_counter() - start >= seconds) or (iters is not None and n >= iters):
                break
    finally:
        if was_enabled:
            gc.enable()
    return samples


def _read_hwm() -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return _read_hwm() is not None


@dataclass
class PeakMemory:
    """``with PeakMemory(device) as mem: ...`` then ``mem.result()`` (MiB)."""

    device: str = "cpu"
    interval_s: float = 0.005
    method: str = ""
    rss_start: int = 0
    rss_peak: int = 0
    cuda_peak: int | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> PeakMemory:
        import psutil

        self._proc = psutil.Process()
        self.rss_start = self._proc.memory_info().rss
        self.rss_peak = self.rss_start
        if _reset_hwm():
            self.method = "VmHWM"
        else:
            self.method = "psutil-sampled"
            self._thread = threading.Thread(target=self._sample, name="bench-rss", daemon=True)
            self._thread.start()
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.reset_peak_memory_stats()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.rss_peak = max(self.rss_peak, self._proc.memory_info().rss)

    def __exit__(self, *exc: Any) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        self.rss_peak = max(self.rss_peak, self._proc.memory_info().rss)
        if self.method == "VmHWM":
            self.rss_peak = max(self.rss_peak, _read_hwm() or 0)
        if self.device.startswith("cuda"):
            import torch

            self.cuda_peak = int(torch.cuda.max_memory_allocated())

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rss_peak_mb": round(self.rss_peak / MB, 1),
            "rss_increase_mb": round((self.rss_peak - self.rss_start) / MB, 1),
            "rss_method": self.method,
        }
        if self.cuda_peak is not None:
            out["cuda_max_allocated_mb"] = round(self.cuda_peak / MB, 1)
        return out

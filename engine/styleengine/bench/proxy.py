"""Per-graph timing: a Session proxy that charges each ``run`` to its graph.

A style's pipeline (``Style.infer``) only talks to Sessions, so wrapping each Session in a
:class:`TimingSession` gives a per-stage breakdown of any style without style-specific code: for a
diffusion style, the text encoder, the UNet (called once per step) and the VAE decoder; for AdaIN, the
encoder and the decoder.  Pre/post-processing and glue (schedulers, resizing, statistics) is what the
pipeline's total leaves over.

The proxy also keeps a copy of the inputs of the first call per graph, so ``--graphs-only`` can time
each graph alone on exactly the tensors the pipeline fed it (no guessing of latent sizes or extra
inputs).  On CUDA each call is synchronised before and after, so the time is the graph's own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from .timing import cuda_sync

__all__ = ["StageRecorder", "TimingSession", "wrap_sessions", "on_cuda"]


def on_cuda(session: Any) -> bool:
    dev = str(getattr(session, "device", ""))
    return dev.startswith("cuda") or dev in ("CUDAExecutionProvider", "TensorrtExecutionProvider")


class StageRecorder:
    """Collects per-graph time and call counts for each timed pipeline iteration."""

    def __init__(self) -> None:
        self.active = False
        self._current: dict[str, list[float]] = {}
        self.iterations: list[dict[str, tuple[int, float]]] = []  # per iteration: graph -> (calls, seconds)
        self.captured: dict[str, dict[str, Any]] = {}
        #: Every input shape seen, per (graph, input): what an export's dims must cover.
        self.shapes: dict[tuple[str, str], set[tuple[int, ...]]] = {}

    def begin(self) -> None:
        self._current = {}
        self.active = True

    def end(self) -> None:
        self.active = False
        self.iterations.append({g: (len(ts), sum(ts)) for g, ts in self._current.items()})

    def reset(self) -> None:
        self.iterations = []

    def add(self, graph: str, seconds: float) -> None:
        if self.active:
            self._current.setdefault(graph, []).append(seconds)

    def capture(self, graph: str, inputs: Mapping[str, Any]) -> None:
        for k, v in inputs.items():
            self.shapes.setdefault((graph, k), set()).add(tuple(getattr(v, "shape", ())))
        if graph in self.captured:
            return
        out = {}
        for k, v in inputs.items():
            out[k] = v.detach().clone() if hasattr(v, "detach") else v
        self.captured[graph] = out

    def summary(self, total_mean_ms: float | None = None) -> dict[str, dict[str, float]]:
        """graph → ``calls`` per iteration, ``mean_ms`` per iteration (all calls), ``per_call_ms``,
        ``share`` of the pipeline mean; plus ``other`` (what the pipeline spent outside the graphs)."""
        n = len(self.iterations)
        if not n:
            return {}
        graphs: list[str] = []
        for it in self.iterations:
            graphs += [g for g in it if g not in graphs]
        out: dict[str, dict[str, float]] = {}
        for g in graphs:
            calls = sum(it.get(g, (0, 0.0))[0] for it in self.iterations)
            secs = sum(it.get(g, (0, 0.0))[1] for it in self.iterations)
            out[g] = {
                "calls": calls / n,
                "mean_ms": secs / n * 1e3,
                "per_call_ms": secs / calls * 1e3 if calls else 0.0,
            }
        if total_mean_ms:
            graph_ms = sum(v["mean_ms"] for v in out.values())
            out["other"] = {"calls": 0.0, "mean_ms": max(0.0, total_mean_ms - graph_ms), "per_call_ms": 0.0}
            for v in out.values():
                v["share"] = v["mean_ms"] / total_mean_ms
        return out


class TimingSession:
    """Wraps a Session; ``run`` is timed and charged to ``graph``.  Other attributes pass through."""

    def __init__(self, inner: Any, recorder: StageRecorder) -> None:
        self._inner = inner
        self._recorder = recorder
        self._sync: Callable[[], None] = cuda_sync("cuda") if on_cuda(inner) else (lambda: None)

    @property
    def inner(self) -> Any:
        return self._inner

    def __getattr__(self, name: str) -> Any:  # graph, runtime, device, input_names, output_names, ...
        return getattr(self._inner, name)

    def run(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        self._recorder.capture(self._inner.graph, inputs)
        self._sync()
        t0 = time.perf_counter()
        out = self._inner.run(inputs)
        self._sync()
        self._recorder.add(self._inner.graph, time.perf_counter() - t0)
        return out


def wrap_sessions(sessions: Mapping[str, Any], recorder: StageRecorder) -> dict[str, TimingSession]:
    return {name: TimingSession(s, recorder) for name, s in sessions.items()}

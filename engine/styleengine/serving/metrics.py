"""Prometheus metrics of the service, exported on ``/metrics`` beside BentoML's own.

BentoML runs every worker with ``PROMETHEUS_MULTIPROC_DIR`` set and aggregates all processes' metrics on
the API's ``/metrics``; ``prometheus_client`` reads that variable when it is first imported, so the
metrics are created lazily inside the workers (never at module import).

* ``styleengine_request_duration_seconds{style,runtime,endpoint,status}``: the API's end-to-end latency
  (parse, decode, queue, inference, encode) per response status;
* ``styleengine_batch_size{style,runtime}``: requests per ``style_infer`` call (after grouping);
* ``styleengine_dispatch_size{style,runtime}``: requests per runner call (what BentoML's batcher formed);
* ``styleengine_inference_duration_seconds{style,runtime}``: one ``style_infer`` call;
* ``styleengine_queue_duration_seconds{style,runtime}``: from the API sending a request to its chunk starting;
* ``styleengine_rejected_total{style,runtime,reason}``: requests refused before inference: by the request
  guard (``too_many_requests``, ``request_timeout``, ``request_too_large`` ...) or the runner (queue
  timeout, deadline passed).

Metric objects are created once per process (both halves live in one process in the ``single`` topology).
"""

from __future__ import annotations

from typing import Any

_METRICS: dict[str, Any] = {}


def _metric(kind: str, name: str, doc: str, labels: list[str], **kw: Any) -> Any:
    if name not in _METRICS:
        import prometheus_client as prom

        _METRICS[name] = getattr(prom, kind)(name, doc, labels, **kw)
    return _METRICS[name]


def count_rejected(style: str, runtime: str, reason: str) -> None:
    _metric("Counter", "styleengine_rejected", "Requests refused before inference", ["style", "runtime", "reason"]).labels(
        style=style, runtime=runtime, reason=reason
    ).inc()


LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 128, 256)


class ApiMetrics:
    def __init__(self, style: str, runtime: str) -> None:
        self.labels = {"style": style, "runtime": runtime}
        self.request = _metric(
            "Histogram", "styleengine_request_duration_seconds", "End-to-end request latency of the styleengine API",
            ["style", "runtime", "endpoint", "status"], buckets=LATENCY_BUCKETS,
        )

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        self.request.labels(endpoint=endpoint, status=str(status), **self.labels).observe(seconds)


class RunnerMetrics:
    def __init__(self, style: str, runtime: str) -> None:
        self.labels = {"style": style, "runtime": runtime}
        names = ["style", "runtime"]
        self.batch = _metric("Histogram", "styleengine_batch_size", "Requests per style_infer call", names, buckets=BATCH_BUCKETS)
        self.dispatch = _metric("Histogram", "styleengine_dispatch_size", "Requests per batch the batcher formed", names, buckets=BATCH_BUCKETS)
        self.inference = _metric(
            "Histogram", "styleengine_inference_duration_seconds", "Duration of one style_infer call", names, buckets=LATENCY_BUCKETS
        )
        self.queue = _metric(
            "Histogram", "styleengine_queue_duration_seconds", "Queue wait before a request's chunk starts", names, buckets=LATENCY_BUCKETS
        )

    def observe_dispatch(self, n: int) -> None:
        self.dispatch.labels(**self.labels).observe(n)

    def observe_chunk(self, size: int, seconds: float, waits: list[float], status: int) -> None:
        self.batch.labels(**self.labels).observe(size)
        self.inference.labels(**self.labels).observe(seconds)
        q = self.queue.labels(**self.labels)
        for w in waits:
            q.observe(max(0.0, w))

    def observe_rejected(self, reason: str) -> None:
        count_rejected(self.labels["style"], self.labels["runtime"], reason)


def parse_histogram(text: str, name: str, **labels: str) -> dict[str, float]:
    """``{le: cumulative count}`` of one histogram in Prometheus text output (tests, tooling)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith(name + "_bucket{"):
            continue
        head, _, value = line.rpartition(" ")
        body = head[len(name) + len("_bucket{") : -1]
        pairs = dict(p.split("=", 1) for p in _split_labels(body))
        pairs = {k: v.strip('"') for k, v in pairs.items()}
        if all(pairs.get(k) == v for k, v in labels.items()):
            out[pairs["le"]] = out.get(pairs["le"], 0.0) + float(value)
    return out


def _split_labels(body: str) -> list[str]:
    parts, cur, quoted = [], "", False
    for ch in body:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur:
        parts.append(cur)
    return parts

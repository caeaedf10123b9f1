"""``engine bench STYLE --http URL``: a bounded load against a running service, per concurrency level.

For each ``--concurrency C`` it sends ``--requests N`` multipart requests (the style's image fields as
PNG, its parameters, ``seed`` where the style is seeded) from ``C`` concurrent clients (asyncio +
httpx, one connection each) and records per request: client-side latency, status, and the batch size
the server ran it in (``X-Batch-Size`` / the JSON body's ``batch_size``) with the server's own
timings.  Around each level it scrapes ``/metrics`` and reports the delta of the
``styleengine_batch_size`` histogram (requests per ``style_infer`` call).

Throughput is successful requests ÷ wall time of the level (first send to last answer), not 1 / mean
latency.  Against an in-process report (``--compare in-process.json``) it adds the serving overhead
(HTTP p50 - in-process batch-1 p50) and the batching gain (HTTP images/s ÷ in-process batch-1 images/s).
Loopback: the load generator and the server share the machine, which is why both are in one report.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from .env import environment, now
from .inputs import contract_of, png_bytes, synthetic_image
from .stats import histogram, mean_of_histogram, summarize

log = logging.getLogger(__name__)

__all__ = ["HttpConfig", "run_http", "parse_metrics", "histogram_delta", "compare_with", "build_form"]

SCHEMA = "styleengine.bench/1"
BATCH_METRIC = "styleengine_batch_size"
DISPATCH_METRIC = "styleengine_dispatch_size"


@dataclass
class HttpConfig:
    url: str
    style: str
    concurrency: tuple[int, ...] = (1, 4, 16)
    #: Requests per concurrency level; None = max(32, 4 × concurrency).
    requests: int | None = None
    warmup: int = 3
    size: int = 256
    params: dict[str, Any] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)
    endpoint: str = "/stylize.json"
    timeout: float = 120.0
    ready_timeout: float = 60.0
    compare: Path | None = None
    #: The server's runtime, for the comparison; read from the responses when they say.
    runtime: str | None = None
    distinct_images: int = 8

    def n_requests(self, c: int) -> int:
        return self.requests if self.requests else max(32, 4 * c)


# -- Prometheus text ------------------------------------------------------------------------------------------
_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Prometheus text exposition → name → [(labels, value)] (comments skipped)."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        if not m:
            continue
        try:
            value = float(m.group(4))
        except ValueError:
            continue
        labels = dict(_LABEL.findall(m.group(3) or ""))
        out.setdefault(m.group(1), []).append((labels, value))
    return out


def histogram_state(metrics: Mapping[str, list[tuple[dict[str, str], float]]], name: str) -> dict[str, Any]:
    """One histogram summed over its label sets: ``{"buckets": {le: cumulative}, "sum": s, "count": n}``."""
    buckets: dict[str, float] = {}
    for labels, v in metrics.get(f"{name}_bucket", []):
        buckets[labels.get("le", "+Inf")] = buckets.get(labels.get("le", "+Inf"), 0.0) + v
    return {
        "buckets": buckets,
        "sum": sum(v for _, v in metrics.get(f"{name}_sum", [])),
        "count": sum(v for _, v in metrics.get(f"{name}_count", [])),
    }


def _le_key(le: str) -> float:
    return float("inf") if le in ("+Inf", "Inf") else float(le)


def histogram_delta(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """Observations between two scrapes: per-bucket counts (``"le"`` → count in (previous le, le]),
    count, sum and mean."""
    les = sorted(set(after["buckets"]) | set(before["buckets"]), key=_le_key)
    per: dict[str, int] = {}
    prev = 0.0
    for le in les:
        cum = after["buckets"].get(le, 0.0) - before["buckets"].get(le, 0.0)
        n = int(round(cum - prev))
        prev = cum
        if n:
            per[le] = n
    count = after["count"] - before["count"]
    total = after["sum"] - before["sum"]
    return {"buckets": per, "count": int(round(count)), "sum": total, "mean": total / count if count else None}


# -- requests -----------------------------------------------------------------------------------------------
def build_form(style_cls: Any, image: bytes, params: Mapping[str, Any], texts: Mapping[str, str], seed: int | None) -> tuple[dict[str, str], list[tuple[str, tuple[str, bytes, str]]]]:
    """(form data, files) for one multipart request: every required image field gets ``image``."""
    from .inputs import DEFAULT_TEXT

    contract = contract_of(style_cls)
    data: dict[str, str] = {k: v if isinstance(v, str) else json.dumps(v) for k, v in params.items()}
    for t in contract.texts:
        if t.required or t.name in texts:
            data[t.name] = texts.get(t.name, DEFAULT_TEXT)
    if seed is not None and contract.seeded:
        data["seed"] = str(seed)
    files = [(f.name, (f"{f.name}.png", image, "image/png")) for f in contract.images if f.required]
    return data, files


@dataclass
class _Outcome:
    latency: float
    status: int | str
    batch_size: int | None = None
    server: dict[str, float] = field(default_factory=dict)
    runtime: str | None = None


async def _one(client: Any, url: str, data: Mapping[str, str], files: Any) -> _Outcome:
    t0 = time.perf_counter()
    try:
        resp = await client.post(url, data=data, files=files)
        body = await resp.aread()
    except Exception as exc:  # noqa: BLE001 - counted by kind, the load goes on
        return _Outcome(time.perf_counter() - t0, type(exc).__name__)
    latency = time.perf_counter() - t0
    out = _Outcome(latency, resp.status_code)
    bs = resp.headers.get("x-batch-size")
    if bs and bs.isdigit():
        out.batch_size = int(bs)
    if resp.status_code == 200 and resp.headers.get("content-type", "").startswith("application/json"):
        try:
            doc = json.loads(body)
            out.batch_size = int(doc.get("batch_size", out.batch_size or 0)) or out.batch_size
            out.server = {k: float(v) for k, v in (doc.get("timings") or {}).items()}
            out.runtime = doc.get("runtime")
        except (ValueError, TypeError):
            pass
    return out


async def _level(cfg: HttpConfig, style_cls: Any, payloads: Sequence[bytes], c: int, n: int, seed0: int) -> tuple[list[_Outcome], float]:
    import httpx

    url = cfg.url.rstrip("/") + cfg.endpoint
    limits = httpx.Limits(max_connections=c, max_keepalive_connections=c)
    outcomes: list[_Outcome] = []
    tickets = iter(range(n))

    async with httpx.AsyncClient(timeout=cfg.timeout, limits=limits, trust_env=False) as client:

        async def worker() -> None:
            for i in tickets:
                data, files = build_form(style_cls, payloads[i % len(payloads)], cfg.params, cfg.texts, seed0 + i)
                outcomes.append(await _one(client, url, data, files))

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(c)))
        wall = time.perf_counter() - t0
    return outcomes, wall


def _get(url: str, timeout: float = 10.0) -> tuple[int, str]:
    import httpx

    try:
        r = httpx.get(url, timeout=timeout, trust_env=False)
        return r.status_code, r.text
    except httpx.HTTPError as exc:
        return 0, str(exc)


def wait_ready(base: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    status, text = 0, ""
    while time.monotonic() < deadline:
        status, text = _get(base.rstrip("/") + "/readyz", timeout=5)
        if status == 200:
            return
        time.sleep(0.5)
    raise RuntimeError(f"{base}/readyz did not answer 200 within {timeout:.0f}s (last: {status} {text[:200]})")


def _scrape(base: str) -> dict[str, Any] | None:
    status, text = _get(base.rstrip("/") + "/metrics")
    if status != 200:
        return None
    m = parse_metrics(text)
    return {"batch": histogram_state(m, BATCH_METRIC), "dispatch": histogram_state(m, DISPATCH_METRIC)}


def _summarize_level(c: int, n: int, outcomes: list[_Outcome], wall: float, before: Any, after: Any) -> dict[str, Any]:
    ok = [o for o in outcomes if o.status == 200]
    errors: dict[str, int] = {}
    for o in outcomes:
        if o.status != 200:
            errors[str(o.status)] = errors.get(str(o.status), 0) + 1
    row: dict[str, Any] = {
        "concurrency": c,
        "requests": n,
        "ok": len(ok),
        "errors": dict(sorted(errors.items())),
        "wall_s": wall,
        "images_per_s": len(ok) / wall if wall > 0 else None,
        "latency_ms": None,
    }
    if ok:
        lat = summarize([o.latency for o in ok])
        lat.pop("images_per_s")
        row["latency_ms"] = lat
    sizes = [o.batch_size for o in ok if o.batch_size]
    row["batch_size_seen"] = {"histogram": histogram(sizes), "mean": sum(sizes) / len(sizes) if sizes else None}
    server = [o.server for o in ok if o.server]
    if server:
        row["server_ms"] = {k: summarize([s[k] / 1e3 for s in server if k in s]) for k in server[0]}
        for v in row["server_ms"].values():
            v.pop("images_per_s")
    if before is not None and after is not None:
        row["metrics"] = {"batch_size": histogram_delta(before["batch"], after["batch"]),
                          "dispatch_size": histogram_delta(before["dispatch"], after["dispatch"])}
    return row


def compare_with(report: Mapping[str, Any], inproc: Mapping[str, Any], runtime: str, size: int) -> dict[str, Any]:
    """Serving overhead and batching gain of each level against an in-process report's rows."""
    rows = [r for r in inproc.get("results", []) if r.get("status") == "ok" and r["mode"] == "pipeline" and r["precision"] == "fp32"]
    sizes = sorted({r["size"] for r in rows}, key=lambda s: abs(s - size))
    if not rows or not sizes:
        return {"error": "no in-process pipeline results to compare with"}
    rows = [r for r in rows if r["size"] == sizes[0]]
    mine = sorted((r for r in rows if r["runtime"] == runtime), key=lambda r: r["batch"])
    torch_rows = sorted((r for r in rows if r["runtime"] == "torch"), key=lambda r: r["batch"])
    out: dict[str, Any] = {"file": None, "runtime": runtime, "size": sizes[0]}
    if not mine:
        out["error"] = f"the in-process report has no {runtime} rows at {sizes[0]}"
        return out
    b1 = next((r for r in mine if r["batch"] == 1), mine[0])
    best = max(mine, key=lambda r: r["images_per_s"])
    out.update(
        inprocess_b1_batch=b1["batch"], inprocess_b1_p50_ms=b1["latency_ms"]["p50"], inprocess_b1_images_per_s=b1["images_per_s"],
        inprocess_best_images_per_s=best["images_per_s"], inprocess_best_batch=best["batch"],
    )
    t1 = next((r for r in torch_rows if r["batch"] == 1), None)
    if t1:
        out["torch_b1_images_per_s"] = t1["images_per_s"]
    for row in report["results"]:
        if not row.get("latency_ms"):
            continue
        row["vs_inprocess"] = {
            "overhead_p50_ms": row["latency_ms"]["p50"] - b1["latency_ms"]["p50"],
            "batching_gain": (row["images_per_s"] or 0) / b1["images_per_s"] if b1["images_per_s"] else None,
            "of_best_inprocess": (row["images_per_s"] or 0) / best["images_per_s"] if best["images_per_s"] else None,
            "vs_torch_b1": (row["images_per_s"] or 0) / t1["images_per_s"] if t1 and t1["images_per_s"] else None,
        }
    return out


def run_http(engine: Any, cfg: HttpConfig, say: Callable[[str], None] = log.info, argv: list[str] | None = None) -> dict[str, Any]:
    from .inputs import with_size

    style_cls = engine.style_class(cfg.style)
    cfg = replace(cfg, params=with_size(cfg.params, cfg.size))
    base = cfg.url.rstrip("/")
    say(f"waiting for {base}/readyz")
    wait_ready(base, cfg.ready_timeout)
    payloads = [png_bytes(synthetic_image(cfg.size, cfg.size, seed=i)) for i in range(max(1, cfg.distinct_images))]
    if cfg.warmup:
        say(f"warm-up: {cfg.warmup} requests")
        asyncio.run(_level(cfg, style_cls, payloads, 1, cfg.warmup, 10_000_000))
    results: list[dict[str, Any]] = []
    seen_runtime: str | None = None
    for c in cfg.concurrency:
        n = cfg.n_requests(c)
        say(f"concurrency {c}: {n} requests")
        before = _scrape(base)
        outcomes, wall = asyncio.run(_level(cfg, style_cls, payloads, c, n, 1000 * c))
        after = _scrape(base)
        row = _summarize_level(c, n, outcomes, wall, before, after)
        seen_runtime = seen_runtime or next((o.runtime for o in outcomes if o.runtime), None)
        results.append(row)
        lat = row["latency_ms"] or {}
        say(f"  ok {row['ok']}/{n}, p50 {lat.get('p50', float('nan')):.1f} ms, {row['images_per_s'] or 0:.2f} img/s, errors {row['errors']}")
    env = environment()
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "kind": "http",
        "created": now(),
        "command": argv if argv is not None else sys.argv,
        "url": cfg.url,
        "endpoint": cfg.endpoint,
        "style": {"name": style_cls.name, "params": cfg.params, "size": cfg.size},
        "server": {"runtime": seen_runtime or cfg.runtime},
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
        "machine": env["machine"],
        "versions": env["versions"],
        "results": results,
        "compare": None,
    }
    if cfg.compare:
        inproc = json.loads(Path(cfg.compare).read_text())
        report["compare"] = compare_with(report, inproc, report["server"]["runtime"] or "torch", cfg.size)
        report["compare"]["file"] = str(cfg.compare)
    return report

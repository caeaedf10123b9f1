"""Terminal and Markdown rendering of an HTTP load report (``engine bench STYLE --http URL``)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .report import _header, render_table
from .stats import fmt_ms

__all__ = ["http_table", "http_markdown"]

HEADERS = ("conc.", "requests", "ok", "errors", "p50 ms", "p95 ms", "p99 ms", "mean ± sd ms", "img/s", "batch sizes (requests)", "server calls: mean batch")
CMP_HEADERS = ("conc.", "HTTP p50 ms", "in-proc b1 p50 ms", "overhead ms", "HTTP img/s", "batching gain", "of best in-proc", "vs torch b1")


def _x(v: float | None) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{v:.2f}×"


def _sizes(hist: Mapping[Any, int]) -> str:
    return " ".join(f"{k}:{v}" for k, v in hist.items()) or "–"


def _rows(report: Mapping[str, Any]) -> list[list[str]]:
    rows = []
    for r in report["results"]:
        lat = r.get("latency_ms") or {}
        errors = ", ".join(f"{k}×{v}" for k, v in r["errors"].items()) or "0"
        mb = ((r.get("metrics") or {}).get("batch_size") or {})
        server = f"{mb['mean']:.2f} ({mb['count']} calls)" if mb.get("mean") else "–"
        rows.append([
            r["concurrency"], r["requests"], r["ok"], errors, fmt_ms(lat.get("p50")), fmt_ms(lat.get("p95")), fmt_ms(lat.get("p99")),
            f"{fmt_ms(lat.get('mean'))} ± {fmt_ms(lat.get('stdev'))}" if lat else "–",
            "–" if r.get("images_per_s") is None else f"{r['images_per_s']:.2f}", _sizes(r["batch_size_seen"]["histogram"]), server,
        ])
    return rows


def _cmp_rows(report: Mapping[str, Any]) -> list[list[str]]:
    cmp = report.get("compare") or {}
    if "inprocess_b1_p50_ms" not in cmp:
        return []
    rows = []
    for r in report["results"]:
        v = r.get("vs_inprocess")
        if not v:
            continue
        rows.append([
            r["concurrency"], fmt_ms(r["latency_ms"]["p50"]), fmt_ms(cmp["inprocess_b1_p50_ms"]), f"{v['overhead_p50_ms']:+.1f}",
            f"{r['images_per_s']:.2f}", _x(v["batching_gain"]), _x(v["of_best_inprocess"]), _x(v.get("vs_torch_b1")),
        ])
    return rows


def _title(report: Mapping[str, Any]) -> str:
    s = report["style"]
    return (f"{s['name']} over HTTP: {report['url']}{report['endpoint']}, runtime {report['server'].get('runtime') or '?'}, "
            f"{s['size']}×{s['size']} PNG, params {s['params']}")


def _cmp_note(report: Mapping[str, Any]) -> str:
    cmp = report.get("compare") or {}
    if "inprocess_b1_p50_ms" not in cmp:
        return f"no in-process comparison ({cmp['error']})" if cmp.get("error") else ""
    return (f"against {cmp.get('file')} ({cmp['runtime']}, {cmp['size']}×{cmp['size']}): overhead = HTTP p50 - in-process batch-1 p50; "
            f"batching gain = HTTP img/s ÷ in-process batch-1 img/s ({cmp['inprocess_b1_images_per_s']:.2f}); of best in-proc = ÷ in-process "
            f"batch-{cmp['inprocess_best_batch']} img/s ({cmp['inprocess_best_images_per_s']:.2f}); vs torch b1 = ÷ torch eager batch-1 in-process img/s.")


def http_table(report: Mapping[str, Any]) -> str:
    out = [_title(report), *_header(report), "", render_table(HEADERS, _rows(report), align="rrrlrrrrrlr")]
    cmp = _cmp_rows(report)
    if cmp:
        out += ["", render_table(CMP_HEADERS, cmp, align="rrrrrrrr")]
    note = _cmp_note(report)
    if note:
        out += ["", note]
    out += ["", "img/s = successful requests ÷ wall time of the level; batch sizes = the style_infer call each request ran in "
                "(size:requests); server calls = /metrics styleengine_batch_size delta."]
    return "\n".join(out)


def http_markdown(report: Mapping[str, Any], plots: Sequence[str] = ()) -> str:
    lines = [f"# `engine bench {report['style']['name']} --http` — {report['server'].get('runtime') or '?'}", "", f"- {_title(report)}"]
    lines += [f"- {h}" for h in _header(report)]
    st = report["settings"]
    lines += [f"- {st.get('warmup', 0)} warm-up requests, then per level the requests shown; timeout {st.get('timeout')} s; created {report['created']}", ""]
    lines += [render_table(HEADERS, _rows(report), markdown=True, align="rrrlrrrrrlr"), ""]
    lines.append("*img/s*: successful requests ÷ wall time of the level. *batch sizes*: the `style_infer` call each request ran in "
                 "(`size:requests`, from the responses). *server calls*: delta of `/metrics` `styleengine_batch_size`.")
    cmp = _cmp_rows(report)
    if cmp:
        lines += ["", "## Against in-process", "", render_table(CMP_HEADERS, cmp, markdown=True, align="rrrrrrrr"), ""]
    note = _cmp_note(report)
    if note:
        lines += ["", note]
    if plots:
        lines += ["", "## Plots", "", *(f"![{Path(p).stem}]({Path(p).name})" for p in plots)]
    return "\n".join(lines) + "\n"

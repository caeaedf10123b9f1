"""Reports: a terminal table, Markdown, JSON files and plots, for in-process and HTTP results.

Both kinds are plain dicts (the JSON written to disk); these functions only format them, so a report
can be re-rendered later from its JSON (``python -m styleengine.bench.report results.json``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .stats import fmt_ms

__all__ = ["table", "format_report", "markdown", "write_report", "render_table"]


def render_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, markdown: bool = False, align: str | None = None) -> str:
    """A plain-text (aligned) or Markdown table.  ``align``: one of ``l``/``r`` per column (default: first
    text columns left, the rest right)."""
    cells = [[str(c) for c in r] for r in rows]
    align = align or "".join("l" if i < 1 else "r" for i in range(len(headers)))
    if markdown:
        sep = ["---:" if a == "r" else ":---" for a in align]
        lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(sep) + " |"]
        lines += ["| " + " | ".join(r) + " |" for r in cells]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]

    def line(vals: Sequence[str]) -> str:
        return "  ".join(v.ljust(w) if a == "l" else v.rjust(w) for v, w, a in zip(vals, widths, align, strict=True)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def _ratio(v: float | None) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{v:.2f}×"


def _rate(v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return "–"
    return f"{v:.1f}" if v < 100 else f"{v:.0f}"


def _label(r: Mapping[str, Any]) -> str:
    return r["runtime"] if r["precision"] == "fp32" else f"{r['runtime']} {r['precision']}"


def _mem(r: Mapping[str, Any]) -> str:
    m = r.get("memory") or {}
    s = f"{m['rss_peak_mb']:.0f}" if "rss_peak_mb" in m else "–"
    if "cuda_max_allocated_mb" in m:
        s += f" / {m['cuda_max_allocated_mb']:.0f}"
    return s


INPROC_HEADERS = ("runtime", "device", "mode", "batch", "size", "p50 ms", "p90 ms", "p99 ms", "mean ± sd ms", "img/s", "vs torch", "peak RSS MB")
INPROC_ALIGN = "lllrrrrrrrrr"


def _inproc_rows(report: Mapping[str, Any]) -> list[list[str]]:
    rows = []
    for r in report["results"]:
        mode = "pipeline" if r["mode"] == "pipeline" else f"graph {r['graph']}"
        if r.get("status") != "ok":
            rows.append([_label(r), r["device"], mode, r["batch"], r["size"], "error", "", "", "", "", "", ""])
            continue
        lat = r["latency_ms"]
        rows.append([
            _label(r), r["device"], mode, r["batch"], r["size"], fmt_ms(lat["p50"]), fmt_ms(lat["p90"]), fmt_ms(lat["p99"]),
            f"{fmt_ms(lat['mean'])} ± {fmt_ms(lat['stdev'])}", _rate(r["images_per_s"]), _ratio((r.get("vs_torch") or {}).get("p50")), _mem(r),
        ])
    return rows


def _stage_rows(report: Mapping[str, Any]) -> list[list[str]]:
    rows = []
    for r in report["results"]:
        if r.get("status") != "ok" or not r.get("stages"):
            continue
        parts = []
        for g, s in r["stages"].items():
            calls = f"{s['calls']:g}× " if s.get("calls", 0) > 1 else ""
            parts.append(f"{g} {calls}{fmt_ms(s['mean_ms'])} ({s.get('share', 0) * 100:.0f}%)")
        rows.append([_label(r), r["batch"], r["size"], "; ".join(parts)])
    return rows


def _unavailable_lines(report: Mapping[str, Any]) -> list[str]:
    return [f"{u['runtime']} ({u['precision']}): {u['status']}: {u['reason']}" for u in report.get("unavailable", [])]


def _errors(report: Mapping[str, Any]) -> list[str]:
    return [f"{_label(r)} batch {r['batch']} size {r['size']}: {r['error']}" for r in report.get("results", []) if r.get("status") == "error"]


def _header(report: Mapping[str, Any]) -> list[str]:
    m, v = report.get("machine", {}), report.get("versions", {})
    hw = f"{m.get('cpu', '?')} ({m.get('affinity_cpus') or m.get('cpus')} CPUs, torch threads {m.get('torch_threads', '?')})"
    if m.get("gpu"):
        hw += f"; {m['gpu']} (driver {m.get('driver') or '?'}, CUDA {m.get('cuda') or '?'})"
    libs = ", ".join(f"{k} {v[k]}" for k in ("styleengine", "torch", "onnxruntime", "onnxruntime-gpu", "tensorrt", "bentoml") if k in v)
    return [f"machine: {hw}", f"versions: {libs}"]


def table(report: Mapping[str, Any]) -> str:
    """The terminal rendering of a report (in-process or HTTP)."""
    if report.get("kind") == "http":
        from .httpreport import http_table

        return http_table(report)
    s = report["style"]
    st = report["settings"]
    it = f"{st['seconds']} s/config (≥{st['min_iters']})" if st.get("seconds") else f"{st['iters']} iters"
    out = [f"{s['name']} ({s['variant']}), weights {'random' if s['weights'] == 'random' else s['weights']['sha256'][:12]}, "
           f"params {s['params']}; warm-up {st['warmup']}, {it}", *_header(report), ""]
    out.append(render_table(INPROC_HEADERS, _inproc_rows(report), align=INPROC_ALIGN))
    stages = _stage_rows(report)
    if stages:
        out += ["", "per-stage mean per pipeline call (ms, share):", render_table(("runtime", "batch", "size", "stages"), stages, align="lrrl")]
    bad = _unavailable_lines(report) + _errors(report)
    if bad:
        out += ["", "not measured:", *(f"  {b}" for b in bad)]
    out += ["", "vs torch = torch eager p50 / this p50 (same device, batch, size) measured in this run; >1 is faster."]
    return "\n".join(out)


def format_report(report: Mapping[str, Any]) -> str:
    return table(report)


def markdown(report: Mapping[str, Any], plots: Sequence[str] = ()) -> str:
    if report.get("kind") == "http":
        from .httpreport import http_markdown

        return http_markdown(report, plots)
    s, st = report["style"], report["settings"]
    lines = [f"# `engine bench {s['name']}` — in-process", ""]
    lines += [f"- {h}" for h in _header(report)]
    lines += [
        f"- style: `{s['name']}` {s['distribution']} {s['version']}, variant `{s['variant']}`, model config `{json.dumps(s['model_config'])}`, "
        f"weights {'random (seeded init)' if s['weights'] == 'random' else '`' + s['weights']['sha256'] + '`'}, params `{json.dumps(s['params'])}`",
        f"- timing: warm-up {st['warmup']}, " + (f"{st['seconds']} s per config (at least {st['min_iters']} iterations)" if st.get("seconds") else f"{st['iters']} iterations")
        + f", device `{st['device']}`, created {report['created']}",
    ]
    for label, rt in report.get("runtimes", {}).items():
        if rt.get("manifest_sha256"):
            lines.append(f"- `{label}` artifacts: manifest sha256 `{rt['manifest_sha256']}`")
    lines += ["", render_table(INPROC_HEADERS, _inproc_rows(report), markdown=True, align=INPROC_ALIGN), ""]
    lines.append("*vs torch*: torch eager p50 ÷ this p50, same device / batch / size, measured in this run (>1 = faster). "
                 "*img/s*: batch ÷ mean latency. *peak RSS*: the process's peak resident memory during the config (MB; `/ CUDA` max allocated).")
    stages = _stage_rows(report)
    if stages:
        lines += ["", "## Per-stage breakdown (mean ms per pipeline call)", "",
                  render_table(("runtime", "batch", "size", "stages"), stages, markdown=True, align="lrrl")]
    bad = _unavailable_lines(report) + _errors(report)
    if bad:
        lines += ["", "## Not measured", "", *(f"- {b}" for b in bad)]
    if plots:
        lines += ["", "## Plots", "", *(f"![{Path(p).stem}]({Path(p).name})" for p in plots)]
    return "\n".join(lines) + "\n"


def write_report(report: Mapping[str, Any], out_dir: str | Path, prefix: str | None = None, *, plots: bool = True) -> list[Path]:
    """Write ``PREFIX.json``, ``PREFIX.md`` and the plots (``PREFIX_*.png``) into ``out_dir``."""
    from ..io import atomic_write_json, atomic_write_text

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prefix = prefix or ("http" if report.get("kind") == "http" else "inprocess")
    if not prefix.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise ValueError(f"--name must be a plain file name stem (letters, digits, - _ .), got {prefix!r}")
    written = [atomic_write_json(out / f"{prefix}.json", report)]
    pngs: list[Path] = []
    if plots:
        from .plots import plot_report

        pngs = plot_report(report, out, prefix)
    written.append(atomic_write_text(out / f"{prefix}.md", markdown(report, [str(p) for p in pngs])))
    for p in written:
        p.chmod(0o644)  # results are for sharing (atomic writes create 0600 temp files)
    return written + pngs


def _main(argv: Sequence[str] | None = None) -> None:  # pragma: no cover - convenience
    import sys

    for path in argv if argv is not None else sys.argv[1:]:
        print(table(json.loads(Path(path).read_text())))


if __name__ == "__main__":  # pragma: no cover
    _main()

"""PNG plots of a report (matplotlib, Agg backend; the ``bench`` extra).

In-process: latency (p50, bar to p99) vs batch and throughput vs batch, one line per runtime/precision,
one panel per image size.  HTTP: latency (p50 / p95 / p99) and throughput vs concurrency.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["plot_report"]


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        log.warning("matplotlib is not installed (pip install 'styleengine[bench]'): no plots written")
        return None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _label(r: Mapping[str, Any]) -> str:
    return r["runtime"] if r["precision"] == "fp32" else f"{r['runtime']} {r['precision']}"


def _series(report: Mapping[str, Any]) -> dict[int, dict[str, list[Mapping[str, Any]]]]:
    """size → label → ok pipeline rows sorted by batch."""
    out: dict[int, dict[str, list[Mapping[str, Any]]]] = {}
    for r in report["results"]:
        if r.get("status") == "ok" and r["mode"] == "pipeline":
            out.setdefault(r["size"], {}).setdefault(_label(r), []).append(r)
    for by_label in out.values():
        for rows in by_label.values():
            rows.sort(key=lambda r: r["batch"])
    return dict(sorted(out.items()))


def _inprocess(plt: Any, report: Mapping[str, Any], out: Path, prefix: str) -> list[Path]:
    series = _series(report)
    if not series:
        return []
    style = report["style"]["name"]
    machine = report.get("machine", {})
    where = machine.get("gpu") or f"{machine.get('cpu', '?')} ({machine.get('affinity_cpus') or machine.get('cpus')} CPUs)"
    paths = []
    for what, ylabel, fname in (
        ("latency", "latency per batch, ms (p50; bar to p99)", "latency_vs_batch"),
        ("throughput", "images / s", "throughput_vs_batch"),
    ):
        fig, axes = plt.subplots(1, len(series), figsize=(5.2 * len(series), 4), squeeze=False)
        for ax, (size, by_label) in zip(axes[0], series.items(), strict=True):
            for label, rows in by_label.items():
                xs = [r["batch"] for r in rows]
                if what == "latency":
                    ys = [r["latency_ms"]["p50"] for r in rows]
                    up = [r["latency_ms"]["p99"] - r["latency_ms"]["p50"] for r in rows]
                    ax.errorbar(xs, ys, yerr=[[0] * len(ys), up], marker="o", capsize=3, label=label)
                else:
                    ax.plot(xs, [r["images_per_s"] for r in rows], marker="o", label=label)
            ax.set_title(f"{size}×{size}")
            ax.set_xlabel("batch size")
            ax.set_ylabel(ylabel)
            ax.set_xticks(sorted({r["batch"] for rows in by_label.values() for r in rows}))
            ax.set_ylim(bottom=0)
            ax.grid(alpha=0.3)
            ax.legend()
        fig.suptitle(f"{style}: {what} vs batch — {where}", fontsize=10)
        fig.tight_layout()
        path = out / f"{prefix}_{fname}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def _http(plt: Any, report: Mapping[str, Any], out: Path, prefix: str) -> list[Path]:
    rows = [r for r in report["results"] if r.get("latency_ms")]
    if not rows:
        return []
    rows.sort(key=lambda r: r["concurrency"])
    xs = [r["concurrency"] for r in rows]
    title = f"{report['style']['name']} over HTTP ({report.get('server', {}).get('runtime') or '?'}) — {report['url']}"
    paths = []
    fig, ax = plt.subplots(figsize=(6, 4))
    for q in ("p50", "p95", "p99"):
        ax.plot(xs, [r["latency_ms"][q] for r in rows], marker="o", label=q)
    ref = (report.get("compare") or {}).get("inprocess_b1_p50_ms")
    if ref:
        ax.axhline(ref, color="grey", ls="--", label="in-process batch 1 p50")
    paths.append(_save_concurrency_axes(plt, fig, ax, xs, "request latency, ms", title, out / f"{prefix}_latency_vs_concurrency.png"))

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(xs, [r["images_per_s"] for r in rows], marker="o", label="HTTP images/s")
    cmp = report.get("compare") or {}
    if cmp.get("inprocess_b1_images_per_s"):
        ax.axhline(cmp["inprocess_b1_images_per_s"], color="grey", ls="--", label="in-process batch 1")
    if cmp.get("inprocess_best_images_per_s"):
        ax.axhline(cmp["inprocess_best_images_per_s"], color="grey", ls=":", label=f"in-process best (batch {cmp.get('inprocess_best_batch')})")
    paths.append(_save_concurrency_axes(plt, fig, ax, xs, "images / s", title, out / f"{prefix}_throughput_vs_concurrency.png"))
    return paths


def _save_concurrency_axes(plt: Any, fig: Any, ax: Any, xs: list[int], ylabel: str, title: str, path: Path) -> Path:
    """Label a vs-concurrency panel (log x axis, ticks at the measured levels), save it and close the figure."""
    ax.set(xlabel="concurrency", ylabel=ylabel, title=title, xscale="log", xticks=xs)
    ax.set_xticklabels([str(x) for x in xs])
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.title.set_fontsize(9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_report(report: Mapping[str, Any], out_dir: str | Path, prefix: str) -> list[Path]:
    plt = _pyplot()
    if plt is None:
        return []
    out = Path(out_dir)
    if report.get("kind") == "http":
        return _http(plt, report, out, prefix)
    return _inprocess(plt, report, out, prefix)

"""AdaIN latency: torch vs ONNX Runtime, with and without cached style features.

One request = one content image + one style image at ``--size`` (default 512x512, the references'
default working size), through ``AdaINStyle.infer`` -- the same pipeline the CLI and the server run:
content encoder pass, style statistics (an encoder pass, or a cache hit), AdaIN, decoder pass, resize back.

* ``cached``: the same style image every request; its statistics are computed during warm-up, so each
  timed request costs one encoder pass (content) and one decoder pass;
* ``uncached``: the style cache is disabled, so each request also encodes the style image (the cost of a
  new style for every request).

Run from the repository root::

    .venv/bin/python benchmarks/adain_latency.py                      # random weights, CPU
    .venv/bin/python benchmarks/adain_latency.py --weights ~/adain    # reference weights (same timings)
    .venv/bin/python benchmarks/adain_latency.py --device cuda:0 --runtimes torch,onnxruntime

Writes ``adain_latency.json`` and ``adain_latency.md`` under ``benchmarks/results/<machine>-<date>/``.
Weights do not change the timings (same architecture); random weights are used unless ``--weights``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def summarize(samples_ms: list[float]) -> dict[str, float]:
    """n, mean, min, p50, p95, max of latencies in milliseconds (percentiles: numpy's linear interpolation)."""
    a = np.asarray(samples_ms, dtype=np.float64)
    return {
        "n": int(a.size),
        "mean": float(a.mean()),
        "min": float(a.min()),
        "p50": float(np.percentile(a, 50)),
        "p95": float(np.percentile(a, 95)),
        "max": float(a.max()),
    }


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_slug(device: str) -> str:
    """The results folder's machine part, the same as ``engine bench`` uses (``amd-epyc-2cpu``, ``nvidia-h100-…``)."""
    try:
        from styleengine.bench.env import machine_slug as engine_slug

        return engine_slug()
    except ImportError:  # an engine without the bench package: same shape, computed here
        if device.startswith("cuda"):
            import torch

            return re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(torch.device(device)).lower()).strip("-")
        cpu = re.sub(r"[^a-z0-9]+", "-", re.sub(r"\((r|tm)\)|\b(cpu|processor|\d+-core)\b|@.*$", " ", cpu_name(), flags=re.I).lower())
        return f"{cpu.strip('-')}-{os.cpu_count()}cpu"


def test_images(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Content and style pictures from scikit-image's bundled data when present, else synthetic ones."""
    import torch

    from styleengine.preprocess import from_tensor, resize, to_tensor

    def fit(img: np.ndarray) -> np.ndarray:
        img = img.astype(np.float32) / (255.0 if img.dtype == np.uint8 else 1.0)
        return from_tensor(resize(to_tensor(img, (0, 1)), (size, size)), (0, 1))

    try:
        from skimage import data

        return fit(data.astronaut()), fit(data.coffee())
    except Exception:  # noqa: BLE001 - scikit-image is a dev extra
        g = torch.Generator().manual_seed(0)
        return tuple(torch.rand(size, size, 3, generator=g).numpy() for _ in range(2))  # type: ignore[return-value]


def open_sessions(style: Any, runtime: str, device: str, folder: Path, threads: int | None) -> dict[str, Any]:
    from styleengine.export.onnx import export_graph
    from styleengine.runtime.base import SessionOptions
    from styleengine.runtime.onnxruntime import OrtSession
    from styleengine.runtime.torch import TorchSession

    options = SessionOptions(device=device, threads=threads)
    if runtime == "torch":
        return {s.name: TorchSession(s, options) for s in style.graphs()}
    sessions = {}
    for spec in style.graphs():
        path = folder / f"{spec.name}.onnx"
        if not path.is_file():
            print(f"exporting {spec.name} -> {path}", file=sys.stderr)
            export_graph(spec, path, exporter="dynamo")
        sessions[spec.name] = OrtSession(spec, path, options)
    return sessions


class Case:
    """One configuration (runtime x cached/uncached): its own Style instance and sessions."""

    PARTS = ("encode_content_ms", "styles_ms", "decode_ms")

    def __init__(self, style_cls: Any, weights: str | None, runtime: str, device: str, cached: bool, size: int,
                 onnx_dir: Path, threads: int | None) -> None:
        self.runtime, self.device, self.cached = runtime, device, cached
        self.style = style_cls(cache_size=None if cached else 0)
        if weights:
            self.style.load_weights(weights)
        self.sessions = open_sessions(self.style, runtime, device, onnx_dir, threads)
        self.cfg = self.style.parse_config({"content_size": size, "style_size": size})
        self.total: list[float] = []
        self.parts: dict[str, list[float]] = {k: [] for k in self.PARTS}
        self.cache_states: set[str] = set()

    def call(self, req: Any, sync: Any, record: bool) -> None:
        sync()
        t0 = time.perf_counter()
        [res] = self.style.infer(self.sessions, [req], self.cfg)
        sync()
        if record:
            self.total.append((time.perf_counter() - t0) * 1e3)
            for k in self.PARTS:
                self.parts[k].append(res.timings[k])
            self.cache_states.add(res.info["style_cache"])

    def result(self) -> dict[str, Any]:
        expected = "hit" if self.cached else "miss"
        assert self.cache_states == {expected}, f"style cache was {self.cache_states}, expected {expected}"
        return {
            "runtime": self.runtime,
            "device": self.device,
            "session_device": {n: s.device for n, s in self.sessions.items()},
            "style_cache": "cached" if self.cached else "uncached",
            "latency_ms": summarize(self.total),
            "breakdown_p50_ms": {k: summarize(v)["p50"] for k, v in self.parts.items()},
        }


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"# AdaIN latency, {report['size']}x{report['size']}, {report['date']}",
        "",
        f"Machine: {m['cpu']} ({m['cpus']} logical CPUs), device `{report['device']}`, torch {m['torch']} "
        f"({m['torch_threads']} threads), onnxruntime {m['onnxruntime']} ({m['onnxruntime_threads']} threads); load average before/after "
        f"{m['loadavg_before']} / {m['loadavg_after']}.",
        f"Weights: {report['weights']}. {report['iters']} timed requests after {report['warmup']} warm-up ones per "
        "configuration, configurations interleaved round by round; each request is one content + one style image "
        "through `AdaINStyle.infer`. `cached`: the style's relu4_1 statistics come from the style cache (one encoder "
        "and one decoder pass per request); `uncached`: the style image is encoded on every request.",
        "",
        "| runtime | style features | p50 ms | p95 ms | mean ms | min ms | encode content p50 | style p50 | decode p50 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        lat, b = r["latency_ms"], r["breakdown_p50_ms"]
        lines.append(
            f"| {r['runtime']} | {r['style_cache']} | {lat['p50']:.1f} | {lat['p95']:.1f} | {lat['mean']:.1f} | {lat['min']:.1f} | "
            f"{b['encode_content_ms']:.1f} | {b['styles_ms']:.1f} | {b['decode_ms']:.1f} |"
        )
    lines += ["", f"Command: `{report['command']}`", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=512, help="content and style side (square), multiple of 8")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--runtimes", default="torch,onnxruntime")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--weights", help="AdaIN weights (folder with decoder.pth + vgg_normalised.pth, or a checkpoint)")
    ap.add_argument("--onnx-dir", type=Path, help="reuse/keep exported ONNX here (default: a temporary folder)")
    ap.add_argument("--threads", type=int, help="torch and ONNX Runtime intra-op threads (default: the libraries' own)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args(argv)

    import onnxruntime
    import torch

    from styleengine.style import StyleRequest
    from styleengine_adain import AdaINStyle

    if args.threads:
        torch.set_num_threads(args.threads)
    content, style_img = test_images(args.size)
    req = StyleRequest(images={"content": content, "style": [style_img]})
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    load_before = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory() as tmp:
        onnx_dir = args.onnx_dir or Path(tmp)
        onnx_dir.mkdir(parents=True, exist_ok=True)
        runtimes = [r.strip() for r in args.runtimes.split(",") if r.strip()]
        cases = [Case(AdaINStyle, args.weights, rt, args.device, cached, args.size, onnx_dir, args.threads)
                 for rt in runtimes for cached in (True, False)]
        # Interleaved: every round runs each configuration once, so on a shared machine a slow minute
        # hits all of them alike instead of one configuration's whole series.
        for i in range(args.warmup + args.iters):
            for case in cases:
                case.call(req, sync, record=i >= args.warmup)
        results = [case.result() for case in cases]
        for r in results:
            lat = r["latency_ms"]
            print(f"{r['runtime']:12s} {r['style_cache']:9s} p50 {lat['p50']:8.1f} ms  p95 {lat['p95']:8.1f} ms", file=sys.stderr)
    date = dt.date.today().isoformat()
    report = {
        "benchmark": "adain_latency",
        "date": date,
        "size": args.size,
        "iters": args.iters,
        "warmup": args.warmup,
        "device": args.device,
        "weights": args.weights or "random initialisation (timings do not depend on the values)",
        "command": " ".join([".venv/bin/python", "benchmarks/adain_latency.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": {
            "cpu": cpu_name(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "onnxruntime_threads": args.threads or "default",
            "onnxruntime": onnxruntime.__version__,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "loadavg_before": load_before,
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        },
        "results": results,
    }
    folder = args.out / f"{machine_slug(args.device)}-{date}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adain_latency.json").write_text(json.dumps(report, indent=2) + "\n")
    (folder / "adain_latency.md").write_text(markdown(report))
    print(folder)
    return folder


if __name__ == "__main__":
    main()

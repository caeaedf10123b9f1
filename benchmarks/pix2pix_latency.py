"""pix2pix generator latency: torch eager vs ONNX Runtime, batch 1 and 8 at 256 x 256, p50 / p95.

    python benchmarks/pix2pix_latency.py                                   # CPU, fp32, unet_256 ngf 64
    python benchmarks/pix2pix_latency.py --device cuda --precision fp16    # GPU (torch in fp16; ORT runs the fp32 ONNX on CUDA)

Times one ``Session.run`` of the ``generator`` graph (the engine's own sessions, random weights: latency
does not depend on their values), after warm-up, with ``time.perf_counter`` and a CUDA synchronise
around each call on GPU.  Writes ``pix2pix_latency.json`` and ``.md`` to
``benchmarks/results/<machine>-<date>/``.  :func:`latency_stats` is the reusable timing helper.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def latency_stats(fn: Callable[[], Any], *, warmup: int = 3, iters: int = 30, sync: Callable[[], None] | None = None) -> dict[str, float]:
    """Call ``fn`` ``warmup`` times untimed, then ``iters`` times, timing each call (``sync`` before and
    after, e.g. ``torch.cuda.synchronize``); milliseconds: p50, p95 (linear interpolation), mean, min, max.

    The loop and the statistics are the engine's (:func:`styleengine.bench.measure` /
    :func:`styleengine.bench.summarize`), so these numbers mean what ``engine bench``'s do."""
    from styleengine.bench import measure, no_sync, summarize

    s = summarize(measure(lambda _: fn(), warmup=warmup, iters=iters, sync=sync or no_sync))
    return {"p50_ms": s["p50"], "p95_ms": s["p95"], "mean_ms": s["mean"], "min_ms": s["min"], "max_ms": s["max"], "iters": iters, "warmup": warmup}


def machine_name(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        name = torch.cuda.get_device_name(torch.device(device))
    else:
        name = platform.processor() or platform.machine()
        try:
            name = next(line.split(":", 1)[1] for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name"))
        except (OSError, StopIteration):
            pass
        name = f"{name}-{os.cpu_count()}cpu"
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def main() -> None:
    import onnxruntime
    import torch

    from styleengine.export.onnx import export_graph
    from styleengine.nn import dropout_mask_shapes, make_dropout_masks
    from styleengine.runtime.base import SessionOptions
    from styleengine.runtime.onnxruntime import OrtSession
    from styleengine.runtime.torch import TorchSession
    from styleengine_pix2pix import Pix2Pix

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"], help="torch precision (ORT always runs the fp32 ONNX)")
    p.add_argument("--netG", default="unet_256")
    p.add_argument("--ngf", type=int, default=64)
    p.add_argument("--variant", default="eval", choices=["eval", "reference"])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--iters", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch and ORT [torch's default]")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = p.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    cuda = args.device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else None
    style = Pix2Pix({"netG": args.netG, "ngf": args.ngf}, variant=args.variant)
    [spec] = style.graphs()
    b = max(args.batches)
    spec = spec.with_dims({"batch": {"min": 1, "opt": min(args.batches), "max": b}, "height": {"opt": args.size, "max": max(args.size, spec.dims["height"].max)}, "width": {"opt": args.size, "max": max(args.size, spec.dims["width"].max)}})
    tmp = Path(tempfile.mkdtemp(prefix="pix2pix-bench-"))
    t0 = time.perf_counter()
    export_graph(spec, tmp / "generator.onnx", exporter=spec.exporter or "dynamo")
    export_s = time.perf_counter() - t0
    sessions = {
        "torch": TorchSession(spec, SessionOptions(device=args.device, precision=args.precision)),
        "onnxruntime": OrtSession(spec, tmp / "generator.onnx", SessionOptions(device=args.device, threads=threads if not cuda else None)),
    }
    load_before = os.getloadavg()
    rows = []
    for batch in args.batches:
        feeds = {"image": torch.rand(batch, 3, args.size, args.size, device=args.device) * 2 - 1}
        if style.uses_masks:  # reference variant: dropout masks sized by the batch and the image
            shapes = dropout_mask_shapes(args.netG, batch, args.size, args.size, ngf=args.ngf)
            feeds.update({f"dropout_{i}": m.to(args.device) for i, m in enumerate(make_dropout_masks(shapes, list(range(batch))))})
        outs = {}
        for name, sess in sessions.items():
            outs[name] = sess.run(feeds)["output"].float().cpu()
            stats = latency_stats(lambda s=sess: s.run(feeds), warmup=args.warmup, iters=args.iters, sync=sync)
            precision = args.precision if name == "torch" else "fp32"
            rows.append({"runtime": name, "device": sess.device, "precision": precision, "batch": batch, "size": args.size, **stats,
                         "ms_per_image_p50": stats["p50_ms"] / batch})  # fmt: skip
            print(f"{name:12s} {sess.device:24s} {precision} batch {batch}: p50 {stats['p50_ms']:.1f} ms  p95 {stats['p95_ms']:.1f} ms", flush=True)
        rows[-1]["max_abs_vs_torch"] = float((outs["onnxruntime"] - outs["torch"]).abs().max())

    today = dt.date.today().isoformat()
    folder = args.out / f"{machine_name(args.device)}-{today}"
    folder.mkdir(parents=True, exist_ok=True)
    stem = "pix2pix_latency" + ("" if args.device == "cpu" and args.precision == "fp32" else f"_{args.device.replace(':', '')}_{args.precision}")
    record = {
        "benchmark": "pix2pix generator latency (Session.run)",
        "date": today,
        "model": {"netG": args.netG, "ngf": args.ngf, "variant": args.variant, "weights": "random (seeded)"},
        "machine": {"name": machine_name(args.device), "platform": platform.platform(), "cpu_count": os.cpu_count(), "torch_threads": threads,
                    "loadavg_1min_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)]},
        "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
        "exporter": spec.exporter, "export_seconds": round(export_s, 1),
        "command": "python benchmarks/pix2pix_latency.py " + " ".join(f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in vars(args).items() if k != "out" and v is not None),
        "results": rows,
    }  # fmt: skip
    (folder / f"{stem}.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = [
        f"# pix2pix latency — {record['machine']['name']}, {today}",
        "",
        f"{args.netG}, ngf {args.ngf}, variant {args.variant}, {args.size}x{args.size}, random weights; one `Session.run` of the `generator` graph; "
        f"{args.warmup} warm-up + {args.iters} timed calls each; torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, {threads} threads; "
        f"1-min load average before / after: {record['machine']['loadavg_1min_before_after']}.",
        "",
        "| runtime | device | precision | batch | p50 ms | p95 ms | p50 ms / image |",
        "|---|---|---|---:|---:|---:|---:|",
        *(f"| {r['runtime']} | {r['device']} | {r['precision']} | {r['batch']} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['ms_per_image_p50']:.1f} |" for r in rows),
        "",
        f"Command: `{record['command']}`",
        "",
    ]
    (folder / f"{stem}.md").write_text("\n".join(lines))
    print(f"wrote {folder / stem}.json and .md")


if __name__ == "__main__":
    main()

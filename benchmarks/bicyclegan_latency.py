"""BicycleGAN generator latency: torch eager vs ONNX Runtime at inputs x n_samples rows, p50 / p95.

    python benchmarks/bicyclegan_latency.py                                    # CPU, fp32, unet_256 ngf 64, 256 x 256
    python benchmarks/bicyclegan_latency.py --inputs 1 2 --n-samples 1 4       # rows = inputs x n_samples: 1, 2, 4, 8
    python benchmarks/bicyclegan_latency.py --device cuda --precision fp16     # GPU (torch in fp16; ORT runs the fp32 ONNX on CUDA)

Every output sample of every input is one batch row of the ``generator`` graph (``image`` repeated per sample,
``z`` one code per row), so a request for ``n_samples`` outputs of ``inputs`` images costs one ``Session.run`` at
batch ``inputs x n_samples``; that call is what is timed (the engine's own sessions, random weights: latency does
not depend on their values), after warm-up, with the engine's timing loop (:func:`styleengine.bench.measure`, the
one behind ``engine bench``) and a CUDA synchronise around each call on GPU.  The encoder (one 256 x 256 image per
example) is timed once per row count too.  Writes ``bicyclegan_latency.json`` and ``.md`` to
``benchmarks/results/<machine>-<date>/``.

The end-to-end numbers (decode, pipeline, HTTP) come from ``engine bench bicyclegan --runtime torch,onnxruntime
--batch 1,2 --set n_samples=4`` as for every style (benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pix2pix_latency import latency_stats, machine_name  # noqa: E402  (the same timing helper and machine names)


def main() -> None:
    import onnxruntime
    import torch

    from styleengine.export.onnx import export_graph
    from styleengine.runtime.base import SessionOptions
    from styleengine.runtime.onnxruntime import OrtSession
    from styleengine.runtime.torch import TorchSession
    from styleengine_bicyclegan import BicycleGAN
    from styleengine_bicyclegan.pipeline import draw_z

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"], help="torch precision (ORT always runs the fp32 ONNX)")
    p.add_argument("--netG", default="unet_256", choices=["unet_256", "unet_128"])
    p.add_argument("--where-add", default="all", choices=["all", "input"])
    p.add_argument("--ngf", type=int, default=64)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--inputs", type=int, nargs="+", default=[1, 2], help="input images per call")
    p.add_argument("--n-samples", type=int, nargs="+", default=[1, 4], help="samples (z) per input")
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
    style = BicycleGAN({"netG": args.netG, "where_add": args.where_add, "ngf": args.ngf, "netE": "resnet_256" if args.netG == "unet_256" else "resnet_128"})
    gen, enc = style.graphs()
    combos = sorted({(i, n) for i in args.inputs for n in args.n_samples}, key=lambda c: (c[0] * c[1], c))
    b = max(i * n for i, n in combos)
    gen = gen.with_dims({"batch": {"min": 1, "opt": min(i * n for i, n in combos), "max": b},
                         "height": {"opt": args.size, "max": max(args.size, gen.dims["height"].max)},
                         "width": {"opt": args.size, "max": max(args.size, gen.dims["width"].max)}})  # fmt: skip
    enc = enc.with_dims({"batch": {"min": 1, "opt": 1, "max": max(args.inputs)}})
    tmp = Path(tempfile.mkdtemp(prefix="bicyclegan-bench-"))
    t0 = time.perf_counter()
    for spec in (gen, enc):
        export_graph(spec, tmp / f"{spec.name}.onnx", exporter=spec.exporter or "dynamo")
    export_s = time.perf_counter() - t0
    opts = {"torch": SessionOptions(device=args.device, precision=args.precision), "onnxruntime": SessionOptions(device=args.device, threads=threads if not cuda else None)}
    sessions = {
        "torch": {s.name: TorchSession(s, opts["torch"]) for s in (gen, enc)},
        "onnxruntime": {s.name: OrtSession(s, tmp / f"{s.name}.onnx", opts["onnxruntime"]) for s in (gen, enc)},
    }
    load_before = os.getloadavg()
    rows = []
    for inputs, n_samples in combos:
        batch = inputs * n_samples
        images = torch.rand(inputs, 3, args.size, args.size) * 2 - 1
        feeds = {"image": images.repeat_interleave(n_samples, 0).to(args.device), "z": torch.cat([draw_z(i, n_samples, 8) for i in range(inputs)]).to(args.device)}
        examples = {"image": (torch.rand(inputs, 3, style.model_config.encoder_size, style.model_config.encoder_size) * 2 - 1).to(args.device)}
        outs = {}
        for name, sess in sessions.items():
            outs[name] = sess["generator"].run(feeds)["output"].float().cpu()
            stats = latency_stats(lambda s=sess["generator"]: s.run(feeds), warmup=args.warmup, iters=args.iters, sync=sync)
            e_stats = latency_stats(lambda s=sess["encoder"]: s.run(examples), warmup=1, iters=max(3, args.iters // 3), sync=sync)
            precision = args.precision if name == "torch" else "fp32"
            rows.append({"runtime": name, "device": sess["generator"].device, "precision": precision, "inputs": inputs, "n_samples": n_samples,
                         "batch": batch, "size": args.size, **stats, "ms_per_sample_p50": stats["p50_ms"] / batch,
                         "encoder_p50_ms": e_stats["p50_ms"]})  # fmt: skip
            print(f"{name:12s} {sess['generator'].device:24s} {precision} {inputs} x {n_samples} = {batch} rows: p50 {stats['p50_ms']:.1f} ms  "
                  f"p95 {stats['p95_ms']:.1f} ms  (encoder x{inputs}: {e_stats['p50_ms']:.1f} ms)", flush=True)
        rows[-1]["max_abs_vs_torch"] = float((outs["onnxruntime"] - outs["torch"]).abs().max())

    today = dt.date.today().isoformat()
    folder = args.out / f"{machine_name(args.device)}-{today}"
    folder.mkdir(parents=True, exist_ok=True)
    stem = "bicyclegan_latency" + ("" if args.device == "cpu" and args.precision == "fp32" else f"_{args.device.replace(':', '')}_{args.precision}")
    record = {
        "benchmark": "BicycleGAN generator latency (Session.run at inputs x n_samples rows)",
        "date": today,
        "model": {"netG": args.netG, "where_add": args.where_add, "ngf": args.ngf, "nz": 8, "weights": "random (seeded)"},
        "machine": {"name": machine_name(args.device), "platform": platform.platform(), "cpu_count": os.cpu_count(), "torch_threads": threads,
                    "loadavg_1min_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)]},
        "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
        "exporter": gen.exporter, "export_seconds": round(export_s, 1),
        "command": "python benchmarks/bicyclegan_latency.py " + " ".join(f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in vars(args).items() if k != "out" and v is not None),
        "results": rows,
    }  # fmt: skip
    (folder / f"{stem}.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = [
        f"# BicycleGAN latency — {record['machine']['name']}, {today}",
        "",
        f"{args.netG} (where_add={args.where_add}), ngf {args.ngf}, nz 8, {args.size}x{args.size}, random weights; one `Session.run` of the "
        f"`generator` graph at inputs x n_samples rows; {args.warmup} warm-up + {args.iters} timed calls each; torch {torch.__version__}, "
        f"onnxruntime {onnxruntime.__version__}, {threads} threads; 1-min load average before / after: {record['machine']['loadavg_1min_before_after']}.",
        "",
        "| runtime | device | precision | inputs | n_samples | rows | p50 ms | p95 ms | p50 ms / sample | encoder p50 ms |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
        *(f"| {r['runtime']} | {r['device']} | {r['precision']} | {r['inputs']} | {r['n_samples']} | {r['batch']} | {r['p50_ms']:.1f} | "
          f"{r['p95_ms']:.1f} | {r['ms_per_sample_p50']:.1f} | {r['encoder_p50_ms']:.1f} |" for r in rows),
        "",
        f"Command: `{record['command']}`",
        "",
    ]  # fmt: skip
    (folder / f"{stem}.md").write_text("\n".join(lines))
    print(f"wrote {folder / stem}.json and .md")


if __name__ == "__main__":
    main()

"""InstructPix2Pix per-stage latency: text encoder, UNet × steps, VAE encode, VAE decode, per runtime.

One request = one square image + an instruction through ``InstructPix2PixStyle.infer``, the pipeline the CLI and
the server run (text encoder twice: instruction + empty prompt; VAE encoder once; the UNet once per step on 3 rows
per request; VAE decoder once).  Every graph's Session is wrapped in the engine's timing proxy
(:mod:`styleengine.bench.proxy`), so each stage's share comes from the same timed iterations as the total;
``other`` is what the pipeline spends outside the graphs (tokenising, scheduler steps, resizing).  Statistics go
through :func:`styleengine.bench.summarize` like every benchmark of the project.

Variants:

* ``torch``: torch eager with the attention the graphs are exported with (diffusers' classic ``AttnProcessor``);
* ``torch+sdpa``: the same modules with ``scaled_dot_product_attention`` (diffusers ``AttnProcessor2_0``,
  transformers ``sdpa``): what a torch deployment should run;
* ``torch+compile``: torch+sdpa with the UNet through ``torch.compile`` (default on CUDA, ``--compile`` on CPU;
  compilation happens in the warm-up and is not timed);
* ``onnxruntime-unet``: the UNet on ONNX Runtime, the other graphs on torch (per-graph runtimes);
* ``onnxruntime``: every graph on ONNX Runtime (CPU, or the CUDA execution provider with onnxruntime-gpu; fp32:
  the engine's ORT runtime runs the exported fp32 ONNX);
* ``tensorrt``: engines built by ``engine export --trt`` where TensorRT is installed (``--sd15`` mode).

Run from the repository root::

    .venv/bin/python benchmarks/instruct_pix2pix_stages.py                       # tiny random components, CPU
    .venv/bin/python benchmarks/instruct_pix2pix_stages.py --sd15 --device cuda --precision fp16
    .venv/bin/python benchmarks/instruct_pix2pix_stages.py --sd15 --device cuda --precision fp16 \\
        --source hf://timbrooks/instruct-pix2pix@<rev>                           # real weights: same timings

Writes ``instruct_pix2pix_stages[-sd15].json`` and ``.md`` under ``benchmarks/results/<machine>-<date>/``.
The tiny mode measures the pipeline's structure and the runtimes' per-call overheads, not SD 1.5 speed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import logging
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
STAGES = ("text_encoder", "unet", "vae_encoder", "vae_decoder")
INSTRUCTION = "turn it into a watercolour painting"

log = logging.getLogger("ip2p-bench")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sd15", action="store_true", help="SD 1.5-sized components (random unless --source) instead of tiny")
    p.add_argument("--source", help="real weights (diffusers folder, .ckpt, hf://...); implies SD 1.5 sizes")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"], help="torch / TensorRT precision")
    p.add_argument("--size", type=int, help="square image side = working resolution [tiny 128, sd15 512]")
    p.add_argument("--steps", type=int, help="denoising steps [tiny 10, sd15 20]")
    p.add_argument("--batch", type=int, default=1, help="requests per infer call")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--iters", type=int, help="timed calls per variant [tiny 10, sd15 5]")
    p.add_argument("--variants", help="comma-separated subset of: torch, torch+sdpa, torch+compile, onnxruntime-unet, "
                                      "onnxruntime, tensorrt")
    p.add_argument("--compile", action="store_true", help="also torch.compile on CPU (always tried on CUDA)")
    p.add_argument("--exporter", default="dynamo", choices=["dynamo", "torchscript"], help="ONNX exporter")
    p.add_argument("--threads", type=int, help="intra-op threads for torch and onnxruntime")
    p.add_argument("--out", type=Path, help="output folder [benchmarks/results/<machine>-<date>]")
    args = p.parse_args(argv)
    args.sd15 = args.sd15 or bool(args.source)
    args.size = args.size or (512 if args.sd15 else 128)
    args.steps = args.steps or (20 if args.sd15 else 10)
    args.iters = args.iters or (5 if args.sd15 else 10)
    if args.size % 64:
        p.error("--size must be a multiple of 64 (the working-size grid of InstructPix2Pix)")
    return args


def default_variants(args: argparse.Namespace) -> list[str]:
    out = ["torch", "torch+sdpa"]
    if args.device.startswith("cuda") or args.compile:
        out.append("torch+compile")
    out += ["onnxruntime-unet", "onnxruntime"]
    if args.sd15 and args.device.startswith("cuda"):
        out.append("tensorrt")
    return out


def static_profile(batch: int, size: int) -> Any:
    """Export dims fixed at the benchmarked shape (what a latency-tuned deployment would build)."""
    from styleengine.export.options import ExportProfile, ProfileDim

    lat = size // 8

    def fixed(v: int, m: int = 1) -> ProfileDim:
        return ProfileDim(min=v, opt=v, max=v, multiple_of=m)

    return ExportProfile(name=f"bench-b{batch}-s{size}", dims={
        "batch": fixed(batch), "unet_batch": fixed(3 * batch, 3),
        "latent_height": fixed(lat, 8), "latent_width": fixed(lat, 8),
        "height": fixed(size, 64), "width": fixed(size, 64),
    })


def export(engine: Any, style: Any, args: argparse.Namespace, out: Path, trt: bool) -> tuple[Path, dict[str, Any]]:
    from styleengine.export.options import ExportOptions

    opts = ExportOptions(out_dir=out, trt=trt, precision=args.precision if trt else "fp32", exporter=args.exporter,
                         profile=static_profile(args.batch, args.size), validate=True)
    result = engine.hook.style_export(style=style, options=opts)
    parity = {g.name: {"passed": g.passed, **_worst(g.parity)} for g in result.graphs}
    return result.out_dir, parity


def _worst(parity: Any) -> dict[str, float]:
    from styleengine.export.validate import worst

    return worst(parity) if parity else {}


def enable_sdpa(sessions: dict[str, Any]) -> None:
    """SDPA attention on the (torch) sessions' modules; the exported graphs pin the classic processor."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    for name, s in sessions.items():
        if getattr(s, "runtime", None) != "torch":
            continue
        wrapper = s.module
        inner = getattr(wrapper, "unet", None) or getattr(wrapper, "vae", None)
        if inner is not None:
            inner.set_attn_processor(AttnProcessor2_0())
        elif hasattr(wrapper, "text_encoder"):
            wrapper.text_encoder.set_attn_implementation("sdpa")


def enable_compile(sessions: dict[str, Any]) -> None:
    import torch

    s = sessions["unet"]
    s.module.unet = torch.compile(s.module.unet, fullgraph=False, dynamic=False)


def open_variant(engine: Any, style: Any, variant: str, args: argparse.Namespace, artifacts: dict[str, Path]) -> dict[str, Any]:
    from styleengine.runtime.base import SessionOptions
    from styleengine.sessions import open_sessions

    dev = "cuda:0" if args.device == "cuda" else args.device
    torch_opts = SessionOptions(device=dev, precision=args.precision, threads=args.threads)
    ort_opts = SessionOptions(device=dev, precision="fp32", threads=args.threads)
    if variant in ("torch", "torch+sdpa", "torch+compile"):
        sessions = open_sessions(engine, style, "torch", options=torch_opts)
        if variant != "torch":
            enable_sdpa(sessions)
        if variant == "torch+compile":
            enable_compile(sessions)
        return sessions
    if variant == "onnxruntime-unet":
        base = open_sessions(engine, style, "torch", options=torch_opts)
        ort = open_sessions(engine, style, {"*": "torch", "unet": "onnxruntime"}, artifacts=artifacts["onnx"], options=ort_opts)
        enable_sdpa(base)
        return {**base, "unet": ort["unet"]}
    if variant == "onnxruntime":
        return open_sessions(engine, style, "onnxruntime", artifacts=artifacts["onnx"], options=ort_opts)
    if variant == "tensorrt":
        return open_sessions(engine, style, "tensorrt", artifacts=artifacts["trt"], options=SessionOptions(device=dev, precision=args.precision))
    raise ValueError(f"unknown variant {variant!r}")


def run_variant(engine: Any, style: Any, sessions: dict[str, Any], args: argparse.Namespace, cfg: Any) -> tuple[dict[str, Any], np.ndarray]:
    from styleengine.bench import cuda_sync, measure, summarize
    from styleengine.bench.inputs import make_requests
    from styleengine.bench.proxy import StageRecorder, on_cuda, wrap_sessions

    rec = StageRecorder()
    wrapped = wrap_sessions(sessions, rec)
    reqs = make_requests(style, args.batch, args.size, texts={"instruction": INSTRUCTION})
    sync = cuda_sync("cuda") if any(on_cuda(s) for s in sessions.values()) else (lambda: None)
    last: list[Any] = []

    def call(_: Any) -> None:
        last[:] = engine.hook.style_infer(style=style, sessions=wrapped, batch=reqs, cfg=cfg)

    samples = measure(call, warmup=args.warmup, iters=args.iters, sync=sync, on_start=rec.begin, on_end=rec.end)
    total = summarize(samples, batch=args.batch)
    stages = rec.summary(total["mean"])
    unet = stages.get("unet", {})
    row = {
        "total_ms": total,
        "s_per_image": total["mean"] / 1000 / args.batch,
        "unet_it_per_s": 1000.0 / unet["per_call_ms"] if unet.get("per_call_ms") else None,
        "stages": stages,
        "devices": {n: {"runtime": s.runtime, "device": s.device} for n, s in sessions.items()},
    }
    return row, np.asarray(last[0].image)


def markdown(report: dict[str, Any]) -> str:
    from styleengine.bench import fmt_ms

    c = report["config"]
    m = report["environment"]["machine"]
    lines = [
        f"# InstructPix2Pix per-stage latency ({c['mode']})",
        "",
        f"{report['created']} · {m.get('gpu') or m.get('cpu')} · {c['device']} · torch precision {c['precision']} · "
        f"{c['size']}×{c['size']} · {c['steps']} steps · batch {c['batch']} · {c['iters']} timed calls after "
        f"{c['warmup']} warm-up · {c['threads']} torch thread(s) · exporter {c['exporter']}",
        "",
        "Milliseconds per `infer` call (mean over the timed calls); each stage is the sum of its calls in one infer "
        "(UNet: one call per step on 3 rows per request; text encoder: instruction + empty prompt).",
        "",
        "| variant | s/image | p50 ms | text encoder | UNet × steps (per call) | VAE encode | VAE decode | other | UNet it/s | vs torch | max abs diff vs torch |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    base = next((r for r in report["results"] if r["variant"] == "torch" and "error" not in r), None)
    for r in report["results"]:
        if "error" in r:
            lines.append(f"| {r['variant']} | – | – | – | – | – | – | – | – | – | {r['error'].splitlines()[0][:120]} |")
            continue
        st = r["stages"]

        def ms(g: str) -> str:
            return fmt_ms(st.get(g, {}).get("mean_ms"))

        u = st.get("unet", {})
        ratio = base["total_ms"]["mean"] / r["total_ms"]["mean"] if base else None
        diff = r.get("max_abs_diff_vs_torch")
        lines.append(
            f"| {r['variant']} | {r['s_per_image']:.3f} | {fmt_ms(r['total_ms']['p50'])} | {ms('text_encoder')} | "
            f"{ms('unet')} ({int(u.get('calls', 0))} × {fmt_ms(u.get('per_call_ms'))}) | {ms('vae_encoder')} | "
            f"{ms('vae_decoder')} | {ms('other')} | {r['unet_it_per_s']:.1f} | "
            f"{f'{ratio:.2f}x' if ratio else '–'} | {'–' if diff is None else f'{diff:.2g}'} |"
        )
    if report.get("parity"):
        lines += ["", "Export parity (ONNX Runtime vs torch fp32, worst point): " + ", ".join(
            f"{g} {p.get('max_abs', float('nan')):.2g} / {p.get('psnr', float('nan')):.0f} dB" for g, p in report["parity"].items())]
    lines += ["", f"Command: `{report['command']}`", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import torch

    from styleengine.bench.env import environment, machine_slug, now
    from styleengine.plugins import get_engine

    if args.threads:
        torch.set_num_threads(args.threads)
    engine = get_engine()
    cls = engine.style_class("instruct_pix2pix")
    model = {"source": args.source} if args.source else {"size": "sd15" if args.sd15 else "tiny"}
    style = cls(model)
    cfg = style.parse_config({"steps": args.steps, "resolution": args.size})
    log.info("building %s components", "SD 1.5" if args.sd15 else "tiny")
    _ = style.modules
    variants = args.variants.split(",") if args.variants else default_variants(args)
    artifacts: dict[str, Path] = {}
    parity: dict[str, Any] = {}
    errors: dict[str, str] = {}
    tmp = Path(tempfile.mkdtemp(prefix="ip2p-bench-"))
    if any(v.startswith("onnxruntime") for v in variants):
        log.info("exporting ONNX (%s, static %dx%d, batch %d) and validating", args.exporter, args.size, args.size, args.batch)
        try:
            artifacts["onnx"], parity = export(engine, style, args, tmp / "onnx", trt=False)
        except Exception as exc:  # noqa: BLE001 - reported in the results
            errors["onnx"] = f"{type(exc).__name__}: {exc}"
    if "tensorrt" in variants:
        try:
            artifacts["trt"], _ = export(engine, style, args, tmp / "trt", trt=True)
        except Exception as exc:  # noqa: BLE001 - TensorRT missing: exit status 2 in the CLI, a row here
            errors["trt"] = f"{type(exc).__name__}: {exc}"

    results: list[dict[str, Any]] = []
    reference: np.ndarray | None = None
    for v in variants:
        need = "trt" if v == "tensorrt" else "onnx" if v.startswith("onnxruntime") else None
        if need and need not in artifacts:
            results.append({"variant": v, "error": errors.get(need, "no artifacts")})
            continue
        log.info("variant %s", v)
        try:
            sessions = open_variant(engine, style, v, args, artifacts)
            row, image = run_variant(engine, style, sessions, args, cfg)
        except Exception as exc:  # noqa: BLE001 - one failing variant does not stop the others
            log.warning("variant %s failed: %s", v, exc)
            results.append({"variant": v, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()})
            continue
        finally:
            sessions = None
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        if v == "torch":
            reference = image
        row["max_abs_diff_vs_torch"] = None if reference is None else float(np.abs(image - reference).max())
        results.append({"variant": v, **row})
        log.info("  %.3f s/image, UNet %.1f it/s", row["s_per_image"], row["unet_it_per_s"] or 0)

    env = environment()
    report = {
        "benchmark": "instruct_pix2pix_stages",
        "created": now(),
        "command": " ".join([Path(sys.executable).name, "benchmarks/instruct_pix2pix_stages.py", *(argv if argv is not None else sys.argv[1:])]),
        "config": {"mode": "sd15" if args.sd15 else "tiny", "source": args.source, "device": args.device,
                   "precision": args.precision, "size": args.size, "steps": args.steps, "batch": args.batch,
                   "warmup": args.warmup, "iters": args.iters, "exporter": args.exporter, "threads": torch.get_num_threads(),
                   "instruction": INSTRUCTION},
        "environment": env,
        "parity": parity,
        "results": results,
    }
    out = args.out or REPO / "benchmarks" / "results" / f"{machine_slug(env['machine'])}-{dt.date.today().isoformat()}"
    out.mkdir(parents=True, exist_ok=True)
    stem = "instruct_pix2pix_stages" + ("-sd15" if args.sd15 else "")
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out / f"{stem}.md").write_text(markdown(report))
    print(markdown(report))
    print(f"wrote {out / stem}.json and .md")
    return 0 if not any("error" in r for r in results if r["variant"] in ("torch",)) else 1


if __name__ == "__main__":
    sys.exit(main())

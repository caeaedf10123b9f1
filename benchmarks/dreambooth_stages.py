"""DreamBooth per-stage latency: txt2img and img2img (text encoder / UNet per step / VAE), per runtime, and the cost
of a LoRA switch against a fused artifact.

One request = a prompt (+ for img2img a square content image, ``strength``) through ``DreamBoothStyle.infer``, the
pipeline the CLI and the server run (text encoder twice: prompt + negative/empty; UNet once per step on 2 CFG rows
per request; VAE encoder once for img2img; VAE decoder once).  Sessions are wrapped in the engine's timing proxy
(:mod:`styleengine.bench.proxy`); statistics through :func:`styleengine.bench.summarize`.  Modelled on
``benchmarks/instruct_pix2pix_stages.py``.

Variants (each for ``txt2img`` and ``img2img``):

* ``torch``: torch eager, no LoRA loaded;
* ``torch+lora-fused``: a LoRA fused into the weights (what ``--weights LORA`` serves): the same cost as ``torch``;
* ``torch+lora-same``: two LoRAs loaded as PEFT adapters, every call the same one (no switch: adapter overhead only);
* ``torch+lora-switch``: two LoRAs loaded, alternating per call (a switch per call: ``set_adapters`` on UNet + CLIP);
* ``onnxruntime``: every graph on ONNX Runtime from an export with the LoRA fused (``export_lora``).

Run from the repository root::

    .venv/bin/python benchmarks/dreambooth_stages.py                          # tiny random components, CPU
    .venv/bin/python benchmarks/dreambooth_stages.py --sd15 --device cuda --precision fp16

Writes ``dreambooth_stages[-sd15].json`` and ``.md`` under ``benchmarks/results/<machine>-<date>/``.  The tiny mode
measures the pipeline's structure and per-call overheads, not SD 1.5 speed.
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
PROMPT = "a photo of sks dog in a bucket"
VARIANTS = ("torch", "torch+lora-fused", "torch+lora-same", "torch+lora-switch", "onnxruntime")

log = logging.getLogger("dreambooth-bench")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sd15", action="store_true", help="SD 1.5-sized components with random weights instead of tiny")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"])
    p.add_argument("--size", type=int, help="square side [tiny 128, sd15 512]")
    p.add_argument("--steps", type=int, help="denoising steps [tiny 10, sd15 25 (the reference's validation)]")
    p.add_argument("--strength", type=float, default=0.8, help="img2img strength (UNet calls = int(steps * strength))")
    p.add_argument("--rank", type=int, default=4, help="rank of the random LoRAs (reference default 4)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--iters", type=int, help="timed calls per variant [tiny 10, sd15 5]")
    p.add_argument("--variants", help="comma-separated subset of: " + ", ".join(VARIANTS))
    p.add_argument("--modes", default="txt2img,img2img")
    p.add_argument("--exporter", default="dynamo", choices=["dynamo", "torchscript"])
    p.add_argument("--threads", type=int)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    args.size = args.size or (512 if args.sd15 else 128)
    args.steps = args.steps or (25 if args.sd15 else 10)
    args.iters = args.iters or (5 if args.sd15 else 10)
    if args.size % 64:
        p.error("--size must be a multiple of 64")
    return args


def random_lora(base: dict[str, Any], path: Path, seed: int, rank: int) -> Path:
    """A LoRA of the base architecture with random non-zero weights (UNet + text encoder), diffusers' format."""
    import torch
    from styleengine_dreambooth import DreamBoothStyle

    from styleengine.diffusion.lora import TEXT_ENCODER_TARGETS, UNET_TARGETS, add_lora, lora_config, save_diffusers_lora

    comps = DreamBoothStyle(base).components
    add_lora(comps.unet, lora_config(rank, rank, UNET_TARGETS))
    add_lora(comps.text_encoder, lora_config(rank, rank, TEXT_ENCODER_TARGETS))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in (comps.unet, comps.text_encoder):
            for n, prm in m.named_parameters():
                if "lora_" in n:
                    prm.copy_(torch.randn(prm.shape, generator=g) * 0.05)
    return save_diffusers_lora(path, unet=comps.unet, text_encoder=comps.text_encoder)


def requests(mode: str, size: int, lora: str | None) -> list[Any]:
    from styleengine.style import StyleRequest

    images = {"image": np.random.default_rng(0).random((size, size, 3), dtype=np.float32)} if mode == "img2img" else {}
    texts = {"prompt": PROMPT, **({"lora": lora} if lora else {})}
    return [StyleRequest(images=images, texts=texts, seed=0, id="bench")]


def run(engine: Any, style: Any, sessions: dict[str, Any], args: argparse.Namespace, cfg: Any, mode: str,
        loras: list[str | None]) -> tuple[dict[str, Any], np.ndarray]:
    from styleengine.bench import cuda_sync, measure, summarize
    from styleengine.bench.proxy import StageRecorder, on_cuda, wrap_sessions

    rec = StageRecorder()
    wrapped = wrap_sessions(sessions, rec)
    batches = [requests(mode, args.size, name) for name in loras]
    sync = cuda_sync("cuda") if any(on_cuda(s) for s in sessions.values()) else (lambda: None)
    last: list[Any] = []
    calls = [0]

    def call(_: Any) -> None:
        last[:] = engine.hook.style_infer(style=style, sessions=wrapped, batch=batches[calls[0] % len(batches)], cfg=cfg)
        calls[0] += 1

    samples = measure(call, warmup=args.warmup, iters=args.iters, sync=sync, on_start=rec.begin, on_end=rec.end)
    total = summarize(samples, batch=1)
    stages = rec.summary(total["mean"])
    return {"total_ms": total, "stages": stages}, np.asarray(last[0].image)


def markdown(report: dict[str, Any]) -> str:
    from styleengine.bench import fmt_ms

    c = report["config"]
    m = report["environment"]["machine"]
    lines = [f"# DreamBooth per-stage latency ({c['mode']})", "",
             f"{report['created']} · {m.get('gpu') or m.get('cpu')} · {c['device']} · {c['precision']} · "
             f"{c['size']}×{c['size']} · {c['steps']} steps (img2img strength {c['strength']}) · LoRA rank {c['rank']} · "
             f"{c['iters']} timed calls after {c['warmup']} warm-up", "",
             "ms per `infer` call (1 request; mean); each stage sums its calls in one infer.", "",
             "| mode | variant | mean ms | p50 ms | text encoder | UNet (calls × per call) | VAE encode | VAE decode | other | vs torch |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report["results"]:
        if "error" in r:
            lines.append(f"| {r['mode']} | {r['variant']} | – | – | – | – | – | – | – | {r['error'].splitlines()[0][:100]} |")
            continue
        st = r["stages"]
        base = next((b for b in report["results"] if b["mode"] == r["mode"] and b["variant"] == "torch" and "error" not in b), None)
        ratio = r["total_ms"]["mean"] / base["total_ms"]["mean"] if base else None
        u = st.get("unet", {})
        lines.append(
            f"| {r['mode']} | {r['variant']} | {fmt_ms(r['total_ms']['mean'])} | {fmt_ms(r['total_ms']['p50'])} | "
            f"{fmt_ms(st.get('text_encoder', {}).get('mean_ms'))} | {fmt_ms(u.get('mean_ms'))} "
            f"({int(u.get('calls', 0))} × {fmt_ms(u.get('per_call_ms'))}) | {fmt_ms(st.get('vae_encoder', {}).get('mean_ms'))} | "
            f"{fmt_ms(st.get('vae_decoder', {}).get('mean_ms'))} | {fmt_ms(st.get('other', {}).get('mean_ms'))} | "
            f"{f'{ratio:.2f}x' if ratio else '–'} |")
    sw = report.get("lora_switch_ms")
    if sw:
        lines += ["", "LoRA switch cost (switch − same, per call): " +
                  ", ".join(f"{k} {v:.2f} ms" for k, v in sw.items())]
    lines += ["", f"Command: `{report['command']}`", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import torch

    from styleengine.bench.env import environment, machine_slug, now
    from styleengine.export.options import ExportOptions, ExportProfile, ProfileDim
    from styleengine.plugins import get_engine
    from styleengine.runtime.base import SessionOptions
    from styleengine.sessions import open_sessions

    if args.threads:
        torch.set_num_threads(args.threads)
    engine = get_engine()
    cls = engine.style_class("dreambooth")
    base = {"size": "sd15" if args.sd15 else "tiny"}
    tmp = Path(tempfile.mkdtemp(prefix="dreambooth-bench-"))
    log.info("writing two random rank-%d LoRAs", args.rank)
    files = {n: str(random_lora(base, tmp / f"{n}.safetensors", i, args.rank)) for i, n in enumerate(("a", "b"), 1)}
    variants = args.variants.split(",") if args.variants else list(VARIANTS)
    dev = "cuda:0" if args.device == "cuda" else args.device
    opts = SessionOptions(device=dev, precision=args.precision, threads=args.threads)
    results: list[dict[str, Any]] = []
    switch: dict[str, float] = {}
    for mode in args.modes.split(","):
        cfg_values = {"steps": args.steps, "resolution": args.size, "strength": args.strength,
                      "mode": mode}
        for v in variants:
            log.info("%s / %s", mode, v)
            sessions = None
            try:
                if v == "torch":
                    style, loras = cls(base), [None]
                elif v == "torch+lora-fused":
                    style, loras = cls({**base, "fused_lora": files["a"]}), [None]
                elif v in ("torch+lora-same", "torch+lora-switch"):
                    style = cls({**base, "loras": files})
                    loras = ["a"] if v.endswith("same") else ["a", "b"]
                elif v == "onnxruntime":
                    style, loras = cls({**base, "loras": files, "export_lora": "a"}), [None]
                else:
                    raise ValueError(f"unknown variant {v!r}")
                cfg = style.parse_config(cfg_values)
                if v == "onnxruntime":
                    lat = args.size // 8

                    def fixed(x: int, mult: int = 1) -> ProfileDim:
                        return ProfileDim(min=x, opt=x, max=x, multiple_of=mult)

                    prof = ExportProfile(name="bench", dims={"batch": fixed(1), "unet_batch": fixed(2, 2),
                                                             "latent_height": fixed(lat, 8), "latent_width": fixed(lat, 8),
                                                             "height": fixed(args.size, 64), "width": fixed(args.size, 64)})
                    out = engine.hook.style_export(style=style, options=ExportOptions(
                        out_dir=tmp / "onnx", exporter=args.exporter, profile=prof, validate=True)).out_dir
                    serving = cls(base)
                    sessions = open_sessions(engine, serving, "onnxruntime", artifacts=out,
                                             options=SessionOptions(device=dev, precision="fp32", threads=args.threads))
                    row, _ = run(engine, serving, sessions, args, serving.parse_config(cfg_values), mode, loras)
                else:
                    sessions = open_sessions(engine, style, "torch", options=opts)
                    row, _ = run(engine, style, sessions, args, cfg, mode, loras)
            except Exception as exc:  # noqa: BLE001 - one failing variant does not stop the others
                log.warning("%s / %s failed: %s", mode, v, exc)
                results.append({"mode": mode, "variant": v, "error": f"{type(exc).__name__}: {exc}",
                                "traceback": traceback.format_exc()})
                continue
            finally:
                sessions = None
                gc.collect()
            results.append({"mode": mode, "variant": v, **row})
            log.info("  %.1f ms", row["total_ms"]["mean"])
        by = {r["variant"]: r for r in results if r["mode"] == mode and "error" not in r}
        if "torch+lora-same" in by and "torch+lora-switch" in by:
            # The switch (set_adapters on UNet + CLIP) runs outside the graphs: its cost is the growth of "other";
            # the totals' difference is reported too but carries the graphs' run-to-run noise.
            a, b = by["torch+lora-switch"], by["torch+lora-same"]
            switch[f"{mode} (other)"] = a["stages"].get("other", {}).get("mean_ms", 0.0) - b["stages"].get("other", {}).get("mean_ms", 0.0)
            switch[f"{mode} (total)"] = a["total_ms"]["mean"] - b["total_ms"]["mean"]

    env = environment()
    report = {
        "benchmark": "dreambooth_stages", "created": now(),
        "command": " ".join([Path(sys.executable).name, "benchmarks/dreambooth_stages.py", *(argv if argv is not None else sys.argv[1:])]),
        "config": {"mode": "sd15" if args.sd15 else "tiny", "device": args.device, "precision": args.precision,
                   "size": args.size, "steps": args.steps, "strength": args.strength, "rank": args.rank,
                   "warmup": args.warmup, "iters": args.iters, "exporter": args.exporter, "threads": torch.get_num_threads()},
        "environment": env, "results": results, "lora_switch_ms": switch,
    }
    out_dir = args.out or REPO / "benchmarks" / "results" / f"{machine_slug(env['machine'])}-{dt.date.today().isoformat()}"
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "dreambooth_stages" + ("-sd15" if args.sd15 else "")
    (out_dir / f"{stem}.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out_dir / f"{stem}.md").write_text(markdown(report))
    print(markdown(report))
    print(f"wrote {out_dir / stem}.json and .md")
    return 0 if not any("error" in r for r in results if r["variant"] == "torch") else 1


if __name__ == "__main__":
    sys.exit(main())

"""Gatys optimisation: seconds per iteration, the engine's loop vs a plain PyTorch-tutorial-style loop, same run.

Both loops optimise the same image against the same VGG-19 (random weights: timings do not depend on them), the
same layers (content relu4_2, style relu1_1..relu5_1, neural-style's defaults) at the same size:

* ``engine``: :func:`styleengine_gatys.pipeline.optimise` (what ``engine infer gatys`` and the server run:
  L-BFGS stepped one iteration at a time with a cancel check, progress and losses as floats every iteration);
* ``tutorial``: the PyTorch neural-style tutorial's shape, written here: loss modules inserted after the chosen
  layers in a copy of the network, a closure that clamps and sums ``module.loss``, ``optimizer.step(closure)``
  run in a ``while`` loop (L-BFGS, lr 1, as the tutorial).

Iteration = one L-BFGS step = one forward + backward.  Devices: ``cpu``; on CUDA also TF32 and bf16 autocast.

    .venv/bin/python benchmarks/gatys_iteration.py                          # CPU, 256 and 512
    .venv/bin/python benchmarks/gatys_iteration.py --device cuda --iters 20

Writes ``gatys_iteration.json`` and ``.md`` under ``benchmarks/results/<machine>-<date>/``.  The fast network
is benchmarked like every feed-forward style: ``engine bench gatys --variant fast --runtime torch,onnxruntime``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent
CONTENT = ["relu4_2"]
STYLE = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]


def tutorial_loop(vgg_features: nn.Sequential, names: tuple[str, ...], content: torch.Tensor, style: torch.Tensor,
                  iters: int, autocast: Any) -> float:
    """The tutorial's structure; returns seconds per iteration (after one untimed step)."""

    def gram(x: torch.Tensor) -> torch.Tensor:
        a, b, c, d = x.size()
        f = x.view(a * b, c * d)
        return torch.mm(f, f.t()).div(a * b * c * d)

    class ContentLoss(nn.Module):
        def __init__(self, target: torch.Tensor) -> None:
            super().__init__()
            self.target = target.detach()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.loss = F.mse_loss(x, self.target)
            return x

    class StyleLoss(nn.Module):
        def __init__(self, target: torch.Tensor) -> None:
            super().__init__()
            self.target = gram(target).detach()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.loss = F.mse_loss(gram(x), self.target)
            return x

    mean = torch.tensor([0.485, 0.456, 0.406], device=content.device).view(-1, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], device=content.device).view(-1, 1, 1)
    model = nn.Sequential()
    content_losses, style_losses = [], []
    last = max(names.index(n) for n in CONTENT + STYLE)
    for i, layer in enumerate(list(vgg_features)[: last + 1]):
        model.add_module(names[i], layer)
        if names[i] in CONTENT:
            with torch.no_grad():
                cl = ContentLoss(model((content - mean) / std))
            model.add_module(f"content_loss_{i}", cl)
            content_losses.append(cl)
        if names[i] in STYLE:
            with torch.no_grad():
                sl = StyleLoss(model((style - mean) / std))
            model.add_module(f"style_loss_{i}", sl)
            style_losses.append(sl)
    img = content.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([img], max_iter=1)

    def closure() -> torch.Tensor:
        with torch.no_grad():
            img.clamp_(0, 1)
        opt.zero_grad()
        with autocast():
            model((img - mean) / std)
            loss = 1e6 * sum(s.loss for s in style_losses) + sum(c.loss for c in content_losses)
        loss.backward()
        return loss

    opt.step(closure)
    _sync(content.device)
    t0 = time.perf_counter()
    run = 0
    while run < iters:
        opt.step(closure)
        run += 1
    _sync(content.device)
    return (time.perf_counter() - t0) / iters


def engine_loop(vgg: nn.Module, content: torch.Tensor, style: torch.Tensor, iters: int, optimizer: str, autocast: Any) -> float:
    from styleengine_gatys.config import Config
    from styleengine_gatys.pipeline import optimise

    # init=image, as the tutorial's loop: both start from the content (neural-style's near-constant random start
    # through a random, bias-free VGG gives near-zero activations whose gradients hit CPU denormals).
    cfg = Config(num_iterations=iters + 1, image_size=0, optimizer=optimizer, print_iter=0, content_layers=CONTENT, style_layers=STYLE,
                 init="image")
    stamps: list[float] = []

    def on_iteration(_: Any) -> None:
        _sync(content.device)
        stamps.append(time.perf_counter())

    with autocast():
        optimise(vgg, cfg, content.cpu(), [style.cpu()], seed=0, device=content.device, on_iteration=on_iteration)
    return (stamps[-1] - stamps[0]) / iters  # from the end of the first (untimed) iteration


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> int:
    from styleengine.nn.vgg import VGG19_LAYER_NAMES, VGG19Features

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--sizes", default="256,512")
    p.add_argument("--iters", type=int, default=5, help="timed iterations per configuration (after one untimed)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved repetitions; the best is reported")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    vgg = VGG19Features(upto="relu5_1").to(device).requires_grad_(False).eval()
    modes: list[tuple[str, Any]] = [("fp32", contextlib.nullcontext)]
    if device.type == "cuda":
        modes += [("tf32", contextlib.nullcontext), ("bf16", lambda: torch.autocast("cuda", dtype=torch.bfloat16))]
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        g = torch.Generator().manual_seed(size)
        content = torch.rand(1, 3, size, size, generator=g).to(device)
        style = torch.rand(1, 3, size, size, generator=g).to(device)
        for mode, autocast in modes:
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = mode == "tf32"
            row = {"size": size, "device": str(device), "mode": mode}
            runs: dict[str, list[float]] = {"engine_lbfgs_s": [], "engine_adam_s": [], "tutorial_lbfgs_s": []}
            for _ in range(args.repeats):  # interleaved, best of: a shared machine's noise hits both loops alike
                runs["engine_lbfgs_s"].append(engine_loop(vgg, content, style, args.iters, "lbfgs", autocast))
                runs["tutorial_lbfgs_s"].append(tutorial_loop(vgg.features, VGG19_LAYER_NAMES, content, style, args.iters, autocast))
                runs["engine_adam_s"].append(engine_loop(vgg, content, style, args.iters, "adam", autocast))
            row.update({k: min(v) for k, v in runs.items()})
            row["all_runs"] = runs
            row["engine_vs_tutorial"] = row["engine_lbfgs_s"] / row["tutorial_lbfgs_s"]
            rows.append(row)
            print(json.dumps(row), flush=True)
    try:
        from styleengine.bench.env import machine_slug

        machine = machine_slug()
    except Exception:  # noqa: BLE001
        machine = platform.machine()
    out = args.out or ROOT / "results" / f"{machine}-{dt.date.today().isoformat()}"
    out.mkdir(parents=True, exist_ok=True)
    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "iters": args.iters, "python": sys.version.split()[0],
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None}
    suffix = "" if device.type == "cpu" else "-cuda"
    (out / f"gatys_iteration{suffix}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    lines = ["| size | device | mode | engine L-BFGS s/it | engine Adam s/it | tutorial L-BFGS s/it | engine / tutorial |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['size']} | {r['device']} | {r['mode']} | {r['engine_lbfgs_s']:.4f} | {r['engine_adam_s']:.4f} | {r['tutorial_lbfgs_s']:.4f} | {r['engine_vs_tutorial']:.3f} |" for r in rows]
    (out / f"gatys_iteration{suffix}.md").write_text(f"# gatys iteration ({meta})\n\n" + "\n".join(lines) + "\n")
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

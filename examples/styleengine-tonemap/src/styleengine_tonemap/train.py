"""Training through ``styleengine.training``: fit the network to before/after pairs.

``--data DIR`` holds ``DIR/input/`` and ``DIR/target/`` (the same photo before and after a colour grade,
paired by file name).  Every file is checked before the first step; random square crops (the same one for
both images) are drawn from a generator seeded by the run's seed and the step, so a resumed run sees the
batches an uninterrupted one would have.  Checkpoints are the engine's safetensors checkpoints.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from styleengine.data import match_pairs, preflight_images, read_image
from styleengine.data.errors import DatasetError
from styleengine.preprocess import resize, to_tensor
from styleengine.training import TrainResult
from styleengine.training.samples import save_grid


def load_pairs(ctx: Any, crop: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    root = ctx.data_dir("data")
    if not (root / "input").is_dir() or not (root / "target").is_dir():
        raise DatasetError(f"{root}: expected the folders input/ and target/ (the same photos before and after grading)")
    pairs, problems = match_pairs(root / "input", root / "target")
    if problems and ctx.on_bad_file == "fail":
        raise DatasetError("; ".join(f"{p.path}: {p.reason}" for p in problems[:10]))
    usable = set(preflight_images([p for pair in pairs for p in pair]).apply(ctx.on_bad_file))
    xs, ys = [], []
    for a, b in pairs:
        if a in usable and b in usable:
            x, y = to_tensor(read_image(a).array, (0.0, 1.0)), to_tensor(read_image(b).array, (0.0, 1.0))
            if x.shape != y.shape:
                raise DatasetError(f"{a} and {b} differ in size ({tuple(x.shape[-2:])} vs {tuple(y.shape[-2:])})")
            if min(x.shape[-2:]) < crop:  # small photos are scaled up to one crop
                s = crop / min(x.shape[-2:])
                size = (max(crop, round(x.shape[-2] * s)), max(crop, round(x.shape[-1] * s)))
                x, y = resize(x, size), resize(y, size)
            xs.append(x)
            ys.append(y)
    if not xs:
        raise DatasetError(f"{root}: no usable pairs")
    return xs, ys


def batch_at(xs: list[torch.Tensor], ys: list[torch.Tensor], size: int, crop: int, seed: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
    bx, by = [], []
    for _ in range(size):
        i = int(torch.randint(len(xs), (1,), generator=gen))
        h, w = xs[i].shape[-2:]
        top = int(torch.randint(h - crop + 1, (1,), generator=gen))
        left = int(torch.randint(w - crop + 1, (1,), generator=gen))
        bx.append(xs[i][..., top : top + crop, left : left + crop])
        by.append(ys[i][..., top : top + crop, left : left + crop])
    return torch.cat(bx), torch.cat(by)


def train(style: Any, cfg: Any, ctx: Any) -> TrainResult:
    xs, ys = load_pairs(ctx, cfg.crop)
    net = style.modules["net"].train()
    acc = ctx.accelerator()
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    net, opt = acc.prepare(net, opt)
    modules = {"net": acc.unwrap_model(net)}
    state = ctx.resume_into(modules=modules, optimizers={"opt": opt})
    step = state["step"] if state else 0
    total = min(cfg.steps, ctx.max_steps or cfg.steps)
    loss_fn = F.l1_loss if cfg.loss == "l1" else F.mse_loss
    save_kw = dict(style=style.name, model_config=style.model_config.model_dump(), modules=modules, optimizers={"opt": opt})
    history: list[dict[str, float]] = []
    loss_v = float("nan")
    with ctx.catch_interrupt(), ctx.progress(total, initial=step) as bar:
        while step < total and not ctx.interrupted:
            x, y = (t.to(acc.device) for t in batch_at(xs, ys, cfg.batch_size, cfg.crop, ctx.seed, step))
            loss = loss_fn(net(x), y)
            opt.zero_grad()
            acc.backward(loss)
            opt.step()
            step += 1
            loss_v = float(loss.detach())
            history.append({"step": step, "loss": loss_v})
            bar.set_postfix(loss=f"{loss_v:.4f}")
            bar.update(1)
            if step % ctx.sample_every == 0:
                with torch.no_grad():
                    save_grid(ctx.samples_dir / f"step-{step:07d}.png", [[x[0], net(x[:1])[0], y[0]]], value_range=(0.0, 1.0))
            if step % ctx.checkpoint_every == 0 and step < total:
                ctx.save(step, **save_kw, extra={"loss": loss_v})
    ckpt = ctx.save(step, **save_kw, extra={"loss": loss_v})
    net.eval()
    return TrainResult(ckpt, step, {"loss": loss_v}, interrupted=ctx.interrupted, history=history)

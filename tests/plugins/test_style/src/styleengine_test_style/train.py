"""Training loop of the test style: fit the net to invert colours of the images in --data."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from styleengine.data import find_images, preflight_images, read_image
from styleengine.preprocess import resize, to_tensor
from styleengine.training import TrainResult
from styleengine.training.samples import save_grid


def train(style: Any, cfg: Any, ctx: Any) -> TrainResult:
    files = preflight_images(find_images(ctx.data_dir("data")), full_decode=cfg.preflight == "full").apply(ctx.on_bad_file)
    images = torch.cat([resize(to_tensor(read_image(p).array), (cfg.size, cfg.size)) for p in files])
    net = style.modules["net"].train()
    acc = ctx.accelerator()
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    net, opt = acc.prepare(net, opt)
    modules = {"net": acc.unwrap_model(net)}
    step = 0
    state = ctx.resume_into(modules=modules, optimizers={"opt": opt}, schedulers={"sched": sched})
    if state:
        step = state["step"]
    total = min(cfg.steps, ctx.max_steps or cfg.steps)
    gen = torch.Generator().manual_seed(ctx.seed + step)
    history: list[dict[str, float]] = []
    loss_v = float("nan")
    save_kw = dict(style=style.name, model_config=style.model_config.model_dump(), modules=modules, optimizers={"opt": opt}, schedulers={"sched": sched})
    with ctx.catch_interrupt(), ctx.progress(total, initial=step) as bar:
        while step < total and not ctx.interrupted:
            idx = torch.randint(len(images), (cfg.batch_size,), generator=gen)
            x = images[idx].to(acc.device)
            loss = F.l1_loss(net(x), -x)
            opt.zero_grad()
            acc.backward(loss)
            opt.step()
            sched.step()
            step += 1
            loss_v = float(loss.detach())
            history.append({"step": step, "loss": loss_v})
            bar.set_postfix(loss=f"{loss_v:.4f}")
            bar.update(1)
            if step % ctx.sample_every == 0:
                with torch.no_grad():
                    save_grid(ctx.samples_dir / f"step-{step:07d}.png", [[x[0], net(x[:1])[0], -x[0]]])
            if step % ctx.checkpoint_every == 0 and step < total:
                ctx.save(step, **save_kw, extra={"loss": loss_v})
    ckpt = ctx.save(step, **save_kw, extra={"loss": loss_v})
    net.eval()
    return TrainResult(ckpt, step, {"loss": loss_v}, interrupted=ctx.interrupted, history=history)


__all__ = ["train", "np"]

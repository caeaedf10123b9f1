"""The epoch loop of the reference GAN scripts' ``train.py`` (pytorch-CycleGAN-and-pix2pix, BicycleGAN), with
the engine's resume, logging, sample grids, checkpoints and Ctrl-C handling; a style supplies one training
step and what to save.

:func:`run_epochs` iterates epochs of seeded batches (:func:`styleengine.data.paired.epoch_batches`: the
same batches in the same order for a given seed, whether or not the run was interrupted), calls
``train_step(*batch)`` for every batch (tensors moved to the accelerator's device), steps the learning
rate at the end of each epoch (``end_epoch``), shows every loss on the progress bar, appends a record
(step, epoch, lr, losses) to ``OUT/loss_log.jsonl`` every ``ctx.log_every`` steps, calls ``sample`` every
``ctx.sample_every`` steps and ``save`` every ``ctx.checkpoint_every`` steps and at the end.  Resuming is
the caller's ``ctx.resume_into(...)`` (it knows the modules and optimisers); its state is passed in.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..data.paired import epoch_batches, steps_per_epoch

log = logging.getLogger(__name__)

__all__ = ["Progress", "run_epochs"]


@dataclass
class Progress:
    """Where a run stands: steps done, epoch, position in the epoch, the last losses, the logged records."""

    step: int = 0
    epoch: int = 0
    epoch_step: int = 0
    losses: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def metrics(self) -> dict[str, float]:
        return {k: v for k, v in self.losses.items() if not math.isnan(v)}


def run_epochs(
    ctx: Any,
    acc: Any,
    *,
    dataset: torch.utils.data.Dataset,
    n_items: int,
    batch_size: int,
    epochs: int,
    loss_names: Sequence[str],
    train_step: Callable[..., Mapping[str, Any]],
    end_epoch: Callable[[], None],
    lr: Callable[[], float],
    save: Callable[[Progress], Path | None],
    sample: Callable[[Progress, tuple[torch.Tensor, ...], Mapping[str, Any]], None] | None = None,
    state: Mapping[str, Any] | None = None,
    num_workers: int = 0,
    drop_last: bool = False,
) -> tuple[Progress, Path | None]:
    """Train for ``epochs`` epochs (or up to ``ctx.max_steps``); returns the progress and the last checkpoint.

    ``train_step`` returns a mapping holding at least ``loss_names`` (tensors or floats; anything else, such
    as generated images, is passed on to ``sample``).  ``save`` runs on the main process only.
    """
    rank, world = acc.process_index, acc.num_processes
    per_epoch = steps_per_epoch(n_items, batch_size, world, drop_last)
    if per_epoch == 0:
        raise ValueError(f"{n_items} training pair(s) make no full batch of {batch_size * world}; use a smaller batch_size")
    total = epochs * per_epoch
    prog = Progress(losses={k: float("nan") for k in loss_names})
    if state:
        prog.step, prog.epoch = int(state["step"]), int(state["epoch"])
        extra = state.get("extra", {})
        prog.epoch_step = int(extra.get("epoch_step", 0))
        if extra.get("pairs") not in (None, n_items):
            log.warning("resuming with %d pairs; the checkpoint was trained on %s", n_items, extra["pairs"])
    limit = min(total, ctx.max_steps or total)
    on_step = ctx.extra.get("on_step")
    log_file = ctx.out_dir / "loss_log.jsonl"
    ctx.out_dir.mkdir(parents=True, exist_ok=True)

    def checkpoint() -> Path | None:
        path = save(prog) if acc.is_main_process else None
        acc.wait_for_everyone()
        return path

    if acc.is_main_process:
        log.info("%d pairs, %d steps/epoch, %d epochs: %d steps (training to %d)", n_items, per_epoch, epochs, total, limit)
    with ctx.catch_interrupt(), ctx.progress(limit, initial=min(prog.step, limit)) as bar:
        while prog.step < limit and not ctx.interrupted:
            batches = epoch_batches(n_items, batch_size, ctx.seed, prog.epoch, rank, world, drop_last)
            loader = torch.utils.data.DataLoader(
                dataset, batch_sampler=batches[prog.epoch_step :], num_workers=num_workers,
                # a private generator: creating an iterator must not draw from the global RNG (dropout's, z's)
                generator=torch.Generator().manual_seed(ctx.seed * 100_003 + prog.epoch),
            )
            for batch in loader:
                batch = tuple(t.to(acc.device) for t in batch)
                out = train_step(*batch)
                prog.losses = {k: float(out[k]) for k in loss_names}
                prog.step += 1
                prog.epoch_step += 1
                if prog.epoch_step == len(batches):  # end of epoch: the reference updates the learning rate here
                    end_epoch()
                    prog.epoch, prog.epoch_step = prog.epoch + 1, 0
                bar.set_postfix({**{k: f"{v:.3f}" for k, v in prog.losses.items()}, "epoch": prog.epoch}, refresh=False)
                bar.update(1)
                if prog.step % ctx.log_every == 0 or prog.step == limit:
                    record = {"step": prog.step, "epoch": prog.epoch, "lr": lr(), **prog.losses}
                    prog.history.append(record)
                    if acc.is_main_process:
                        with log_file.open("a") as fh:
                            fh.write(json.dumps(record) + "\n")
                if sample is not None and prog.step % ctx.sample_every == 0 and acc.is_main_process:
                    sample(prog, batch, out)
                if on_step is not None:
                    on_step(prog.step, prog.losses)
                if prog.step % ctx.checkpoint_every == 0 and prog.step < limit:
                    checkpoint()
                if prog.step >= limit or ctx.interrupted:
                    break
        final = checkpoint()
    return prog, final

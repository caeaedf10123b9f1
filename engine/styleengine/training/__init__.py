"""Thin training glue shared by every trainable style (accelerate, checkpoints, progress, samples).

A style's ``train(cfg, ctx)`` gets a :class:`TrainContext`: the data folders, the output folder, the
run options (steps, seed, mixed precision, sample / checkpoint cadence, bad-file policy) and helpers:
``ctx.accelerator()``, ``ctx.progress(total)``, ``ctx.save(...)`` / ``ctx.resume_into(...)`` and
``ctx.interrupted`` (set by Ctrl-C: the loop saves a checkpoint and returns cleanly).
"""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .checkpoint import (
    latest_checkpoint,
    load_training_checkpoint,
    prune_checkpoints,
    remove_stale_temporaries,
    save_training_checkpoint,
)

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    checkpoint: Path | None
    steps: int
    metrics: dict[str, float] = field(default_factory=dict)
    interrupted: bool = False
    history: list[dict[str, float]] = field(default_factory=list)


@dataclass
class TrainContext:
    out_dir: Path
    data: Mapping[str, Path] = field(default_factory=dict)
    resume: bool = False
    max_steps: int | None = None
    seed: int = 0
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    cpu: bool = False
    sample_every: int = 100
    checkpoint_every: int = 500
    log_every: int = 10
    on_bad_file: Literal["skip", "fail"] = "fail"
    show_progress: bool = True
    #: Keep only this many newest checkpoints (diffusers' ``checkpoints_total_limit``); None keeps all.
    checkpoints_total_limit: int | None = None
    interrupted: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        self.data = {k: Path(v) for k, v in self.data.items()}

    @property
    def checkpoints_dir(self) -> Path:
        return self.out_dir / "checkpoints"

    @property
    def samples_dir(self) -> Path:
        return self.out_dir / "samples"

    def data_dir(self, key: str = "data") -> Path:
        if key not in self.data:
            raise ValueError(f"missing training data folder --{key}")
        p = self.data[key]
        if not p.is_dir():
            raise FileNotFoundError(f"--{key}: {p} is not a folder")
        return p

    def accelerator(self) -> Any:
        from accelerate import Accelerator
        from accelerate.state import AcceleratorState
        from accelerate.utils import set_seed

        state = AcceleratorState._shared_state
        if state and state.get("_mixed_precision") not in (None, self.mixed_precision):
            # accelerate keeps one process-wide state and refuses another mixed precision for a second
            # Accelerator; a process may train several times (tests, a notebook, a server task), each with its own.
            AcceleratorState._reset_state()
        acc = Accelerator(mixed_precision=self.mixed_precision, cpu=self.cpu)
        set_seed(self.seed)
        return acc

    def progress(self, total: int, initial: int = 0, desc: str = "train") -> Any:
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=initial, desc=desc, disable=not self.show_progress, dynamic_ncols=True)

    def save(self, step: int, *, keep: int | None = None, **kwargs: Any) -> Path:
        """Save a checkpoint (see :func:`save_training_checkpoint`); ``keep``: then delete all but the newest
        ``keep`` ones (diffusers' ``checkpoints_total_limit``; default: the context's limit, None keeps all).

        Half-written checkpoints a killed earlier save left behind (``.step-*.tmp`` folders) are removed first:
        one training run writes one run folder, so nothing else can be writing them."""
        for stale in remove_stale_temporaries(self.checkpoints_dir):
            log.info("removed %s, left by an interrupted checkpoint write", stale)
        keep = self.checkpoints_total_limit if keep is None else keep
        path = save_training_checkpoint(self.checkpoints_dir / f"step-{step:07d}", step=step, **kwargs)
        log.info("checkpoint %s", path)
        if keep is not None:
            for old in prune_checkpoints(self.checkpoints_dir, keep):
                log.info("removed old checkpoint %s (keeping %d)", old, keep)
        return path

    def resume_into(self, **kwargs: Any) -> dict[str, Any] | None:
        """Restore the latest checkpoint into modules/optimisers/schedulers when ``resume`` is set."""
        if not self.resume:
            return None
        ckpt = latest_checkpoint(self.checkpoints_dir)
        if ckpt is None:
            raise FileNotFoundError(f"--resume: no checkpoint under {self.checkpoints_dir}")
        state = load_training_checkpoint(ckpt, **kwargs)
        log.info("resumed from %s (step %d)", ckpt, state["step"])
        return state

    @contextlib.contextmanager
    def catch_interrupt(self) -> Iterator[None]:
        """First Ctrl-C sets ``interrupted`` (the loop saves and stops); a second one aborts."""

        def handler(signum: int, frame: Any) -> None:
            if self.interrupted:
                raise KeyboardInterrupt
            self.interrupted = True
            log.warning("interrupt received: saving a checkpoint and stopping (Ctrl-C again to abort)")

        try:
            previous = signal.signal(signal.SIGINT, handler)
        except ValueError:  # not the main thread
            yield
            return
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


__all__ = [
    "TrainContext", "TrainResult", "latest_checkpoint", "load_training_checkpoint", "prune_checkpoints", "remove_stale_temporaries",
    "save_training_checkpoint",
]

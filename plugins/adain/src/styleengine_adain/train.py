"""Training the AdaIN decoder (naoto0804/pytorch-AdaIN ``train.py``), through the engine's training glue.

* data: every image of ``--content`` and ``--style`` is preflighted with the engine's decoder (the
  ``--on-bad-file`` policy applies); each sample is resized to ``load_size`` x ``load_size`` (512, the
  reference's ``Resize((512, 512))``) and a random ``crop_size`` square (256) is cut from it;
* order: like the reference's infinite sampler, each folder is walked in a fresh random permutation per
  epoch.  Permutations and crop offsets are pure functions of (seed, step), so a resumed run sees exactly the
  batches the uninterrupted run would have seen; a thread pool decodes the next batch while this one trains;
* model: the encoder (``vgg_normalised`` to relu4_1) is frozen and must be the real one (``--set vgg=PATH``,
  or weights given with ``--weights``); only the decoder learns, with Adam and the reference's inverse-time
  decay ``lr / (1 + lr_decay * i)`` (:func:`styleengine_adain.nets.learning_rate`), on
  ``content_weight * loss_c + style_weight * loss_s`` (:meth:`AdaINNet.loss`);
* output: tqdm progress, sample grids (content | style | output) every ``--sample-every`` steps, atomic
  safetensors checkpoints (encoder + decoder, Adam state, step, RNG state) every ``--checkpoint-every`` steps
  and at the end; Ctrl-C saves and stops cleanly; ``--resume`` continues identically.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from styleengine.data import find_images, preflight_images, read_image
from styleengine.preprocess import resize, to_tensor
from styleengine.style import WeightsRequiredError
from styleengine.training import TrainResult
from styleengine.training.samples import save_grid

from .nets import AdaINNet, learning_rate
from .importer import HOW_TO_GET, encoder_state

log = logging.getLogger(__name__)

RANDOM_ENCODER_WARNING = (
    "training AdaIN against a RANDOM encoder (allow_random_encoder=true): the decoder learns to invert random "
    "features and the result cannot stylise; use it for tests only and pass --set vgg=vgg_normalised.pth for real runs"
)


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(1, dtype=np.uint64)[0] >> 1)


class FolderStream:
    """Samples of one folder: random permutation per epoch, resize to ``load`` square, random ``crop`` square.

    Everything is a function of ``(seed, stream, step)``, never of global RNG state.
    """

    def __init__(self, files: Sequence[Path], batch: int, load: int, crop: int, seed: int, stream: int) -> None:
        self.files, self.batch, self.load, self.crop = list(files), batch, load, crop
        self.seed, self.stream = seed, stream
        self._perms: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            if len(self._perms) > 4:
                self._perms.pop(min(self._perms))
            g = torch.Generator().manual_seed(_seed(self.seed, self.stream, 0, epoch))
            self._perms[epoch] = torch.randperm(len(self.files), generator=g)
        return self._perms[epoch]

    def plan(self, step: int) -> list[tuple[Path, int, int]]:
        """(file, top, left) of each sample of batch ``step``."""
        n = len(self.files)
        g = torch.Generator().manual_seed(_seed(self.seed, self.stream, 1, step))
        offsets = torch.randint(0, self.load - self.crop + 1, (self.batch, 2), generator=g).tolist()
        out = []
        for j in range(self.batch):
            p = step * self.batch + j
            out.append((self.files[int(self._perm(p // n)[p % n])], *offsets[j]))
        return out

    def sample(self, path: Path, top: int, left: int) -> torch.Tensor:
        t = resize(to_tensor(read_image(path).array, (0.0, 1.0)), (self.load, self.load))
        return t[0, :, top : top + self.crop, left : left + self.crop]


class Loader:
    """Batches for (content, style) at a step, prefetching the next step on a thread pool."""

    def __init__(self, content: FolderStream, style: FolderStream, workers: int) -> None:
        self.content, self.style = content, style
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="adain-data") if workers > 0 else None
        self._ahead = ThreadPoolExecutor(1, thread_name_prefix="adain-prefetch") if workers > 0 else None
        self._next: tuple[int, Future[Any]] | None = None

    def _load(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        jobs = [(s, item) for s in (self.content, self.style) for item in s.plan(step)]
        if self._pool is None:
            tensors = [s.sample(*item) for s, item in jobs]
        else:
            tensors = list(self._pool.map(lambda job: job[0].sample(*job[1]), jobs))
        b = self.content.batch
        return torch.stack(tensors[:b]), torch.stack(tensors[b:])

    def get(self, step: int, prefetch_next: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        if self._next is not None and self._next[0] == step:
            batch = self._next[1].result()
        else:
            batch = self._load(step)
        self._next = None
        if prefetch_next and self._ahead is not None:
            self._next = (step + 1, self._ahead.submit(self._load, step + 1))
        return batch

    def close(self) -> None:
        for pool in (self._ahead, self._pool):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)


class LossModule(nn.Module):
    """What accelerate prepares: ``forward`` returns the reference's unweighted ``(loss_c, loss_s)``."""

    def __init__(self, net: AdaINNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, content: torch.Tensor, style: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net.loss(content, style)


def _files(ctx: Any, key: str, cfg: Any) -> list[Path]:
    folder = ctx.data_dir(key)
    report = preflight_images(find_images(folder), full_decode=cfg.preflight == "full", progress=ctx.show_progress)
    files = report.apply(ctx.on_bad_file)
    log.info("--%s %s: %s", key, folder, report.summary().splitlines()[0])
    return files


def _setup_encoder(style: Any, cfg: Any, ctx: Any) -> bool:
    """Load the frozen encoder; returns True when it stays random (explicitly allowed)."""
    if cfg.vgg:
        style.modules["encoder"].load_state_dict(encoder_state(cfg.vgg), strict=True)
        return False
    if style.weights_path is not None or ctx.resume:
        return False  # from --weights, or from the checkpoint being resumed
    if cfg.allow_random_encoder:
        warnings.warn(RANDOM_ENCODER_WARNING, UserWarning, stacklevel=3)
        log.warning(RANDOM_ENCODER_WARNING)
        return True
    raise WeightsRequiredError(
        "training AdaIN needs the pretrained VGG encoder: pass --set vgg=PATH/vgg_normalised.pth (or --weights with "
        f"AdaIN weights); {HOW_TO_GET}. --set allow_random_encoder=true trains against a random encoder (tests only)"
    )


def train(style: Any, cfg: Any, ctx: Any) -> TrainResult:
    random_encoder = _setup_encoder(style, cfg, ctx)
    content_files, style_files = _files(ctx, "content", cfg), _files(ctx, "style", cfg)

    acc = ctx.accelerator()
    net = style.net()
    net.decoder.train()
    model = LossModule(net)
    opt = torch.optim.Adam(net.decoder.parameters(), lr=cfg.lr)
    model, opt = acc.prepare(model, opt)
    modules = {"encoder": style.modules["encoder"], "decoder": style.modules["decoder"]}
    step, seed = 0, ctx.seed
    state = ctx.resume_into(modules=modules, optimizers={"adam": opt})
    if state:
        step = state["step"]
        extra = state.get("extra", {})
        seed = int(extra.get("seed", seed))
        if extra.get("random_encoder"):
            random_encoder = True
            warnings.warn(RANDOM_ENCODER_WARNING, UserWarning, stacklevel=2)
    style.style_cache.clear()

    total = min(cfg.max_iter, ctx.max_steps) if ctx.max_steps else cfg.max_iter
    loader = Loader(
        FolderStream(content_files, cfg.batch_size, cfg.load_size, cfg.crop_size, seed, 0),
        FolderStream(style_files, cfg.batch_size, cfg.load_size, cfg.crop_size, seed, 1),
        cfg.num_workers,
    )
    history: list[dict[str, float]] = []
    metrics: dict[str, float] = {}

    def save(at: int) -> Path:
        return ctx.save(
            at, style=style.name, model_config=style.model_config.model_dump(mode="json"), modules=modules,
            optimizers={"adam": opt}, extra={**metrics, "seed": seed, "random_encoder": random_encoder},
        )

    checkpoint: Path | None = None
    try:
        with ctx.catch_interrupt(), ctx.progress(total, initial=step, desc="adain") as bar:
            while step < total and not ctx.interrupted:
                lr = learning_rate(step, cfg.lr, cfg.lr_decay)
                for group in opt.param_groups:
                    group["lr"] = lr
                content, style_img = loader.get(step, prefetch_next=step + 1 < total)
                content, style_img = content.to(acc.device), style_img.to(acc.device)
                loss_c, loss_s = model(content, style_img)
                loss = cfg.content_weight * loss_c + cfg.style_weight * loss_s
                opt.zero_grad()
                acc.backward(loss)
                opt.step()
                step += 1
                metrics = {"loss": float(loss.detach()), "loss_content": float(loss_c.detach()), "loss_style": float(loss_s.detach())}
                history.append({"step": step, "lr": lr, **metrics})
                bar.set_postfix(loss=f"{metrics['loss']:.4g}", c=f"{metrics['loss_content']:.3g}", s=f"{metrics['loss_style']:.3g}")
                bar.update(1)
                if step % ctx.log_every == 0:
                    log.info("step %d: loss %.4g (content %.4g, style %.4g), lr %.3g", step, metrics["loss"], metrics["loss_content"], metrics["loss_style"], lr)
                if step % ctx.sample_every == 0:
                    k = min(cfg.samples, content.shape[0])
                    with torch.no_grad():
                        out = net(content[:k], style_img[:k]).clamp(0, 1)
                    rows = [[content[i], style_img[i], out[i]] for i in range(k)]
                    save_grid(ctx.samples_dir / f"step-{step:07d}.png", rows, value_range=(0.0, 1.0))
                if step % ctx.checkpoint_every == 0 and step < total:
                    checkpoint = save(step)
            checkpoint = save(step)
    finally:
        loader.close()
        net.decoder.eval()
        style.style_cache.clear()
    return TrainResult(checkpoint, step, dict(metrics), interrupted=ctx.interrupted, history=history)

"""InstructPix2Pix training (diffusers' ``train_instruct_pix2pix.py`` = the reference's ``ddpm_edit.py`` objective).

Per step, for a batch of (input, edited, instruction) triplets (:mod:`.data`):

* images are resized to ``resolution`` × ``resolution`` (Lanczos; square, as both references do) and flipped
  together with probability 0.5 (``random_flip``), then scaled to [-1, 1];
* the edited image is encoded to a VAE posterior *sample* × scaling factor and noised at a uniform random
  timestep (the model's DDPM schedule); the input image to the posterior *mode*, unscaled;
* **conditioning dropout** (paper section 3.2.1, ``conditioning_dropout_prob`` p = 0.05): with ``r ~ U(0, 1)``
  per sample, the instruction is replaced by the empty prompt's embedding when ``r < 2p`` and the image latents
  are zeroed when ``p <= r < 3p``: text only 5 %, image only 5 %, both 5 %;
* the UNet sees ``[noisy latents, image latents]`` (8 channels) and the text embedding; the loss is the MSE to
  the noise (or the velocity for v-prediction models).

``method="full"`` trains every UNet weight (lr 5e-5), ``"lora"`` a PEFT LoRA adapter on the attention
projections (lr 1e-4; the base must already be an InstructPix2Pix model).  AdamW (β 0.9 / 0.999, weight decay
1e-2), gradient clipping at 1.0, optional gradient accumulation, EMA (diffusers' ``EMAModel``), gradient
checkpointing and mixed precision through accelerate.

Determinism: batch composition, seed choice, flips, noise, timesteps and dropout masks are pure functions of
``(seed, step)`` (their own generators, never the global RNG), so ``--resume`` continues exactly as the
uninterrupted run would have.  Checkpoints (``ctx.save``, atomic) hold the UNet or LoRA weights, AdamW + EMA +
LR-scheduler state, step and RNG states; the final weights (EMA when enabled) go to ``<run>/weights``, an engine
checkpoint ``--weights`` accepts.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from styleengine.data import read_image, to_uint8
from styleengine.style import WeightsRequiredError
from styleengine.diffusion.sessions import direct_sessions
from styleengine.training import TrainResult
from styleengine.training.rng import derived_generator as _gen
from styleengine.training.samples import save_grid

from .data import EditDataset, load_dataset
from .models import LoraSpec, LoraWeights, add_lora
from .pipeline import edit

log = logging.getLogger(__name__)

LR_FULL = 5e-5
LR_LORA = 1e-4


class Batches:
    """Batch ``b`` (micro-batches counted from 0) as a pure function of ``(seed, b)``.

    Items are drawn in a fresh random permutation per epoch (like a shuffling DataLoader); for each drawn item
    one of its (input, edited) pairs (reference layout: one of the prompt's seeds) and a flip are chosen.
    """

    def __init__(self, data: EditDataset, batch_size: int, resolution: int, flip: bool, seed: int, workers: int) -> None:
        self.items, self.batch_size, self.resolution, self.flip, self.seed = data.items, batch_size, resolution, flip, seed
        self._perms: dict[int, list[int]] = {}
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="ip2p-data") if workers > 0 else None

    def _perm(self, epoch: int) -> list[int]:
        if epoch not in self._perms:
            if len(self._perms) > 4:
                self._perms.pop(min(self._perms))
            self._perms[epoch] = torch.randperm(len(self.items), generator=_gen(self.seed, 0, epoch)).tolist()
        return self._perms[epoch]

    def plan(self, b: int) -> list[tuple[Path, Path, str, bool]]:
        n = len(self.items)
        g = _gen(self.seed, 1, b)
        picks = torch.rand(self.batch_size, generator=g).tolist()
        flips = (torch.rand(self.batch_size, generator=g) < 0.5).tolist()
        out = []
        for j in range(self.batch_size):
            p = b * self.batch_size + j
            item = self.items[self._perm(p // n)[p % n]]
            src, dst = item.pairs[min(int(picks[j] * len(item.pairs)), len(item.pairs) - 1)]
            out.append((src, dst, item.instruction, bool(flips[j]) and self.flip))
        return out

    def image(self, path: Path, flip: bool) -> torch.Tensor:
        from PIL import Image

        im = Image.fromarray(to_uint8(read_image(path).array))
        im = im.resize((self.resolution, self.resolution), Image.Resampling.LANCZOS)
        t = torch.from_numpy(np.asarray(im, dtype=np.float32)).permute(2, 0, 1) / 127.5 - 1.0
        return t.flip(-1) if flip else t

    def get(self, b: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        plan = self.plan(b)
        jobs = [(src, f) for src, _, _, f in plan] + [(dst, f) for _, dst, _, f in plan]
        imgs = list(self._pool.map(lambda a: self.image(*a), jobs)) if self._pool else [self.image(*a) for a in jobs]
        k = len(plan)
        return torch.stack(imgs[:k]), torch.stack(imgs[k:]), [p[2] for p in plan]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


def _check_base(style: Any, cfg: Any, ctx: Any) -> None:
    mc = style.model_config_
    if mc.source is None and mc.size == "sd15" and not ctx.resume and style.weights_path is None and not cfg.allow_random_init:
        raise WeightsRequiredError(
            "training InstructPix2Pix needs a base model: --weights (an InstructPix2Pix diffusers folder / .ckpt, or a "
            "text-to-image SD 1.x model with --set model={source: PATH, widen_unet: true}) or --set model={source: ...}; "
            "--set allow_random_init=true trains random SD 1.5-shaped weights (plumbing tests only)"
        )
    if cfg.method == "lora" and mc.widen_unet:
        raise ValueError(
            "LoRA fine-tunes an InstructPix2Pix model; starting from a text-to-image model (widen_unet) needs method=full "
            "(the widened input layer must learn the image conditioning)"
        )


def train(style: Any, cfg: Any, ctx: Any) -> TrainResult:
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_scheduler

    from styleengine.diffusion import diffusion_graphs, tokenize
    from styleengine.weights import save_checkpoint

    _check_base(style, cfg, ctx)
    data = load_dataset(ctx.data_dir("data"), on_bad_file=ctx.on_bad_file, split=cfg.split,
                        full_decode=cfg.preflight == "full", progress=ctx.show_progress)
    comps = style.components
    mc = style.model_config_
    acc = ctx.accelerator()
    device = acc.device
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(str(acc.mixed_precision), torch.float32)
    unet, vae, text_encoder, tokenizer = comps.unet, comps.vae, comps.text_encoder, comps.tokenizer
    for frozen in (vae, text_encoder):  # only used for inference: kept in the half type under mixed precision
        frozen.requires_grad_(False).eval().to(device)
        if weight_dtype != torch.float32:
            frozen.to(dtype=weight_dtype)
    unet.to(device)

    if cfg.method == "lora":
        spec = LoraSpec(rank=cfg.lora_rank, alpha=cfg.lora_alpha or float(cfg.lora_rank), targets=cfg.lora_targets)
        unet.requires_grad_(False)
        add_lora(unet, spec)
        saved_config = mc.model_copy(update={"lora": spec})
        modules: dict[str, Any] = {"lora": LoraWeights(unet)}
    else:
        unet.requires_grad_(True)
        saved_config = mc.model_copy(update={"lora": None})
        modules = {"unet": unet}
    params = [p for p in unet.parameters() if p.requires_grad]
    for p in params:  # LoRA adapters and the trained UNet stay fp32 under mixed precision (autocast computes in half)
        p.data = p.data.float()
    if cfg.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    unet.train()

    lr = cfg.learning_rate or (LR_LORA if cfg.method == "lora" else LR_FULL)
    opt = torch.optim.AdamW(params, lr=lr, betas=(cfg.adam_beta1, cfg.adam_beta2), weight_decay=cfg.adam_weight_decay,
                            eps=cfg.adam_epsilon)
    # The schedule's horizon is the configured length, not --max-steps: a run cut short and resumed follows the
    # same learning-rate curve as the uninterrupted one.
    lr_sched = get_scheduler(cfg.lr_scheduler, optimizer=opt, num_warmup_steps=cfg.lr_warmup_steps,
                             num_training_steps=cfg.max_train_steps)
    model, opt, lr_sched = acc.prepare(unet, opt, lr_sched)
    ema = None
    if cfg.use_ema:
        from diffusers.training_utils import EMAModel

        ema = EMAModel(params, decay=cfg.ema_decay)
        ema.to(device)
    optimizers: dict[str, Any] = {"adamw": opt, **({"ema": ema} if ema is not None else {})}

    seed, step = ctx.seed, 0
    extra: dict[str, Any] = {}
    state = ctx.resume_into(modules=modules, optimizers=optimizers, schedulers={"lr": lr_sched})
    if state:
        step, extra = state["step"], dict(state.get("extra", {}))
        seed = int(extra.get("seed", seed))
        if ema is not None:
            ema.to(device)

    noise_scheduler = DDPMScheduler.from_config(comps.scheduler.config)
    scaling = float(vae.config.scaling_factor)
    p_drop = cfg.conditioning_dropout_prob
    with torch.no_grad():
        null_embed = text_encoder(tokenize(tokenizer, [""]).to(device))[0]

    def loss_on(original: torch.Tensor, edited: torch.Tensor, prompts: Sequence[str], g: torch.Generator,
                dropout: bool, timesteps: torch.Tensor | None = None) -> torch.Tensor:
        bsz = original.shape[0]
        with torch.no_grad():
            post = vae.encode(edited.to(device, weight_dtype)).latent_dist
            eps = torch.randn(post.mean.shape, generator=g).to(device, post.mean.dtype)
            latents = (post.mean + post.std * eps).float() * scaling
            noise = torch.randn(latents.shape, generator=g).to(device)
            t = timesteps if timesteps is not None else torch.randint(
                0, noise_scheduler.config.num_train_timesteps, (bsz,), generator=g)
            t = t.to(device).long()
            noisy = noise_scheduler.add_noise(latents, noise, t)
            text = text_encoder(tokenize(tokenizer, prompts).to(device))[0]
            image_latents = vae.encode(original.to(device, weight_dtype)).latent_dist.mode()
            r = torch.rand(bsz, generator=g).to(device)
            if dropout and p_drop > 0:
                text = torch.where((r < 2 * p_drop).view(bsz, 1, 1), null_embed, text)
                keep = 1.0 - ((r >= p_drop) & (r < 3 * p_drop)).to(image_latents.dtype)
                image_latents = image_latents * keep.view(bsz, 1, 1, 1)
            if noise_scheduler.config.prediction_type == "v_prediction":
                target = noise_scheduler.get_velocity(latents, noise, t)
            else:
                target = noise
            sample = torch.cat([noisy, image_latents.float()], dim=1)
        pred = model(sample, t, text).sample
        return F.mse_loss(pred.float(), target.float(), reduction="mean")

    accum = cfg.gradient_accumulation_steps
    batches = Batches(data, cfg.batch_size, cfg.resolution, cfg.random_flip, seed, cfg.num_workers)
    total = min(cfg.max_train_steps, ctx.max_steps) if ctx.max_steps else cfg.max_train_steps

    def eval_loss() -> float:
        original, edited, prompts = batches.get(0)
        n = original.shape[0]
        ts = torch.linspace(0, noise_scheduler.config.num_train_timesteps - 1, n + 2)[1:-1].round().long()
        with torch.no_grad():
            return float(loss_on(original, edited, prompts, _gen(seed, 3), False, ts))

    history: list[dict[str, float]] = []
    metrics: dict[str, float] = {}
    if cfg.eval_loss:
        if "eval_loss_initial" not in extra:
            extra["eval_loss_initial"] = eval_loss()
        metrics["eval_loss_initial"] = float(extra["eval_loss_initial"])

    val = _validation_set(batches, data, cfg.validation_images)

    def save(at: int) -> Path:
        return ctx.save(at, style=style.name, model_config=saved_config.model_dump(mode="json"), modules=modules,
                        optimizers=optimizers, schedulers={"lr": lr_sched},
                        extra={**{k: v for k, v in metrics.items() if math.isfinite(v)}, **extra, "seed": seed})

    def samples(at: int) -> None:
        if not val:
            return
        if ema is not None:
            ema.store(params)
            ema.copy_to(params)
        unet.eval()
        try:
            specs = diffusion_graphs(comps, guidance_multiplicity=3, batch_range=(1, 1, len(val)),
                                     latent_range=(8, 8, 8), pin_attention=False)
            sessions = direct_sessions(specs, device, weight_dtype)
            original = torch.stack([v[0] for v in val])
            out = edit(sessions, tokenizer, style.scheduler("euler_ancestral"), original.to(device), [v[2] for v in val],
                       seeds=list(range(len(val))), steps=cfg.validation_steps, scaling_factor=scaling)
            rows = [[v[0], v[1], o.cpu()] for v, o in zip(val, out, strict=True)]
            save_grid(ctx.samples_dir / f"step-{at:07d}.png", rows, value_range=(-1.0, 1.0))
        finally:
            unet.train()
            if ema is not None:
                ema.restore(params)

    checkpoint: Path | None = None
    try:
        with ctx.catch_interrupt(), ctx.progress(total, initial=step, desc="instruct_pix2pix") as bar:
            while step < total and not ctx.interrupted:
                running = 0.0
                for micro in range(accum):
                    b = step * accum + micro
                    original, edited, prompts = batches.get(b)
                    loss = loss_on(original, edited, prompts, _gen(seed, 2, b), True)
                    acc.backward(loss / accum)
                    running += float(loss.detach()) / accum
                acc.clip_grad_norm_(params, cfg.max_grad_norm)
                opt.step()
                lr_sched.step()
                opt.zero_grad(set_to_none=True)
                if ema is not None:
                    ema.step(params)
                step += 1
                metrics.update({"loss": running, "lr": float(lr_sched.get_last_lr()[0])})
                history.append({"step": step, "loss": running, "lr": metrics["lr"]})
                bar.set_postfix(loss=f"{running:.4g}")
                bar.update(1)
                if step % ctx.log_every == 0:
                    log.info("step %d: loss %.4g, lr %.3g", step, running, metrics["lr"])
                if step % ctx.sample_every == 0:
                    samples(step)
                if step % ctx.checkpoint_every == 0 and step < total:
                    checkpoint = save(step)
            if cfg.eval_loss:
                metrics["eval_loss_final"] = eval_loss()
            checkpoint = save(step)
            weights = _save_weights(ctx.out_dir / "weights", style, saved_config, modules, params, ema, step, save_checkpoint)
    finally:
        batches.close()
        unet.eval()
        unet.requires_grad_(False)
    log.info("training checkpoint %s; weights %s", checkpoint, weights)
    return TrainResult(weights, step, dict(metrics), interrupted=ctx.interrupted, history=history)


def _validation_set(batches: Batches, data: EditDataset, k: int) -> list[tuple[torch.Tensor, torch.Tensor, str]]:
    out = []
    for item in data.items[:k]:
        src, dst = item.pairs[0]
        out.append((batches.image(src, False), batches.image(dst, False), item.instruction))
    return out


def _save_weights(folder: Path, style: Any, config: Any, modules: dict[str, Any], params: list[torch.nn.Parameter],
                  ema: Any, step: int, save_checkpoint: Any) -> Path:
    """The final trained weights (EMA weights when EMA is on) as an engine checkpoint ``--weights`` accepts."""
    if ema is not None:
        ema.store(params)
        ema.copy_to(params)
    try:
        tensors = {f"{m}.{k}": v.detach().float().cpu() for m, mod in modules.items() for k, v in mod.state_dict().items()}
    finally:
        if ema is not None:
            ema.restore(params)
    return save_checkpoint(folder, tensors, style=style.name, model_config=config.model_dump(mode="json"),
                           meta={"step": step, "ema": ema is not None, "kind": next(iter(modules))})

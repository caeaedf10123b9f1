"""DreamBooth training, faithful to diffusers' ``examples/dreambooth`` (``train_dreambooth_lora.py`` for LoRA, the
default; ``train_dreambooth.py`` for the full UNet fine-tune), through accelerate (:mod:`styleengine.training`).

Per optimiser step (``gradient_accumulation_steps`` micro-batches of ``train_batch_size``):

* instance images (``--data``: every image in the folder, EXIF-oriented, RGB) are resized so the short side is
  ``resolution`` (``image_interpolation_mode``, Lanczos by default), cropped to ``resolution`` x ``resolution``
  (centre with ``center_crop``, else a random crop) and scaled to [-1, 1]; the dataset's length is
  ``max(instances, class images)`` and item ``i`` pairs instance ``i mod n`` with class image ``i mod m``, as the
  reference's ``DreamBoothDataset``;
* latents = VAE posterior sample x scaling factor, noise (``offset_noise``: + 0.1 x per-channel noise), uniform
  timesteps, the text embedding of the instance (and class) prompt;
* loss = MSE(prediction, noise or velocity); with ``with_prior_preservation`` the batch is instance + class
  halves, chunked, ``loss + prior_loss_weight * prior_loss``; ``snr_gamma`` weights the instance loss by
  min(SNR, gamma) / SNR (the full script's min-SNR option).

Prior preservation first generates the missing ``num_class_images`` with the base model (before any weight
changes) into ``class_data_dir`` (default ``<run>/class_images``), one file at a time (``<index>-<sha1>.jpg``, as
the reference names them; atomic), so an interrupted generation resumes and the next run reuses them.

Determinism: data order, crops, posterior samples, noise and timesteps are pure functions of ``(seed, step)``
(:func:`styleengine.training.rng.derived_generator`), so ``--resume`` ends with the same weights as an
uninterrupted run.  Checkpoints (``ctx.save``: atomic, ``checkpoints_total_limit``) hold the LoRA (or UNet) weights,
AdamW and LR-scheduler state.  The result: ``<run>/weights/pytorch_lora_weights.safetensors`` (diffusers'
``load_lora_weights`` reads it) with ``config.json`` naming the base, or an engine checkpoint for ``method=full``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from styleengine.data import DatasetError, find_images, read_image, to_uint8
from styleengine.diffusion.lora import LORA_FILE, LoraWeights, add_lora, lora_config, save_diffusers_lora
from styleengine.diffusion.sessions import direct_sessions
from styleengine.style import WeightsRequiredError
from styleengine.training import TrainResult
from styleengine.training.rng import derive_seed
from styleengine.training.rng import derived_generator as _gen

from .config import LR_FULL, LR_LORA

log = logging.getLogger(__name__)

_RESAMPLE = {"lanczos": "LANCZOS", "bilinear": "BILINEAR", "bicubic": "BICUBIC", "nearest": "NEAREST"}


# -- data ----------------------------------------------------------------------------------------------------


def preflight(folder: Path, *, minimum: int, resolution: int, on_bad_file: str = "fail", what: str = "instance",
              full: bool = True) -> list[Path]:
    """Every usable image in ``folder``: count, format, size and (``full``) a complete decode checked; EXIF
    orientation is applied when images are read (``styleengine.data.read_image``).  Bad files fail the run (naming
    each) under ``on_bad_file="fail"``, else are skipped with a warning."""
    from styleengine.data import probe_image
    from styleengine.data.preflight import BadFile

    if not folder.is_dir():
        raise DatasetError(f"{what} images: {folder} is not a folder")
    good, bad = [], []
    small = 0
    for p in find_images(folder):
        try:
            if full:
                h, w = read_image(p).array.shape[:2]
            else:
                info = probe_image(p)
                h, w = info.height, info.width
        except Exception as exc:  # noqa: BLE001 - every decode failure is reported by file
            bad.append(BadFile(p, str(exc).splitlines()[0]))
            continue
        small += min(h, w) < resolution
        good.append(p)
    if bad and on_bad_file == "fail":
        raise DatasetError(f"{len(bad)} bad {what} image(s): " + "; ".join(f"{b.path}: {b.reason}" for b in bad), bad)
    for b in bad:
        log.warning("skipping %s: %s", b.path, b.reason)
    if len(good) < minimum:
        raise DatasetError(f"{folder}: {len(good)} usable {what} image(s), at least {minimum} needed "
                           "(PNG / JPEG / WebP; DreamBooth uses 3-10 photos of the subject)", bad)
    if small:
        log.warning("%d of %d %s images are smaller than resolution %d on their short side: they are upscaled",
                    small, len(good), what, resolution)
    return good


def load_pixels(path: Path, resolution: int, *, center_crop: bool, interpolation: str, g: torch.Generator) -> torch.Tensor:
    """The reference's instance transform: short side -> ``resolution``, centre / random crop, [-1, 1] CHW."""
    from PIL import Image

    im = Image.fromarray(to_uint8(read_image(path).array))
    w, h = im.size
    if w <= h:
        size = (resolution, int(resolution * h / w))
    else:
        size = (int(resolution * w / h), resolution)
    im = im.resize(size, getattr(Image.Resampling, _RESAMPLE[interpolation]))
    w, h = im.size
    if center_crop:
        top, left = int(round((h - resolution) / 2.0)), int(round((w - resolution) / 2.0))
    else:
        top = int(torch.randint(0, h - resolution + 1, (1,), generator=g))
        left = int(torch.randint(0, w - resolution + 1, (1,), generator=g))
    im = im.crop((left, top, left + resolution, top + resolution))
    return torch.from_numpy(np.asarray(im, dtype=np.float32)).permute(2, 0, 1) / 127.5 - 1.0


def count_class_images(folder: Path) -> int:
    return len(find_images(folder)) if folder.is_dir() else 0


def generate_class_images(style: Any, cfg: Any, ctx: Any, folder: Path, seed: int) -> int:
    """Generate the missing class images with the base model; returns how many were generated (0 = reused)."""
    from PIL import Image

    from styleengine.diffusion import diffusion_graphs, txt2img

    folder.mkdir(parents=True, exist_ok=True)
    have = count_class_images(folder)
    missing = cfg.num_class_images - have
    if missing <= 0:
        log.info("prior preservation: reusing %d class images in %s", have, folder)
        return 0
    comps = style.components
    acc = ctx.accelerator()
    device = acc.device
    precision = cfg.prior_generation_precision or ("fp16" if device.type == "cuda" else "fp32")
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    res = cfg.resolution // 64 * 64 or 64
    specs = diffusion_graphs(comps, guidance_multiplicity=2, batch_range=(1, 1, cfg.sample_batch_size),
                             latent_range=(8, 8, 8), include=("text_encoder", "unet", "vae_decoder"), pin_attention=False)
    for m in (comps.unet, comps.vae, comps.text_encoder):
        m.to(device)
    sessions = direct_sessions(specs, device, dtype)
    log.info("prior preservation: generating %d class images (%s) into %s", missing, cfg.class_prompt, folder)
    with ctx.progress(missing, desc="class images") as bar:
        for start in range(have, cfg.num_class_images, cfg.sample_batch_size):
            idx = list(range(start, min(start + cfg.sample_batch_size, cfg.num_class_images)))
            out = txt2img(sessions, comps.tokenizer, comps.scheduler, [cfg.class_prompt] * len(idx),
                          seeds=[derive_seed(seed, 7, i) % (2**63) for i in idx], steps=cfg.class_generation_steps,
                          guidance_scale=7.5, height=res, width=res, scaling_factor=comps.scaling_factor,
                          device=str(device))
            for i, img in zip(idx, out, strict=True):
                arr = ((img.float().cpu().permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
                pil = Image.fromarray(arr)
                name = f"{i}-{hashlib.sha1(pil.tobytes()).hexdigest()}.jpg"
                tmp = folder / f".{name}.tmp"
                pil.save(tmp, format="JPEG", quality=95)
                os.replace(tmp, folder / name)
                bar.update(1)
    return missing


# -- training ------------------------------------------------------------------------------------------------


def _check(style: Any, cfg: Any, ctx: Any) -> None:
    mc = style.model_config_
    if not cfg.instance_prompt:
        raise ValueError("set instance_prompt (e.g. --set instance_prompt='a photo of sks dog')")
    if cfg.with_prior_preservation and not cfg.class_prompt:
        raise ValueError("with_prior_preservation needs class_prompt (e.g. --set class_prompt='a photo of dog')")
    if mc.source is None and mc.size == "sd15" and style.weights_path is None and not cfg.allow_random_init:
        raise WeightsRequiredError(
            "training DreamBooth needs a base model: --set model={source: SD15_FOLDER_OR_FILE} (or --weights); "
            "--set allow_random_init=true trains random SD 1.5-shaped weights (plumbing only)")
    if mc.loras:
        raise ValueError("train on a base model without serve-time LoRAs (model.loras must be empty)")
    if mc.fused_lora:
        raise ValueError("train from the base model, not from a LoRA fused into it (--weights LORA): "
                         "the new LoRA is saved against the base named in model.source")


def train(style: Any, cfg: Any, ctx: Any) -> TrainResult:
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import compute_snr

    from styleengine.diffusion import tokenize

    _check(style, cfg, ctx)
    instances = preflight(ctx.data_dir("data"), minimum=cfg.min_instance_images, resolution=cfg.resolution,
                          on_bad_file=ctx.on_bad_file, full=cfg.preflight == "full")
    seed = ctx.seed
    comps = style.components
    mc = style.model_config_
    classes: list[Path] = []
    class_dir = None
    generated = 0
    if cfg.with_prior_preservation:
        class_dir = Path(cfg.class_data_dir) if cfg.class_data_dir else ctx.out_dir / "class_images"
        generated = generate_class_images(style, cfg, ctx, class_dir, seed)
        classes = sorted(find_images(class_dir))[: cfg.num_class_images]

    acc = ctx.accelerator()
    device = acc.device
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(str(acc.mixed_precision), torch.float32)
    unet, vae, text_encoder, tokenizer = comps.unet, comps.vae, comps.text_encoder, comps.tokenizer
    vae.requires_grad_(False).eval().to(device)
    text_encoder.to(device)
    unet.to(device)
    if not cfg.train_text_encoder:
        text_encoder.requires_grad_(False).eval()
    if weight_dtype != torch.float32:  # frozen modules only run inference: kept in the half type
        vae.to(dtype=weight_dtype)
        if not cfg.train_text_encoder:
            text_encoder.to(dtype=weight_dtype)

    modules: dict[str, Any]
    if cfg.method == "lora":
        unet.requires_grad_(False)
        text_encoder.requires_grad_(False)
        add_lora(unet, lora_config(cfg.rank, cfg.rank, cfg.lora_targets, dropout=cfg.lora_dropout))
        modules = {"lora": LoraWeights(unet)}
        if cfg.train_text_encoder:
            add_lora(text_encoder, lora_config(cfg.rank, cfg.rank, cfg.text_encoder_lora_targets, dropout=cfg.lora_dropout))
            modules["text_encoder_lora"] = LoraWeights(text_encoder)
    else:
        unet.requires_grad_(True)
        modules = {"unet": unet}
        if cfg.train_text_encoder:
            text_encoder.requires_grad_(True)
            modules["text_encoder"] = text_encoder
    trained = [unet, *([text_encoder] if cfg.train_text_encoder else [])]
    params = [p for m in trained for p in m.parameters() if p.requires_grad]
    for p in params:  # trained weights stay fp32 under mixed precision (autocast computes in half)
        p.data = p.data.float()
    if cfg.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
        if cfg.train_text_encoder:
            text_encoder.gradient_checkpointing_enable()
    for m in trained:
        m.train()

    n_items = max(len(instances), len(classes))
    per_epoch_batches = math.ceil(n_items / cfg.train_batch_size)
    accum = cfg.gradient_accumulation_steps
    updates_per_epoch = math.ceil(per_epoch_batches / accum)
    max_steps = cfg.max_train_steps or cfg.num_train_epochs * updates_per_epoch
    lr = cfg.learning_rate or (LR_LORA if cfg.method == "lora" else LR_FULL)
    if cfg.scale_lr:
        lr = lr * accum * cfg.train_batch_size * acc.num_processes
    opt = torch.optim.AdamW(params, lr=lr, betas=(cfg.adam_beta1, cfg.adam_beta2), weight_decay=cfg.adam_weight_decay,
                            eps=cfg.adam_epsilon)
    lr_sched = get_scheduler(cfg.lr_scheduler, optimizer=opt, num_warmup_steps=cfg.lr_warmup_steps * acc.num_processes,
                             num_training_steps=max_steps * acc.num_processes, num_cycles=cfg.lr_num_cycles,
                             power=cfg.lr_power)
    prepared = acc.prepare(unet, *([text_encoder] if cfg.train_text_encoder else []), opt, lr_sched)
    model = prepared[0]
    text_model = prepared[1] if cfg.train_text_encoder else text_encoder
    opt, lr_sched = prepared[-2], prepared[-1]
    optimizers = {"adamw": opt}

    step = 0
    extra: dict[str, Any] = {}
    state = ctx.resume_into(modules=modules, optimizers=optimizers, schedulers={"lr": lr_sched})
    if state:
        step, extra = state["step"], dict(state.get("extra", {}))
        seed = int(extra.get("seed", seed))

    noise_scheduler = DDPMScheduler.from_config(comps.scheduler.config)
    scaling = float(vae.config.scaling_factor)
    ids_instance = tokenize(tokenizer, [cfg.instance_prompt]).to(device)
    ids_class = tokenize(tokenizer, [cfg.class_prompt]).to(device) if classes else None

    def batch(b: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Micro-batch ``b``: pixels (instance half, then class half) and token ids, a pure function of (seed, b)."""
        epoch, k = divmod(b, per_epoch_batches)
        perm = torch.randperm(n_items, generator=_gen(seed, 0, epoch)).tolist()
        items = perm[k * cfg.train_batch_size:(k + 1) * cfg.train_batch_size]
        g = _gen(seed, 1, b)
        load = dict(resolution=cfg.resolution, center_crop=cfg.center_crop, interpolation=cfg.image_interpolation_mode, g=g)
        pix = [load_pixels(instances[i % len(instances)], **load) for i in items]
        ids = [ids_instance] * len(items)
        if classes:
            pix += [load_pixels(classes[i % len(classes)], **load) for i in items]
            ids += [ids_class] * len(items)
        return torch.stack(pix), torch.cat(ids)

    def loss_on(b: int) -> torch.Tensor:
        pixels, ids = batch(b)
        g = _gen(seed, 2, b)
        with torch.no_grad():
            post = vae.encode(pixels.to(device, weight_dtype)).latent_dist
            eps = torch.randn(post.mean.shape, generator=g).to(device, post.mean.dtype)
            latents = (post.mean + post.std * eps).float() * scaling
            noise = torch.randn(latents.shape, generator=g)
            if cfg.offset_noise:
                noise = noise + 0.1 * torch.randn((*latents.shape[:2], 1, 1), generator=g)
            noise = noise.to(device)
            t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (latents.shape[0],), generator=g).to(device)
            noisy = noise_scheduler.add_noise(latents, noise, t)
        if cfg.train_text_encoder:
            hidden = text_model(ids)[0]
        else:
            with torch.no_grad():
                hidden = text_encoder(ids)[0]
        pred = model(noisy, t, hidden.float()).sample
        target = noise_scheduler.get_velocity(latents, noise, t) if noise_scheduler.config.prediction_type == "v_prediction" else noise
        prior_loss = None
        t_inst = t
        if classes:
            pred, pred_prior = torch.chunk(pred, 2, dim=0)
            target, target_prior = torch.chunk(target, 2, dim=0)
            t_inst = t[: pred.shape[0]]
            prior_loss = F.mse_loss(pred_prior.float(), target_prior.float(), reduction="mean")
        if cfg.snr_gamma is None:
            loss = F.mse_loss(pred.float(), target.float(), reduction="mean")
        else:
            snr = compute_snr(noise_scheduler, t_inst)
            divisor = snr + 1 if noise_scheduler.config.prediction_type == "v_prediction" else snr
            w = torch.minimum(snr, torch.full_like(snr, cfg.snr_gamma)) / divisor
            loss = (F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=(1, 2, 3)) * w).mean()
        if prior_loss is not None:
            loss = loss + cfg.prior_loss_weight * prior_loss
        return loss

    saved_config = mc.model_copy(update={"fused_lora": None, "loras": {}})
    metrics: dict[str, float] = {"class_images_generated": float(generated)}
    history: list[dict[str, float]] = []
    val_every = cfg.validation_every or ctx.sample_every

    def save(at: int) -> Path:
        return ctx.save(at, style=style.name, model_config=saved_config.model_dump(mode="json"), modules=modules,
                        optimizers=optimizers, schedulers={"lr": lr_sched}, extra={**extra, "seed": seed})

    checkpoint: Path | None = None
    total = min(max_steps, ctx.max_steps) if ctx.max_steps else max_steps
    try:
        with ctx.catch_interrupt(), ctx.progress(total, initial=step, desc="dreambooth") as bar:
            while step < total and not ctx.interrupted:
                running = 0.0
                for micro in range(accum):
                    loss = loss_on(step * accum + micro)
                    acc.backward(loss / accum)
                    running += float(loss.detach()) / accum
                acc.clip_grad_norm_(params, cfg.max_grad_norm)
                opt.step()
                lr_sched.step()
                opt.zero_grad(set_to_none=True)
                step += 1
                metrics.update({"loss": running, "lr": float(lr_sched.get_last_lr()[0])})
                history.append({"step": step, "loss": running, "lr": metrics["lr"]})
                bar.set_postfix(loss=f"{running:.4g}")
                bar.update(1)
                if step % ctx.log_every == 0:
                    log.info("step %d: loss %.4g, lr %.3g", step, running, metrics["lr"])
                if cfg.validation_prompt and step % val_every == 0:
                    _validate(style, cfg, ctx, step, device, weight_dtype, trained)
                if step % ctx.checkpoint_every == 0 and step < total:
                    checkpoint = save(step)
            checkpoint = save(step)
            weights = _save_weights(ctx.out_dir / "weights", style, cfg, saved_config, modules, step)
    finally:
        for m in trained:
            m.eval()
            m.requires_grad_(False)
    log.info("training checkpoint %s; weights %s", checkpoint, weights)
    return TrainResult(weights, step, dict(metrics), interrupted=ctx.interrupted, history=history)


def _validate(style: Any, cfg: Any, ctx: Any, step: int, device: Any, dtype: torch.dtype, trained: list[Any]) -> None:
    """``num_validation_images`` for ``validation_prompt`` (DPM-Solver++, ``validation_steps``), as one grid."""
    from styleengine.diffusion import diffusion_graphs, txt2img
    from styleengine.training.samples import save_grid

    comps = style.components
    for m in trained:
        m.eval()
    try:
        n = cfg.num_validation_images
        res = max(64, cfg.resolution // 64 * 64)
        specs = diffusion_graphs(comps, guidance_multiplicity=2, batch_range=(1, 1, n), latent_range=(8, 8, 8),
                                 include=("text_encoder", "unet", "vae_decoder"), pin_attention=False)
        out = txt2img(direct_sessions(specs, device, dtype), comps.tokenizer, style.scheduler("dpmpp"),
                      [cfg.validation_prompt] * n, seeds=list(range(n)), steps=cfg.validation_steps, height=res, width=res,
                      scaling_factor=comps.scaling_factor, device=str(device))
        save_grid(ctx.samples_dir / f"step-{step:07d}.png", [[o.cpu() for o in out]], value_range=(-1.0, 1.0))
    finally:
        for m in trained:
            m.train()


def _save_weights(folder: Path, style: Any, cfg: Any, base: Any, modules: dict[str, Any], step: int) -> Path:
    """LoRA: ``pytorch_lora_weights.safetensors`` (diffusers' format) + ``config.json`` naming the base (atomic);
    full: an engine checkpoint (``unet.*`` and, with the text encoder trained, ``text_encoder.*``)."""
    from styleengine.weights import save_checkpoint

    info = {"step": step, "method": cfg.method, "instance_prompt": cfg.instance_prompt, "rank": cfg.rank}
    if cfg.method == "full":
        tensors = {f"{m}.{k}": v.detach().float().cpu() for m, mod in modules.items() for k, v in mod.state_dict().items()}
        return save_checkpoint(folder, tensors, style=style.name, model_config=base.model_dump(mode="json"), meta=info)
    comps = style.components
    folder.mkdir(parents=True, exist_ok=True)
    save_diffusers_lora(folder / LORA_FILE, unet=comps.unet,
                        text_encoder=comps.text_encoder if "text_encoder_lora" in modules else None)
    tmp = folder / ".config.json.tmp"
    tmp.write_text(json.dumps({"style": style.name, "model_config": base.model_dump(mode="json"), "meta": info},
                              indent=2, sort_keys=True) + "\n")
    os.replace(tmp, folder / "config.json")
    return folder

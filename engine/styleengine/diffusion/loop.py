"""The runtime-agnostic denoising loop: scheduler and guidance in torch, every network through a Session.

Each graph (``text_encoder``, ``unet``, ``vae_encoder``, ``vae_decoder``, ``controlnet[_i]``; see
:mod:`styleengine.diffusion.graphs`) is called as ``sessions[name].run({...})`` with named tensors, so
torch eager, ONNX Runtime and TensorRT are interchangeable per graph.  The arithmetic reproduces
diffusers' pipelines step for step:

* text-to-image: ``StableDiffusionPipeline`` (2-way classifier-free guidance, batch order
  ``[uncond, text]``, ``noise = u + g (t - u)``), with ControlNets as ``StableDiffusionControlNetPipeline``;
* img2img: ``StableDiffusionImg2ImgPipeline`` (``strength`` skips the first steps; the start latents are
  the scaled VAE posterior *sample* noised to the first kept timestep with ``scheduler.add_noise``);
* InstructPix2Pix: ``StableDiffusionInstructPix2PixPipeline`` = timbrooks/instruct-pix2pix ``CFGDenoiser``
  (3-way guidance, batch order ``[text + image, image only, neither]``, image latents = *unscaled* VAE
  posterior mode concatenated on channels after ``scale_model_input``, zeros for "no image";
  ``noise = u + g_text (t - i) + g_image (i - u)``).

Randomness: every request has its own ``torch.Generator`` (from its seed) on the CPU; the initial noise,
the VAE posterior sample and the ancestral / SDE noise of each step are drawn per request, so a request's
result does not depend on its batch-mates, and the same seed gives the same noise on every device and
runtime (as diffusers does with a list of CPU generators).  The caller's scheduler is never mutated:
each run works on a fresh copy (``from_config``), so concurrent requests may share one.

Cancellation: ``callback(step, total, latents)`` runs after every step; returning ``False`` (or raising
:class:`Cancelled`) stops the loop, which raises :class:`Cancelled` to the caller.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..runtime.base import Session

Sessions = Mapping[str, Session]
Callback = Callable[[int, int, torch.Tensor], "bool | None"]


class Cancelled(Exception):
    """The denoising loop was stopped by its callback (request timeout, client gone, user abort)."""

    def __init__(self, steps_done: int = 0, total: int = 0, reason: str = "cancelled by callback") -> None:
        super().__init__(f"{reason} after {steps_done}/{total} steps")
        self.steps_done = steps_done
        self.total = total


# -- small helpers ------------------------------------------------------------------------------------


def generators_for(seeds: Sequence[int]) -> list[torch.Generator]:
    """One CPU generator per request."""
    return [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]


def randn(shape: Sequence[int], generators: Sequence[torch.Generator], device: Any = "cpu") -> torch.Tensor:
    """Per-request N(0, 1) noise ``[len(generators), *shape[1:]]``, drawn on the CPU, moved to ``device``."""
    per = (1, *tuple(shape)[1:])
    return torch.cat([torch.randn(per, generator=g, dtype=torch.float32) for g in generators]).to(device)


def _run(sessions: Sessions, name: str, feeds: Mapping[str, torch.Tensor], device: Any) -> dict[str, torch.Tensor]:
    if name not in sessions:
        raise KeyError(f"no session for graph {name!r}; have {sorted(sessions)}")
    out = sessions[name].run(feeds)
    return {k: v.to(device=device, dtype=torch.float32) if v.is_floating_point() else v.to(device) for k, v in out.items()}


def _per_request(value: float | Sequence[float] | torch.Tensor, batch: int, device: Any) -> torch.Tensor:
    """A guidance weight for each request, shaped to broadcast over ``[B, C, h, w]``."""
    t = torch.as_tensor(value, dtype=torch.float32, device=device).flatten()
    if t.numel() == 1:
        t = t.expand(batch)
    if t.numel() != batch:
        raise ValueError(f"got {t.numel()} guidance values for {batch} requests")
    return t.view(batch, 1, 1, 1)


# -- text ---------------------------------------------------------------------------------------------


def tokenize(tokenizer: Any, prompts: Sequence[str]) -> torch.Tensor:
    """CLIP token ids ``[B, max_length]`` padded and truncated to the tokenizer's ``model_max_length``."""
    return tokenizer(
        list(prompts), padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids.to(torch.int64)


def encode_prompts(
    sessions: Sessions,
    tokenizer: Any,
    prompts: Sequence[str],
    negative_prompts: Sequence[str] | None = None,
    *,
    device: Any = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """(cond, uncond) text embeddings ``[B, 77, D]``; the unconditional ones encode ``negative_prompts``
    (empty strings by default), as diffusers' ``encode_prompt`` does."""
    prompts = list(prompts)
    negatives = [""] * len(prompts) if negative_prompts is None else list(negative_prompts)
    if len(negatives) != len(prompts):
        raise ValueError(f"{len(negatives)} negative prompts for {len(prompts)} prompts")
    cond = _run(sessions, "text_encoder", {"input_ids": tokenize(tokenizer, prompts)}, device)["last_hidden_state"]
    uncond = _run(sessions, "text_encoder", {"input_ids": tokenize(tokenizer, negatives)}, device)["last_hidden_state"]
    return cond, uncond


# -- VAE ----------------------------------------------------------------------------------------------


def image_posterior(sessions: Sessions, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) of the VAE posterior for images in [-1, 1], unscaled."""
    out = _run(sessions, "vae_encoder", {"image": images.float()}, images.device)
    return out["latent_mean"], out["latent_std"]


def encode_images(
    sessions: Sessions,
    images: torch.Tensor,
    *,
    generators: Sequence[torch.Generator] | None = None,
    scaling_factor: float = 0.18215,
) -> torch.Tensor:
    """Scaled latents of images in [-1, 1]: a posterior sample per request's generator (img2img), or the
    mean when ``generators`` is None."""
    mean, std = image_posterior(sessions, images)
    if generators is None:
        return mean * scaling_factor
    return (mean + std * randn(mean.shape, generators, mean.device)) * scaling_factor


def decode_latents(sessions: Sessions, latents: torch.Tensor, *, scaling_factor: float = 0.18215) -> torch.Tensor:
    """Images in [-1, 1] (clamped) from scaled latents."""
    out = _run(sessions, "vae_decoder", {"latents": latents / scaling_factor}, latents.device)["image"]
    return out.clamp(-1.0, 1.0)


# -- schedule -----------------------------------------------------------------------------------------


@dataclass
class Schedule:
    """A private, configured scheduler copy and the timesteps one run will visit."""

    scheduler: Any
    timesteps: torch.Tensor
    num_inference_steps: int

    @property
    def init_noise_sigma(self) -> float:
        return float(self.scheduler.init_noise_sigma)


def make_schedule(scheduler: Any, steps: int, *, strength: float = 1.0, device: Any = "cpu") -> Schedule:
    """``set_timesteps(steps)`` on a fresh copy; ``strength < 1`` keeps the last ``int(steps * strength)``
    steps as diffusers' img2img ``get_timesteps`` does (and ``set_begin_index`` for multistep schedulers)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not 0.0 < strength <= 1.0:
        raise ValueError(f"strength must be in (0, 1], got {strength}")
    sched = type(scheduler).from_config(scheduler.config)
    sched.set_timesteps(steps, device=device)
    timesteps = sched.timesteps
    if strength < 1.0:
        init = min(int(steps * strength), steps)
        t_start = max(steps - init, 0)
        timesteps = timesteps[t_start * sched.order:]
        if hasattr(sched, "set_begin_index"):
            sched.set_begin_index(t_start * sched.order)
        if len(timesteps) == 0:
            raise ValueError(f"strength {strength} with {steps} steps leaves no denoising step")
    return Schedule(sched, timesteps, steps)


def initial_latents(
    schedule: Schedule,
    shape: Sequence[int],
    generators: Sequence[torch.Generator],
    *,
    init_latents: torch.Tensor | None = None,
    device: Any = "cpu",
) -> torch.Tensor:
    """Start latents: pure noise × ``init_noise_sigma`` (text-to-image, InstructPix2Pix), or ``init_latents``
    (scaled image latents) noised to the schedule's first timestep (img2img)."""
    if len(generators) != shape[0]:
        raise ValueError(f"{len(generators)} generators for a batch of {shape[0]}")
    noise = randn(shape, generators, device)
    if init_latents is None:
        return noise * schedule.init_noise_sigma
    t0 = schedule.timesteps[:1].repeat(shape[0])
    return schedule.scheduler.add_noise(init_latents.to(device), noise, t0)


# -- ControlNet ---------------------------------------------------------------------------------------


@dataclass
class Control:
    """One ControlNet's conditioning: image ``[B, 3, H, W]`` in [0, 1] at pixel size, weight and the
    fraction of the schedule it is active in (diffusers' ``control_guidance_start`` / ``_end``)."""

    image: torch.Tensor
    scale: float = 1.0
    start: float = 0.0
    end: float = 1.0


def _control_names(sessions: Sessions, n: int) -> list[str]:
    if n == 1 and "controlnet" in sessions:
        return ["controlnet"]
    return [f"controlnet_{i}" for i in range(n)]


# -- the loop -----------------------------------------------------------------------------------------


def denoise(
    sessions: Sessions,
    schedule: Schedule,
    latents: torch.Tensor,
    cond: torch.Tensor,
    *,
    uncond: torch.Tensor | None = None,
    guidance: float | Sequence[float] = 7.5,
    image_latents: torch.Tensor | None = None,
    image_guidance: float | Sequence[float] = 1.5,
    guidance_multiplicity: int | None = None,
    generators: Sequence[torch.Generator] | None = None,
    eta: float = 0.0,
    control: Sequence[Control] = (),
    callback: Callback | None = None,
) -> torch.Tensor:
    """Run ``schedule`` from ``latents`` (already noised: see :func:`initial_latents`); returns latents.

    ``guidance_multiplicity`` (default: 3 with ``image_latents``, else 2 when ``uncond`` is given, else 1)
    is how many UNet rows each request takes: 1 = no guidance, 2 = text CFG, 3 = InstructPix2Pix.  It must
    match the ``unet_batch`` dim the UNet graph was built for.  ``guidance`` / ``image_guidance`` may be one
    value or one per request.  ``generators`` (one per request) feed ancestral / SDE schedulers; ``eta`` is
    DDIM's.  ``image_latents`` are InstructPix2Pix's unscaled conditioning latents ``[B, 4, h, w]``.
    """
    device = latents.device
    b = latents.shape[0]
    m = guidance_multiplicity or (3 if image_latents is not None else 2 if uncond is not None else 1)
    if image_latents is not None and m not in (1, 3):
        raise ValueError("image-conditioned denoising (InstructPix2Pix) uses guidance_multiplicity 1 or 3")
    if image_latents is None and m not in (1, 2):
        raise ValueError("text-only denoising uses guidance_multiplicity 1 or 2")
    if m > 1 and uncond is None:
        raise ValueError(f"guidance_multiplicity {m} needs unconditional embeddings (uncond)")
    if cond.shape[0] != b:
        raise ValueError(f"{cond.shape[0]} text embeddings for {b} latents")

    # Rows of the expanded batch, in the reference order.
    if m == 1:
        embeds = cond
        img_rows = image_latents
    elif m == 2:
        embeds = torch.cat([uncond, cond])  # StableDiffusionPipeline: [negative, positive]
        img_rows = None
    else:
        embeds = torch.cat([cond, uncond, uncond])  # InstructPix2Pix: [text+image, image only, neither]
        img_rows = torch.cat([image_latents, image_latents, torch.zeros_like(image_latents)])
    embeds = embeds.to(device)
    img_rows = img_rows.to(device) if img_rows is not None else None
    g_text = _per_request(guidance, b, device)
    g_image = _per_request(image_guidance, b, device)

    sched = schedule.scheduler
    step_params = set(inspect.signature(sched.step).parameters)
    extra: dict[str, Any] = {}
    if "eta" in step_params:
        extra["eta"] = eta
    if "generator" in step_params and generators is not None:
        if len(generators) != b:
            raise ValueError(f"{len(generators)} generators for a batch of {b}")
        extra["generator"] = list(generators)

    names = _control_names(sessions, len(control))
    control_images = [torch.cat([c.image.float().to(device)] * m) for c in control]

    timesteps = schedule.timesteps
    total = len(timesteps)
    for i, t in enumerate(timesteps):
        model_input = torch.cat([latents] * m) if m > 1 else latents
        model_input = sched.scale_model_input(model_input, t)
        t_rows = torch.full((m * b,), float(t), dtype=torch.float32, device=device)
        feeds: dict[str, torch.Tensor] = {"timestep": t_rows, "encoder_hidden_states": embeds}
        if control:
            residuals: list[torch.Tensor] | None = None
            for c, name, img in zip(control, names, control_images, strict=True):
                keep = 1.0 - float(i / total < c.start or (i + 1) / total > c.end)
                out = _run(sessions, name, {
                    "sample": model_input, **feeds, "controlnet_cond": img,
                    "conditioning_scale": torch.tensor(c.scale * keep, dtype=torch.float32),
                }, device)
                res = [out[k] for k in sessions[name].output_names]
                residuals = res if residuals is None else [a + r for a, r in zip(residuals, res, strict=True)]
            assert residuals is not None
            for k, r in enumerate(residuals[:-1]):
                feeds[f"down_residual_{k}"] = r
            feeds["mid_residual"] = residuals[-1]
        sample = torch.cat([model_input, img_rows], dim=1) if img_rows is not None else model_input
        noise_pred = _run(sessions, "unet", {"sample": sample, **feeds}, device)["noise_pred"]
        if m == 2:
            n_uncond, n_text = noise_pred.chunk(2)
            noise_pred = n_uncond + g_text * (n_text - n_uncond)
        elif m == 3:
            n_text, n_image, n_uncond = noise_pred.chunk(3)
            noise_pred = n_uncond + g_text * (n_text - n_image) + g_image * (n_image - n_uncond)
        latents = sched.step(noise_pred, t, latents, **extra, return_dict=False)[0]
        if callback is not None and callback(i + 1, total, latents) is False:
            raise Cancelled(i + 1, total)
    return latents


# -- whole pipelines ----------------------------------------------------------------------------------


def _cfg(guidance_scale: float | Sequence[float], multiplicity: int | None) -> bool:
    if multiplicity is not None:
        return multiplicity > 1
    return bool(torch.as_tensor(guidance_scale, dtype=torch.float32).max().item() > 1.0)


def txt2img(
    sessions: Sessions,
    tokenizer: Any,
    scheduler: Any,
    prompts: Sequence[str],
    *,
    seeds: Sequence[int],
    negative_prompts: Sequence[str] | None = None,
    steps: int = 50,
    guidance_scale: float | Sequence[float] = 7.5,
    height: int = 512,
    width: int = 512,
    eta: float = 0.0,
    control: Sequence[Control] = (),
    callback: Callback | None = None,
    latent_channels: int = 4,
    vae_scale_factor: int = 8,
    scaling_factor: float = 0.18215,
    guidance_multiplicity: int | None = None,
    output: str = "image",
    device: Any = "cpu",
) -> torch.Tensor:
    """Text-to-image as ``StableDiffusionPipeline``: images ``[B, 3, H, W]`` in [-1, 1], or the final
    latents with ``output="latent"``.  ``guidance_multiplicity`` None follows diffusers (2-way CFG when
    ``guidance_scale > 1``, else none); a style serving exported graphs passes the multiplicity they were
    built for."""
    if len(seeds) != len(prompts):
        raise ValueError(f"{len(seeds)} seeds for {len(prompts)} prompts")
    gens = generators_for(seeds)
    cond, uncond = encode_prompts(sessions, tokenizer, prompts, negative_prompts, device=device)
    schedule = make_schedule(scheduler, steps, device=device)
    shape = (len(prompts), latent_channels, height // vae_scale_factor, width // vae_scale_factor)
    latents = initial_latents(schedule, shape, gens, device=device)
    cfg = _cfg(guidance_scale, guidance_multiplicity)
    latents = denoise(
        sessions, schedule, latents, cond, uncond=uncond if cfg else None, guidance=guidance_scale,
        guidance_multiplicity=2 if cfg else 1, generators=gens, eta=eta, control=control, callback=callback,
    )
    return latents if output == "latent" else decode_latents(sessions, latents, scaling_factor=scaling_factor)


def img2img(
    sessions: Sessions,
    tokenizer: Any,
    scheduler: Any,
    images: torch.Tensor,
    prompts: Sequence[str],
    *,
    seeds: Sequence[int],
    strength: float = 0.8,
    negative_prompts: Sequence[str] | None = None,
    steps: int = 50,
    guidance_scale: float | Sequence[float] = 7.5,
    eta: float = 0.0,
    control: Sequence[Control] = (),
    callback: Callback | None = None,
    scaling_factor: float = 0.18215,
    guidance_multiplicity: int | None = None,
    output: str = "image",
) -> torch.Tensor:
    """Image-to-image as ``StableDiffusionImg2ImgPipeline``: images in [-1, 1] ``[B, 3, H, W]``; ``strength``
    in (0, 1] is the fraction of the schedule re-run (1.0 = start from pure noise at the first timestep).
    With ``control`` (images at the working size) it is ``StableDiffusionControlNetImg2ImgPipeline``."""
    if not (len(seeds) == len(prompts) == images.shape[0]):
        raise ValueError(f"{images.shape[0]} images, {len(prompts)} prompts and {len(seeds)} seeds must match")
    device = images.device
    gens = generators_for(seeds)
    cond, uncond = encode_prompts(sessions, tokenizer, prompts, negative_prompts, device=device)
    schedule = make_schedule(scheduler, steps, strength=strength, device=device)
    init = encode_images(sessions, images, generators=gens, scaling_factor=scaling_factor)
    latents = initial_latents(schedule, init.shape, gens, init_latents=init, device=device)
    cfg = _cfg(guidance_scale, guidance_multiplicity)
    latents = denoise(
        sessions, schedule, latents, cond, uncond=uncond if cfg else None, guidance=guidance_scale,
        guidance_multiplicity=2 if cfg else 1, generators=gens, eta=eta, control=control, callback=callback,
    )
    return latents if output == "latent" else decode_latents(sessions, latents, scaling_factor=scaling_factor)

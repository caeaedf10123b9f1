"""InstructPix2Pix editing over Sessions (timbrooks/instruct-pix2pix, as diffusers'
``StableDiffusionInstructPix2PixPipeline`` runs it).

* Defaults are the reference's ``edit_cli.py`` ones: 100 steps, text guidance 7.5, image guidance 1.5,
  resolution 512 (diffusers' pipeline has the same 100 / 7.5 / 1.5).
* :func:`resolve_size` is ``edit_cli.py``'s size rule: scale so the long side is ``resolution``, round the
  *short* side up to a multiple of 64, recompute the scale from it, floor both sides to multiples of 64;
  the image is then ``ImageOps.fit`` (centre crop to that aspect, Lanczos resize): :func:`fit_pil` does
  exactly that, :func:`fit` is the tensor version (antialiased bicubic; torch has no Lanczos).
* :func:`edit` is the 3-way guided loop of :func:`styleengine.diffusion.loop.denoise`; the conditioning
  image latents are the VAE posterior *mode* (mean), unscaled, as the reference's
  ``encode_first_stage(x).mode()``.  Guidance is off (one UNet row per request) when
  ``guidance_scale <= 1`` or ``image_guidance_scale < 1``, as in diffusers.

Note the reference samples with k-diffusion's Euler-ancestral over ``CompVisDenoiser`` sigmas, which
interpolate ``log sigma`` between integer timesteps; diffusers' ``EulerAncestralDiscreteScheduler``
(linspace spacing) visits the same timesteps but interpolates ``sigma`` linearly, so sigmas at fractional
timesteps differ slightly from the reference's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from styleengine.diffusion.loop import (
    Callback,
    decode_latents,
    denoise,
    encode_prompts,
    generators_for,
    image_posterior,
    initial_latents,
    make_schedule,
)

#: The reference's edit_cli.py defaults.
DEFAULT_STEPS = 100
DEFAULT_GUIDANCE_SCALE = 7.5
DEFAULT_IMAGE_GUIDANCE_SCALE = 1.5
DEFAULT_RESOLUTION = 512


def resolve_size(height: int, width: int, resolution: int = DEFAULT_RESOLUTION) -> tuple[int, int]:
    """(height, width) the reference edits an ``height × width`` image at: multiples of 64, aspect ≈ kept."""
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    factor = resolution / max(width, height)
    factor = math.ceil(min(width, height) * factor / 64) * 64 / min(width, height)
    out_w = int((width * factor) // 64) * 64
    out_h = int((height * factor) // 64) * 64
    if out_w < 64 or out_h < 64:
        raise ValueError(f"a {height}x{width} image is too elongated to edit at resolution {resolution}")
    return out_h, out_w


def _crop_box(height: int, width: int, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """Centred crop (top, left, h, w) of ``height × width`` with the aspect ratio of ``size`` (as ImageOps.fit)."""
    th, tw = size
    target = tw / th
    if width / height > target:  # too wide: crop width
        cw, ch = round(height * target), height
    else:
        cw, ch = width, round(width / target)
    return (height - ch) // 2, (width - cw) // 2, ch, cw


def fit(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Centre-crop ``[B, C, H, W]`` images to the aspect of ``size`` and resize to it (bicubic, antialiased)."""
    top, left, ch, cw = _crop_box(images.shape[-2], images.shape[-1], size)
    crop = images[..., top:top + ch, left:left + cw]
    if tuple(crop.shape[-2:]) == tuple(size):
        return crop
    return F.interpolate(crop.float(), size=size, mode="bicubic", antialias=True, align_corners=False)


def fit_pil(image: Any, resolution: int = DEFAULT_RESOLUTION) -> torch.Tensor:
    """The reference's preprocessing of one PIL image: ``ImageOps.fit`` (Lanczos) to :func:`resolve_size`,
    then ``2 * x / 255 - 1`` → ``[1, 3, h, w]``."""
    import numpy as np
    from PIL import Image, ImageOps

    image = image.convert("RGB")
    h, w = resolve_size(image.height, image.width, resolution)
    image = ImageOps.fit(image, (w, h), method=Image.Resampling.LANCZOS)
    x = torch.from_numpy(np.asarray(image, dtype=np.float32)).permute(2, 0, 1)[None]
    return 2 * x / 255 - 1


def resize_to(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize results back to the requested ``(height, width)`` (bicubic, antialiased, clamped to [-1, 1])."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    return F.interpolate(images, size=size, mode="bicubic", antialias=True, align_corners=False).clamp(-1, 1)


def edit(
    sessions: Mapping[str, Any],
    tokenizer: Any,
    scheduler: Any,
    images: torch.Tensor,
    instructions: Sequence[str],
    *,
    seeds: Sequence[int],
    steps: int = DEFAULT_STEPS,
    guidance_scale: float | Sequence[float] = DEFAULT_GUIDANCE_SCALE,
    image_guidance_scale: float | Sequence[float] = DEFAULT_IMAGE_GUIDANCE_SCALE,
    negative_prompts: Sequence[str] | None = None,
    callback: Callback | None = None,
    guidance_multiplicity: int | None = None,
    resolution: int | None = None,
    output_size: tuple[int, int] | None = None,
    scaling_factor: float = 0.18215,
    output: str = "image",
) -> torch.Tensor:
    """Edit ``images`` (``[B, 3, H, W]`` in [-1, 1]) by ``instructions``; returns edited images in [-1, 1].

    ``H, W`` must already be multiples of 8 (64 for SD 1.x's UNet) unless ``resolution`` is given, in which
    case the batch is first :func:`fit` to :func:`resolve_size` ``(H, W, resolution)``.  ``output_size``
    resizes the results (e.g. back to the request's size when the style's contract says so).
    ``guidance_multiplicity`` None follows diffusers (3 with guidance, else 1); a style serving exported
    graphs passes the multiplicity its UNet graph was built for.
    """
    b = images.shape[0]
    if not (len(instructions) == len(seeds) == b):
        raise ValueError(f"{b} images, {len(instructions)} instructions and {len(seeds)} seeds must match")
    if resolution is not None:
        images = fit(images, resolve_size(images.shape[-2], images.shape[-1], resolution))
    device = images.device
    if guidance_multiplicity is None:
        g = torch.as_tensor(guidance_scale, dtype=torch.float32)
        gi = torch.as_tensor(image_guidance_scale, dtype=torch.float32)
        guidance_multiplicity = 3 if (g.max() > 1.0 and gi.min() >= 1.0) else 1
    gens = generators_for(seeds)
    cond, uncond = encode_prompts(sessions, tokenizer, instructions, negative_prompts, device=device)
    schedule = make_schedule(scheduler, steps, device=device)
    image_latents, _ = image_posterior(sessions, images)  # the posterior mode, unscaled
    latents = initial_latents(schedule, image_latents.shape, gens, device=device)
    latents = denoise(
        sessions, schedule, latents, cond, uncond=uncond, guidance=guidance_scale, image_latents=image_latents,
        image_guidance=image_guidance_scale, guidance_multiplicity=guidance_multiplicity, generators=gens,
        callback=callback,
    )
    if output == "latent":
        return latents
    out = decode_latents(sessions, latents, scaling_factor=scaling_factor)
    return resize_to(out, output_size) if output_size is not None else out


__all__ = [
    "DEFAULT_GUIDANCE_SCALE",
    "DEFAULT_IMAGE_GUIDANCE_SCALE",
    "DEFAULT_RESOLUTION",
    "DEFAULT_STEPS",
    "edit",
    "fit",
    "fit_pil",
    "resize_to",
    "resolve_size",
]

"""DreamBooth inference over Sessions: text-to-image and image-to-image with the learned identifier.

DreamBooth changes the weights, not the sampler: inference is exactly diffusers' ``StableDiffusionPipeline`` /
``StableDiffusionImg2ImgPipeline``, which :func:`styleengine.diffusion.txt2img` / :func:`~styleengine.diffusion.img2img`
re-express over Sessions (so torch, ONNX Runtime and TensorRT share this code).  What this module adds is the
request side: working sizes, LoRA selections, and the grouping that keeps one LoRA state per UNet call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from styleengine.diffusion.loop import Callback, img2img, txt2img
from styleengine.style import RequestError


class UnknownLoraError(RequestError):
    """A request named a LoRA that is not loaded (a 4xx: the message names the available ones)."""


def working_size(height: int, width: int, resolution: int) -> tuple[int, int]:
    """img2img working size: the long side scaled to ``resolution``, both sides floored to multiples of 64 (>= 64)."""
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    s = resolution / max(height, width)
    return max(64, int(height * s) // 64 * 64), max(64, int(width * s) // 64 * 64)


def resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    return F.interpolate(images.float(), size=size, mode="bicubic", antialias=True, align_corners=False).clamp(-1, 1)


def parse_lora(text: str | None, available: Sequence[str], default_scale: float = 1.0) -> tuple[tuple[str, float], ...]:
    """``"name"``, ``"name:0.7"`` or ``"a:0.8, b:0.5"`` -> sorted (name, weight) pairs; unknown names raise
    :class:`UnknownLoraError` naming the loaded ones."""
    if text is None or not text.strip():
        return ()
    out: dict[str, float] = {}
    for part in text.split(","):
        name, sep, w = part.strip().partition(":")
        name = name.strip()
        if not name:
            raise ValueError(f"lora {text!r}: empty name (use 'name', 'name:0.7' or 'a:0.8,b:0.5')")
        try:
            weight = float(w) if sep else float(default_scale)
        except ValueError:
            raise ValueError(f"lora {part.strip()!r}: the weight after ':' must be a number") from None
        if not -4.0 <= weight <= 4.0 or weight != weight:
            raise ValueError(f"lora {name!r}: weight {weight} outside [-4, 4]")
        if name not in available:
            have = ", ".join(sorted(available)) or "none (start the server with --model-set loras={name: FILE})"
            raise UnknownLoraError(f"LoRA {name!r} is not loaded; available: {have}")
        out[name] = weight
    return tuple(sorted(out.items()))


def generate(
    sessions: Mapping[str, Any],
    tokenizer: Any,
    scheduler: Any,
    prompts: Sequence[str],
    *,
    seeds: Sequence[int],
    images: torch.Tensor | None = None,
    strength: float = 0.8,
    negative_prompts: Sequence[str] | None = None,
    steps: int = 25,
    guidance_scale: float = 7.5,
    height: int = 512,
    width: int = 512,
    eta: float = 0.0,
    guidance_multiplicity: int | None = None,
    scaling_factor: float = 0.18215,
    callback: Callback | None = None,
    device: Any = "cpu",
    control: Sequence[Any] = (),
) -> torch.Tensor:
    """Images ``[B, 3, H, W]`` in [-1, 1]: img2img over ``images`` (in [-1, 1], working size) when given, else txt2img."""
    if images is None:
        return txt2img(sessions, tokenizer, scheduler, prompts, seeds=seeds, negative_prompts=negative_prompts,
                       steps=steps, guidance_scale=guidance_scale, height=height, width=width, eta=eta,
                       callback=callback, scaling_factor=scaling_factor, guidance_multiplicity=guidance_multiplicity,
                       device=device, control=control)
    return img2img(sessions, tokenizer, scheduler, images.to(device), prompts, seeds=seeds, strength=strength,
                   negative_prompts=negative_prompts, steps=steps, guidance_scale=guidance_scale, eta=eta,
                   callback=callback, scaling_factor=scaling_factor, guidance_multiplicity=guidance_multiplicity,
                   control=control)


__all__ = ["UnknownLoraError", "generate", "parse_lora", "resize", "working_size"]

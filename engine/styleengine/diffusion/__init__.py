"""Shared Stable Diffusion machinery: components, export graphs and a runtime-agnostic denoising loop.

* :mod:`.components`: :class:`Components`, :func:`load_components` (diffusers folder, single-file SD 1.x
  checkpoint, ``hf://org/repo@rev``), :func:`make_scheduler`, LoRA (:func:`load_lora`, :func:`fuse_lora`).
* :mod:`.graphs`: export-friendly wrappers and :func:`diffusion_graphs` (GraphSpecs with tolerances).
* :mod:`.loop`: :func:`encode_prompts`, :func:`denoise`, :func:`decode_latents`, :func:`txt2img`,
  :func:`img2img`: diffusers' pipelines re-expressed over Sessions.
* :mod:`.tiny`: tiny random components for tests, and the SD 1.5 configurations.
* :mod:`.lora`: LoRA adapters for training (attach, checkpoint), per-request activation, diffusers-format saving.
* :mod:`.sessions`: :class:`~.sessions.DirectSession` (the loop on training modules), :func:`~.sessions.loop_device`.
* :mod:`.sources`: tokenizers, random SD 1.5 components, a source's pipeline parts without weights, identities.
* :mod:`.control`: conditioning images for ControlNets (canny).

diffusers / transformers / peft are imported lazily, so ``import styleengine.diffusion`` stays cheap.
"""

from .components import (
    SCHEDULERS,
    Components,
    WeightsUnavailableError,
    fuse_lora,
    load_components,
    load_lora,
    make_scheduler,
)
from .graphs import TOLERANCES, diffusion_graphs, export_attention, pin_export_attention
from .loop import (
    Cancelled,
    Control,
    Schedule,
    decode_latents,
    denoise,
    encode_images,
    encode_prompts,
    generators_for,
    image_posterior,
    img2img,
    initial_latents,
    make_schedule,
    tokenize,
    txt2img,
)

__all__ = [
    "SCHEDULERS",
    "TOLERANCES",
    "Cancelled",
    "Components",
    "Control",
    "Schedule",
    "WeightsUnavailableError",
    "decode_latents",
    "denoise",
    "diffusion_graphs",
    "encode_images",
    "encode_prompts",
    "fuse_lora",
    "generators_for",
    "image_posterior",
    "img2img",
    "initial_latents",
    "load_components",
    "load_lora",
    "make_schedule",
    "make_scheduler",
    "export_attention",
    "pin_export_attention",
    "tokenize",
    "txt2img",
]

"""InstructPix2Pix over Sessions against diffusers' ``StableDiffusionInstructPix2PixPipeline``.

Tolerance as in test_loop.py: ``|ours - diffusers| <= 1e-5 * max(1, max|diffusers|)`` (observed: 0).
"""

from __future__ import annotations

import inspect

import pytest
import torch
from diffusion_support import assert_close, sd_pipeline, torch_sessions
from styleengine_instruct_pix2pix.pipeline import (
    DEFAULT_GUIDANCE_SCALE,
    DEFAULT_IMAGE_GUIDANCE_SCALE,
    DEFAULT_STEPS,
    edit,
    fit,
    fit_pil,
    resize_to,
    resolve_size,
)

from styleengine.diffusion import generators_for

INSTRUCTIONS = ["make it snowy", "turn the sky red"]
SEEDS = [3, 4]


@pytest.mark.parametrize(
    "hw,expected",
    [
        ((512, 512), (512, 512)),
        ((480, 640), (384, 512)),
        ((600, 800), (384, 512)),
        ((720, 1280), (320, 512)),  # the short side is rounded *up*, then both floored: aspect changes
        ((333, 1000), (192, 576)),  # ... and the long side may exceed the resolution
        ((1000, 333), (576, 192)),
        ((256, 256), (512, 512)),  # small images are upscaled
    ],
)
def test_resolve_size_follows_edit_cli(hw, expected):
    assert resolve_size(*hw) == expected
    assert resolve_size(*hw, resolution=512) == expected
    h, w = resolve_size(*hw, resolution=768)
    assert h % 64 == 0 and w % 64 == 0


def test_fit_and_resize_tensors():
    x = torch.linspace(-1, 1, 3 * 100 * 200).reshape(1, 3, 100, 200)
    y = fit(x, (64, 64))  # centre crop 100x100, then resize
    assert y.shape == (1, 3, 64, 64)
    assert torch.equal(fit(x, (100, 200)), x)
    back = resize_to(y, (100, 100))
    assert back.shape == (1, 3, 100, 100) and back.abs().max() <= 1


def test_fit_pil_matches_reference_preprocessing():
    from PIL import Image

    img = Image.fromarray((torch.rand(90, 160, 3, generator=torch.Generator().manual_seed(0)) * 255).byte().numpy())
    x = fit_pil(img, resolution=128)
    assert x.shape == (1, 3, *resolve_size(90, 160, 128)) and -1 <= x.min() and x.max() <= 1


def test_defaults_are_the_reference_ones():
    from diffusers import StableDiffusionInstructPix2PixPipeline

    params = inspect.signature(StableDiffusionInstructPix2PixPipeline.__call__).parameters
    assert DEFAULT_STEPS == params["num_inference_steps"].default == 100
    assert DEFAULT_GUIDANCE_SCALE == params["guidance_scale"].default == 7.5
    assert DEFAULT_IMAGE_GUIDANCE_SCALE == params["image_guidance_scale"].default == 1.5
    ours = inspect.signature(edit).parameters
    assert (ours["steps"].default, ours["guidance_scale"].default, ours["image_guidance_scale"].default) == (100, 7.5, 1.5)


def _ip2p_pipe(comps):
    return sd_pipeline(comps, "StableDiffusionInstructPix2PixPipeline", image_encoder=None)


@pytest.mark.parametrize("scheduler", ["euler_ancestral", "ddim"])
def test_edit_matches_diffusers(tiny_ip2p, scheduler):
    comps = tiny_ip2p.with_scheduler(scheduler)
    sessions = torch_sessions(comps, guidance_multiplicity=3)
    assert sessions["unet"].input_names[0] == "sample"
    images01 = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    images = images01 * 2 - 1
    kw = dict(guidance_scale=6.0, image_guidance_scale=1.4)
    ours = edit(sessions, comps.tokenizer, comps.scheduler, images, INSTRUCTIONS, seeds=SEEDS, steps=4,
                output="latent", **kw)
    pipe = _ip2p_pipe(comps)
    ref = pipe(INSTRUCTIONS, image=images01, num_inference_steps=4, generator=generators_for(SEEDS),
               output_type="latent", **kw).images
    assert_close(ours, ref, what=f"ip2p {scheduler} latents")
    ref_img = pipe(INSTRUCTIONS, image=images01, num_inference_steps=4, generator=generators_for(SEEDS),
                   output_type="pt", **kw).images
    img = edit(sessions, comps.tokenizer, comps.scheduler, images, INSTRUCTIONS, seeds=SEEDS, steps=4, **kw)
    assert_close((img / 2 + 0.5).clamp(0, 1), ref_img, what=f"ip2p {scheduler} images")


def test_edit_without_guidance_matches_diffusers(tiny_ip2p):
    """image_guidance_scale < 1 switches guidance off in diffusers: one UNet row per request."""
    comps = tiny_ip2p
    sessions = torch_sessions(comps, guidance_multiplicity=1)
    images01 = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    ours = edit(sessions, comps.tokenizer, comps.scheduler, images01 * 2 - 1, ["x"], seeds=[0], steps=3,
                image_guidance_scale=0.5, output="latent")
    ref = _ip2p_pipe(comps)(["x"], image=images01, num_inference_steps=3, image_guidance_scale=0.5,
                            generator=generators_for([0]), output_type="latent").images
    assert_close(ours, ref, what="ip2p without guidance")


def test_edit_batch_equals_single_and_resizes(tiny_ip2p):
    sessions = torch_sessions(tiny_ip2p, guidance_multiplicity=3)
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(5)) * 2 - 1
    args = (sessions, tiny_ip2p.tokenizer, tiny_ip2p.scheduler)
    both = edit(*args, images, INSTRUCTIONS, seeds=SEEDS, steps=3)
    one = edit(*args, images[1:], INSTRUCTIONS[1:], seeds=SEEDS[1:], steps=3)
    # Batched GEMMs sum in another order than single ones (oneDNN picks kernels by batch size): after three
    # ancestral steps fp32 rounding reaches ~1e-5 (1.1e-5 seen on a loaded machine), so 1e-4 of the [-1, 1] range.
    assert_close(both[1:], one, rel=1e-4, what="request 1 batched vs alone")
    # resolution rule + back-resize to the request's size
    odd = torch.rand(1, 3, 40, 72, generator=torch.Generator().manual_seed(6)) * 2 - 1
    out = edit(*args, odd, ["x"], seeds=[0], steps=2, resolution=64, output_size=(40, 72))
    assert out.shape == (1, 3, 40, 72)
    with pytest.raises(ValueError, match="must match"):
        edit(*args, images, ["only one"], seeds=SEEDS, steps=2)

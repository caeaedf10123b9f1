"""Structure-preserving stylisation through a canny ControlNet: equals diffusers' ControlNet pipelines on the same
tiny components, with the edges computed in the pipeline."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from db_helpers import FAST, max_diff, request
from styleengine_dreambooth import DreamBoothStyle

PROMPT = "a painting in the style of sks"


@pytest.fixture(scope="module")
def controlled():
    from styleengine.runtime.base import SessionOptions
    from styleengine.runtime.torch import TorchSession

    style = DreamBoothStyle({"size": "tiny", "controlnet": "tiny"})
    return style, {s.name: TorchSession(s, SessionOptions()) for s in style.graphs()}


def _photo() -> np.ndarray:
    img = np.zeros((64, 64, 3), np.float32)
    img[16:48, 16:48] = 1.0
    img[24:40, 8:56, 1] = 0.5
    return img


def _diffusers(style, cls_name):
    from diffusion_support import sd_pipeline

    c = style.components
    return sd_pipeline(replace(c, scheduler=style.scheduler("dpmpp")), cls_name, controlnet=c.controlnets[0])


def test_graphs_include_the_controlnet(controlled):
    style, _ = controlled
    names = [s.name for s in style.graphs()]
    assert names == ["text_encoder", "unet", "vae_encoder", "vae_decoder", "controlnet"]


def test_controlnet_img2img_equals_diffusers(controlled):
    from styleengine.diffusion.control import canny

    style, sessions = controlled
    img = _photo()
    cfg = style.parse_config({**FAST, "steps": 4, "strength": 0.75, "canny_low": 50, "canny_high": 150})
    [ours] = style.infer(sessions, [request(2, PROMPT, image=img)], cfg)
    edges = canny(img, 50, 150)
    assert edges.max() == 1.0 and ours.info["controlnet"]
    pipe = _diffusers(style, "StableDiffusionControlNetImg2ImgPipeline")
    ref = pipe(PROMPT, image=torch.from_numpy(img).permute(2, 0, 1)[None],
               control_image=torch.from_numpy(edges).permute(2, 0, 1)[None], strength=0.75, num_inference_steps=4,
               generator=torch.Generator().manual_seed(2), output_type="pt").images
    d = max_diff(ours.image, ref[0].permute(1, 2, 0).numpy())
    print(f"ControlNet img2img vs StableDiffusionControlNetImg2ImgPipeline: max |diff| {d:.2e}")
    assert d < 1e-4


def test_controlnet_txt2img_with_edges_equals_diffusers(controlled):
    from styleengine.diffusion.control import canny

    style, sessions = controlled
    img = _photo()
    cfg = style.parse_config({**FAST, "steps": 3, "mode": "txt2img"})
    [ours] = style.infer(sessions, [request(4, PROMPT, image=img)], cfg)
    pipe = _diffusers(style, "StableDiffusionControlNetPipeline")
    ref = pipe(PROMPT, image=torch.from_numpy(canny(img)).permute(2, 0, 1)[None], height=64, width=64,
               num_inference_steps=3, generator=torch.Generator().manual_seed(4), output_type="pt").images
    assert max_diff(ours.image, ref[0].permute(1, 2, 0).numpy()) < 1e-4


def test_without_an_image_the_controlnet_is_off(controlled):
    from styleengine.runtime.base import SessionOptions
    from styleengine.runtime.torch import TorchSession

    style, sessions = controlled
    [ours] = style.infer(sessions, [request(5, PROMPT)], style.parse_config(FAST))
    plain = DreamBoothStyle({"size": "tiny"})
    [ref] = plain.infer({s.name: TorchSession(s, SessionOptions()) for s in plain.graphs()}, [request(5, PROMPT)],
                        plain.parse_config(FAST))
    assert not ours.info["controlnet"] and max_diff(ours.image, ref.image) < 1e-5

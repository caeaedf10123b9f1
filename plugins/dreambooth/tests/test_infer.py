"""Inference: parity with diffusers' own pipelines on the same tiny components, batching, the conformance suite."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from db_helpers import FAST, TINY, content, max_diff, request
from pydantic import ValidationError
from styleengine_dreambooth import Config, DreamBoothStyle

from styleengine.testing import StyleConformance


class TestDreamBoothConformance(StyleConformance):
    style_class = DreamBoothStyle
    model_config = TINY
    params = FAST
    image_size = (32, 48)

    def test_export_parity(self, exported) -> None:  # type: ignore[override]
        """Every graph exported (a LoRA fused) and validated at min/opt/max: shared with test_export.py."""
        from styleengine.export.manifest import Manifest

        manifest = Manifest.load(exported[0])
        assert sorted(manifest.graphs) == sorted(s.name for s in self.make_style().graphs())
        assert all(rec.parity and rec.parity["passed"] for rec in manifest.graphs.values())

    def make_request(self, seed=0, size=None, fill=None):  # type: ignore[override]
        req = super().make_request(seed, size, fill)
        req.texts = {k: v for k, v in req.texts.items() if k != "lora"}  # 'a test' names no loaded LoRA
        return req


def _diffusers(style, cls_name: str):
    from diffusion_support import sd_pipeline

    c = style.components
    from dataclasses import replace

    return sd_pipeline(replace(c, scheduler=style.scheduler("dpmpp")), cls_name)


def _as_hwc(t: torch.Tensor) -> np.ndarray:
    return t[0].permute(1, 2, 0).float().numpy()


def test_declaration():
    cfg = Config()
    assert (cfg.steps, cfg.guidance_scale, cfg.scheduler, cfg.strength, cfg.resolution) == (25, 7.5, "dpmpp", 0.8, 512)
    texts = {t.name: t for t in DreamBoothStyle.inputs.texts}
    assert texts["prompt"].required and not texts["negative_prompt"].required and not texts["lora"].required
    assert not DreamBoothStyle.inputs.images[0].required
    for bad in ({"steps": 0}, {"strength": 0.0}, {"strength": 1.5}, {"scheduler": "lms"}, {"width": 100},
                {"guidance_scale": float("nan")}):
        with pytest.raises(ValidationError):
            Config(**bad)


@pytest.mark.parametrize("negative", ["", "blurry"])
def test_txt2img_equals_diffusers(tiny_style, torch_sessions, negative):
    cfg = tiny_style.parse_config({**FAST, "steps": 3})
    [ours] = tiny_style.infer(torch_sessions, [request(7, negative=negative)], cfg)
    pipe = _diffusers(tiny_style, "StableDiffusionPipeline")
    ref = pipe("a photo of sks dog", negative_prompt=negative or None, height=64, width=64, num_inference_steps=3,
               guidance_scale=7.5, generator=torch.Generator().manual_seed(7), output_type="pt").images
    d = max_diff(ours.image, _as_hwc(ref))
    print(f"txt2img vs StableDiffusionPipeline: max |diff| {d:.2e}")
    assert d < 1e-4


def test_img2img_equals_diffusers(tiny_style, torch_sessions):
    img = content(3, (64, 64))
    cfg = tiny_style.parse_config({**FAST, "steps": 4, "strength": 0.5, "scheduler": "dpmpp"})
    [ours] = tiny_style.infer(torch_sessions, [request(3, image=img)], cfg)
    pipe = _diffusers(tiny_style, "StableDiffusionImg2ImgPipeline")
    ref = pipe("a photo of sks dog", image=torch.from_numpy(img).permute(2, 0, 1)[None], strength=0.5,
               num_inference_steps=4, guidance_scale=7.5, generator=torch.Generator().manual_seed(3),
               output_type="pt").images
    d = max_diff(ours.image, _as_hwc(ref))
    print(f"img2img vs StableDiffusionImg2ImgPipeline: max |diff| {d:.2e}")
    assert ours.info["mode"] == "img2img" and d < 1e-4


def test_guidance_off_equals_diffusers(tiny_style, torch_sessions):
    cfg = tiny_style.parse_config({**FAST, "guidance_scale": 1.0, "scheduler": "ddim"})
    [ours] = tiny_style.infer(torch_sessions, [request(5)], cfg)
    from dataclasses import replace

    from diffusion_support import sd_pipeline

    pipe = sd_pipeline(replace(tiny_style.components, scheduler=tiny_style.scheduler("ddim")))
    ref = pipe("a photo of sks dog", height=64, width=64, num_inference_steps=2, guidance_scale=1.0,
               generator=torch.Generator().manual_seed(5), output_type="pt").images
    assert ours.info["guidance"] == "off" and max_diff(ours.image, _as_hwc(ref)) < 1e-4


def test_batch_equals_singles(tiny_style, torch_sessions):
    reqs = [request(0), request(1, prompt="a sks dog on the beach", negative="blurry"),
            request(2, image=content(2, (40, 56))), request(3, image=content(3, (48, 64)))]
    cfg = tiny_style.parse_config(FAST)
    batched = tiny_style.infer(torch_sessions, reqs, cfg)
    assert [r.image.shape for r in batched] == [(64, 64, 3), (64, 64, 3), (40, 56, 3), (48, 64, 3)]
    assert [r.info["mode"] for r in batched] == ["txt2img", "txt2img", "img2img", "img2img"]
    assert [r.info["batch"] for r in batched] == [2, 2, 2, 2]
    for req, got in zip(reqs, batched, strict=True):
        [alone] = tiny_style.infer(torch_sessions, [req], cfg)
        assert max_diff(got.image, alone.image) < 1e-5
    assert max_diff(batched[0].image, batched[1].image) > 1e-3


def test_seed_and_sizes(tiny_style, torch_sessions):
    cfg = tiny_style.parse_config({**FAST, "resolution": 128, "width": 64})
    [a] = tiny_style.infer(torch_sessions, [request(11)], cfg)
    [b] = tiny_style.infer(torch_sessions, [request(11)], cfg)
    assert a.image.shape == (128, 64, 3) and max_diff(a.image, b.image) == 0.0
    with pytest.raises(ValueError, match="needs an 'image'"):
        tiny_style.infer(torch_sessions, [request(0)], tiny_style.parse_config({**FAST, "mode": "img2img"}))
    with pytest.raises(ValueError, match="prompt"):
        tiny_style.infer(torch_sessions, [request(0, prompt=" ")], cfg)
    from styleengine.preprocess import SizeError

    with pytest.raises(SizeError, match="64-256 px"):
        tiny_style.infer(torch_sessions, [request(0)], tiny_style.parse_config({**FAST, "resolution": 512}))


def test_unknown_lora_names_the_available_ones(tiny_style, torch_sessions):
    from styleengine_dreambooth.pipeline import UnknownLoraError

    with pytest.raises(UnknownLoraError, match="'nope' is not loaded; available: none"):
        tiny_style.infer(torch_sessions, [request(0, lora="nope")], tiny_style.parse_config(FAST))


def test_registered_and_listed():
    from db_helpers import run_cli

    from styleengine.plugins import get_engine

    assert get_engine().style_class("db") is DreamBoothStyle
    code, out, _ = run_cli("styles", "--json")
    import json

    [row] = [s for s in json.loads(out)["styles"] if s["name"] == "dreambooth"]
    assert row["capabilities"] == ["export", "infer", "train"] and row["distribution"] == "styleengine-dreambooth"

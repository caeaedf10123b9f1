"""The Session-based denoising loop against diffusers' own pipelines (same modules, scheduler, seeds).

Tolerance: ``|ours - diffusers| <= 1e-5 * max(1, max|diffusers|)`` on final latents and decoded images.
Both run the same fp32 CPU kernels in the same order, so in practice the difference is exactly 0; the
tolerance leaves room for BLAS reduction-order changes (the tiny random UNet's latents reach ~50).
"""

from __future__ import annotations

import pytest
import torch
from diffusion_support import assert_close, sd_pipeline, torch_sessions

from styleengine.diffusion import (
    Cancelled,
    Control,
    generators_for,
    img2img,
    make_schedule,
    txt2img,
)

PROMPTS = ["a photo of the cat", "an oil painting of a harbour"]
SEEDS = [11, 12]
STEPS = 4


@pytest.mark.parametrize("scheduler", ["ddim", "euler_ancestral", "dpmpp"])
def test_txt2img_matches_diffusers(tiny, scheduler):
    comps = tiny.with_scheduler(scheduler)
    sessions = torch_sessions(comps)
    ours = txt2img(sessions, comps.tokenizer, comps.scheduler, PROMPTS, seeds=SEEDS, steps=STEPS,
                   guidance_scale=7.5, height=64, width=64, output="latent")
    pipe = sd_pipeline(comps)
    kw = dict(num_inference_steps=STEPS, guidance_scale=7.5, height=64, width=64)
    ref = pipe(PROMPTS, generator=generators_for(SEEDS), output_type="latent", **kw).images
    assert_close(ours, ref, what=f"{scheduler} latents")
    ref_img = pipe(PROMPTS, generator=generators_for(SEEDS), output_type="pt", **kw).images
    img = txt2img(sessions, comps.tokenizer, comps.scheduler, PROMPTS, seeds=SEEDS, steps=STEPS,
                  guidance_scale=7.5, height=64, width=64)
    assert_close((img / 2 + 0.5).clamp(0, 1), ref_img, what=f"{scheduler} images")


def test_negative_prompts_and_no_guidance_match_diffusers(tiny):
    comps = tiny.with_scheduler("euler")
    sessions = torch_sessions(comps)
    pipe = sd_pipeline(comps)
    neg = ["blurry", "low quality"]
    ours = txt2img(sessions, comps.tokenizer, comps.scheduler, PROMPTS, seeds=SEEDS, steps=3,
                   negative_prompts=neg, guidance_scale=5.0, height=64, width=64, output="latent")
    ref = pipe(PROMPTS, negative_prompt=neg, generator=generators_for(SEEDS), num_inference_steps=3,
               guidance_scale=5.0, height=64, width=64, output_type="latent").images
    assert_close(ours, ref, what="negative prompts")
    # guidance_scale <= 1: diffusers runs one UNet row per request, and so do we.
    sessions1 = torch_sessions(comps, guidance_multiplicity=1)
    ours = txt2img(sessions1, comps.tokenizer, comps.scheduler, PROMPTS, seeds=SEEDS, steps=3,
                   guidance_scale=1.0, height=64, width=64, output="latent")
    ref = pipe(PROMPTS, generator=generators_for(SEEDS), num_inference_steps=3, guidance_scale=1.0,
               height=64, width=64, output_type="latent").images
    assert_close(ours, ref, what="no guidance")


@pytest.mark.parametrize("scheduler,strength", [("ddim", 0.6), ("euler_ancestral", 0.75), ("dpmpp", 1.0)])
def test_img2img_matches_diffusers(tiny, scheduler, strength):
    comps = tiny.with_scheduler(scheduler)
    sessions = torch_sessions(comps)
    images01 = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    images = images01 * 2 - 1  # what diffusers' image processor makes of [0, 1] tensors
    ours = img2img(sessions, comps.tokenizer, comps.scheduler, images, PROMPTS, seeds=SEEDS, strength=strength,
                   steps=5, output="latent")
    pipe = sd_pipeline(comps, "StableDiffusionImg2ImgPipeline")
    ref = pipe(PROMPTS, image=images01, strength=strength, num_inference_steps=5, generator=generators_for(SEEDS),
               output_type="latent").images
    assert_close(ours, ref, what=f"img2img {scheduler} strength {strength}")


def test_batched_requests_equal_single_runs(tiny):
    """Each request has its own generator: batch-mates change neither its noise nor its ancestral steps."""
    comps = tiny.with_scheduler("euler_ancestral")
    sessions = torch_sessions(comps)
    prompts = ["a red house", "a blue boat", "the forest"]
    seeds = [5, 6, 7]
    guidance = [3.0, 7.5, 5.0]  # per-request guidance rides along in the same batch
    kw = dict(steps=STEPS, height=64, width=64, output="latent")
    batched = txt2img(sessions, comps.tokenizer, comps.scheduler, prompts, seeds=seeds, guidance_scale=guidance, **kw)
    for i in range(3):
        single = txt2img(sessions, comps.tokenizer, comps.scheduler, [prompts[i]], seeds=[seeds[i]],
                         guidance_scale=guidance[i], **kw)
        assert_close(batched[i:i + 1], single, what=f"request {i} batched vs alone")
    again = txt2img(sessions, comps.tokenizer, comps.scheduler, prompts, seeds=seeds, guidance_scale=guidance, **kw)
    assert torch.equal(batched, again), "same seeds must reproduce exactly"
    other = txt2img(sessions, comps.tokenizer, comps.scheduler, prompts, seeds=[5, 6, 8], guidance_scale=guidance, **kw)
    assert torch.equal(batched[:2], other[:2]) and not torch.allclose(batched[2], other[2])


class CountingSession:
    def __init__(self, inner):
        self.inner, self.calls = inner, 0
        self.graph, self.runtime, self.device = inner.graph, inner.runtime, inner.device
        self.input_names, self.output_names = inner.input_names, inner.output_names

    def run(self, inputs):
        self.calls += 1
        return self.inner.run(inputs)


def test_callback_cancels_after_k_steps(tiny):
    sessions = torch_sessions(tiny)
    unet = sessions["unet"] = CountingSession(sessions["unet"])
    seen = []

    def stop_after_3(step, total, latents):
        seen.append((step, total, tuple(latents.shape)))
        return step < 3

    with pytest.raises(Cancelled) as err:
        txt2img(sessions, tiny.tokenizer, tiny.scheduler, ["x"], seeds=[0], steps=10, height=64, width=64,
                callback=stop_after_3)
    assert (err.value.steps_done, err.value.total) == (3, 10)
    assert unet.calls == 3
    assert seen == [(1, 10, (1, 4, 8, 8)), (2, 10, (1, 4, 8, 8)), (3, 10, (1, 4, 8, 8))]

    def timeout(step, total, latents):
        if step == 2:
            raise Cancelled(step, total, reason="request timed out")

    unet.calls = 0
    with pytest.raises(Cancelled, match="timed out after 2/10"):
        txt2img(sessions, tiny.tokenizer, tiny.scheduler, ["x"], seeds=[0], steps=10, height=64, width=64,
                callback=timeout)
    assert unet.calls == 2
    # A callback returning None (a progress bar) never stops the loop.
    unet.calls = 0
    txt2img(sessions, tiny.tokenizer, tiny.scheduler, ["x"], seeds=[0], steps=5, height=64, width=64,
            callback=lambda s, t, x: None, output="latent")
    assert unet.calls == 5


def test_schedule_does_not_mutate_the_shared_scheduler(tiny):
    sched = tiny.scheduler
    before = dict(sched.config)
    s1 = make_schedule(sched, 10)
    s2 = make_schedule(sched, 4, strength=0.5)
    assert len(s1.timesteps) == 10 and len(s2.timesteps) == 2
    assert s1.scheduler is not sched and s2.scheduler is not s1.scheduler
    assert dict(sched.config) == before
    with pytest.raises(ValueError, match="strength"):
        make_schedule(sched, 10, strength=0.0)
    with pytest.raises(ValueError, match="leaves no denoising step"):
        make_schedule(sched, 4, strength=0.1)


def test_controlnet_matches_diffusers(tiny_cn):
    comps = tiny_cn
    sessions = torch_sessions(comps)
    assert "controlnet" in sessions and "down_residual_0" in sessions["unet"].input_names
    cond = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(9))
    control = [Control(cond, scale=0.8, start=0.0, end=0.5)]
    ours = txt2img(sessions, comps.tokenizer, comps.scheduler, PROMPTS, seeds=SEEDS, steps=STEPS, height=64,
                   width=64, control=control, output="latent")
    pipe = sd_pipeline(comps, "StableDiffusionControlNetPipeline", controlnet=comps.controlnets[0])
    ref = pipe(PROMPTS, image=cond, controlnet_conditioning_scale=0.8, control_guidance_start=0.0,
               control_guidance_end=0.5, num_inference_steps=STEPS, height=64, width=64,
               generator=generators_for(SEEDS), output_type="latent").images
    assert_close(ours, ref, what="controlnet latents")
    # ... and the ControlNet matters (its residuals are not zero in the tiny model).
    plain = txt2img(sessions, comps.tokenizer, comps.scheduler, PROMPTS, seeds=SEEDS, steps=STEPS, height=64,
                    width=64, control=[Control(cond, scale=0.0)], output="latent")
    assert not torch.allclose(plain, ours, atol=1e-4)

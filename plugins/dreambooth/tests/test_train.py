"""Training: a few LoRA steps change the output; the LoRA file loads into plain diffusers with the same image;
prior preservation generates class images once; resume equals an uninterrupted run; preflight."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from db_helpers import FAST, TINY, max_diff, request
from safetensors.torch import load_file
from styleengine_dreambooth import DreamBoothStyle, TrainConfig

from styleengine.data import DatasetError
from styleengine.training import TrainContext

PROMPT = "a photo of sks dog"
FAST_TRAIN = dict(model=TINY, instance_prompt=PROMPT, resolution=64, train_batch_size=1, learning_rate=1e-2)


def _train(out, data, *, max_steps=None, resume=False, **overrides):
    cfg = TrainConfig(**{**FAST_TRAIN, **overrides})
    style = DreamBoothStyle(cfg.model)
    ctx = TrainContext(out_dir=out, data={"data": data}, max_steps=max_steps, resume=resume, sample_every=100,
                       checkpoint_every=100, show_progress=False, cpu=True, checkpoints_total_limit=2)
    return style, style.train(cfg, ctx)


def _sessions(style):
    from styleengine.runtime.base import SessionOptions
    from styleengine.runtime.torch import TorchSession

    return {s.name: TorchSession(s, SessionOptions()) for s in style.graphs()}


def test_lora_training_changes_the_output_and_loads_into_diffusers(instance_dir, tmp_path):
    _, run = _train(tmp_path / "run", instance_dir, max_train_steps=3, validation_prompt=PROMPT,
                    num_validation_images=1, validation_steps=1, validation_every=3)
    assert run.steps == 3 and (tmp_path / "run" / "samples" / "step-0000003.png").is_file()
    weights = run.checkpoint
    lora = load_file(str(weights / "pytorch_lora_weights.safetensors"))
    assert lora and all(k.startswith("unet.") and (".lora.down." in k or ".lora.up." in k) for k in lora)
    assert json.loads((weights / "config.json").read_text())["model_config"]["size"] == "tiny"

    cfg = {**FAST, "steps": 3}
    base = DreamBoothStyle(TINY)
    [before] = base.infer(_sessions(base), [request(0, PROMPT)], base.parse_config(cfg))
    trained = DreamBoothStyle()
    trained.load_weights(weights)  # base from config.json, LoRA fused
    assert trained.weights_path == weights and trained.model_config.fused_lora == str(weights)
    [after] = trained.infer(_sessions(trained), [request(0, PROMPT)], trained.parse_config(cfg))
    changed = max_diff(before.image, after.image)
    print(f"LoRA training changed the instance-prompt image by max |diff| {changed:.3g}")
    assert changed > 1e-3

    # The same file through diffusers' own loader on a plain StableDiffusionPipeline over fresh tiny components.
    from diffusion_support import sd_pipeline

    fresh = DreamBoothStyle(TINY)
    pipe = sd_pipeline(replace(fresh.components, scheduler=fresh.scheduler("dpmpp")))
    pipe.load_lora_weights(str(weights))
    ref = pipe(PROMPT, height=64, width=64, num_inference_steps=3, guidance_scale=7.5,
               generator=torch.Generator().manual_seed(0), output_type="pt").images
    d = max_diff(after.image, ref[0].permute(1, 2, 0).numpy())
    print(f"engine (LoRA fused) vs diffusers load_lora_weights: max |diff| {d:.2e}")
    assert d <= 1e-4


def test_prior_preservation_generates_class_images_once(instance_dir, tmp_path):
    classes = tmp_path / "classes"
    opts = dict(with_prior_preservation=True, class_prompt="a photo of dog", class_data_dir=str(classes),
                num_class_images=2, sample_batch_size=2, class_generation_steps=1, max_train_steps=1)
    _, first = _train(tmp_path / "a", instance_dir, **opts)
    files = sorted(p.name for p in classes.iterdir())
    assert first.metrics["class_images_generated"] == 2 and len(files) == 2
    assert all(f.split("-")[0] in ("0", "1") and f.endswith(".jpg") for f in files)
    before = {f: (classes / f).stat().st_mtime_ns for f in files}
    _, second = _train(tmp_path / "b", instance_dir, **opts)
    assert second.metrics["class_images_generated"] == 0
    assert {f: (classes / f).stat().st_mtime_ns for f in sorted(p.name for p in classes.iterdir())} == before
    _, third = _train(tmp_path / "c", instance_dir, **{**opts, "num_class_images": 3, "sample_batch_size": 1})
    assert third.metrics["class_images_generated"] == 1 and len(list(classes.iterdir())) == 3


def test_resume_equals_uninterrupted(instance_dir, tmp_path):
    opts = dict(max_train_steps=3, center_crop=False)
    _, full = _train(tmp_path / "a", instance_dir, **opts)
    _, part = _train(tmp_path / "b", instance_dir, max_steps=2, **opts)
    assert part.steps == 2
    _, resumed = _train(tmp_path / "b", instance_dir, resume=True, **opts)
    assert resumed.steps == 3 and resumed.history[0]["step"] == 3
    assert resumed.history[0]["loss"] == full.history[2]["loss"]
    a = load_file(str(full.checkpoint / "pytorch_lora_weights.safetensors"))
    b = load_file(str(resumed.checkpoint / "pytorch_lora_weights.safetensors"))
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    ckpts = sorted(p.name for p in (tmp_path / "b" / "checkpoints").iterdir() if p.is_dir())
    assert ckpts[-1] == "step-0000003" and len(ckpts) <= 2  # checkpoints_total_limit=2


def test_full_unet_fine_tune_writes_an_engine_checkpoint(instance_dir, tmp_path):
    _, run = _train(tmp_path / "run", instance_dir, method="full", max_train_steps=1, learning_rate=1e-3)
    keys = load_file(str(run.checkpoint / "model.safetensors"))
    assert keys and all(k.startswith("unet.") for k in keys)
    style = DreamBoothStyle()
    style.load_weights(run.checkpoint)
    base = DreamBoothStyle(TINY).modules["unet"].state_dict()
    assert any(not torch.equal(v, base[k]) for k, v in style.modules["unet"].state_dict().items())


def test_preflight_and_config_errors(instance_dir, tmp_path):
    (instance_dir / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DatasetError, match="broken.png"):
        _train(tmp_path / "a", instance_dir, max_train_steps=1)
    with pytest.raises(ValueError, match="instance_prompt"):
        _train(tmp_path / "b", instance_dir, instance_prompt=None)
    with pytest.raises(ValueError, match="class_prompt"):
        _train(tmp_path / "c", instance_dir, with_prior_preservation=True)
    (instance_dir / "broken.png").unlink()
    with pytest.raises(DatasetError, match="at least 5"):
        _train(tmp_path / "d", instance_dir, min_instance_images=5)


def test_text_encoder_lora_is_saved_and_loads_into_diffusers(instance_dir, tmp_path):
    """train_text_encoder=true with LoRA: a text-encoder adapter too (``text_encoder.*`` keys), read by diffusers."""
    _, run = _train(tmp_path / "run", instance_dir, max_train_steps=2, train_text_encoder=True)
    keys = load_file(str(run.checkpoint / "pytorch_lora_weights.safetensors"))
    assert {k.split(".")[0] for k in keys} == {"unet", "text_encoder"}
    trained = DreamBoothStyle()
    trained.load_weights(run.checkpoint)
    [ours] = trained.infer(_sessions(trained), [request(1, PROMPT)], trained.parse_config(FAST))
    from diffusion_support import sd_pipeline

    fresh = DreamBoothStyle(TINY)
    pipe = sd_pipeline(replace(fresh.components, scheduler=fresh.scheduler("dpmpp")))
    pipe.load_lora_weights(str(run.checkpoint))
    ref = pipe(PROMPT, height=64, width=64, num_inference_steps=2, generator=torch.Generator().manual_seed(1),
               output_type="pt").images
    assert max_diff(ours.image, ref[0].permute(1, 2, 0).numpy()) <= 1e-4


def test_killed_training_resumes_to_the_uninterrupted_weights(instance_dir, tmp_path):
    """``engine train`` killed (SIGKILL) after a checkpoint, then ``--resume``: the same LoRA as a run never killed."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from db_helpers import run_cli

    sets = ["--set", "model={size: tiny}", "--set", f"instance_prompt={PROMPT}", "--set", "resolution=64",
            "--set", "train_batch_size=1", "--set", "learning_rate=0.01", "--set", "max_train_steps=12"]
    run = tmp_path / "killed"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "styleengine", "train", "dreambooth", "--data", str(instance_dir),
                             *sets, "--cpu", "--no-progress", "--checkpoint-every", "2", "--out", str(run)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (run / "checkpoints" / "step-0000002" / "training_state.json").is_file():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert not (run / "weights").exists()  # killed mid-run
    code, _, err = run_cli("train", "dreambooth", "--data", str(instance_dir), *sets, "--cpu", "--no-progress",
                           "--resume", "--out", str(run))
    assert code == 0, err
    code, _, err = run_cli("train", "dreambooth", "--data", str(instance_dir), *sets, "--cpu", "--no-progress",
                           "--out", str(tmp_path / "straight"))
    assert code == 0, err
    a = load_file(str(run / "weights" / "pytorch_lora_weights.safetensors"))
    b = load_file(str(tmp_path / "straight" / "weights" / "pytorch_lora_weights.safetensors"))
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("method", ["lora", "full"])
def test_every_option_together_under_bf16(instance_dir, tmp_path, method):
    """Mixed precision (bf16 on the CPU), gradient checkpointing, text-encoder training, prior preservation,
    min-SNR weighting and offset noise in one run; the result loads back."""
    cfg = TrainConfig(**{**FAST_TRAIN, "learning_rate": None}, method=method, max_train_steps=2,
                      with_prior_preservation=True, class_prompt="a photo of dog", num_class_images=1,
                      class_generation_steps=1, gradient_checkpointing=True, train_text_encoder=True, snr_gamma=5.0,
                      offset_noise=True, center_crop=True)
    style = DreamBoothStyle(cfg.model)
    ctx = TrainContext(out_dir=tmp_path / "run", data={"data": instance_dir}, mixed_precision="bf16", cpu=True,
                       show_progress=False)
    run = style.train(cfg, ctx)
    assert run.steps == 2 and run.metrics["lr"] == (5e-4 if method == "lora" else 5e-6)  # the references' defaults
    loaded = DreamBoothStyle()
    loaded.load_weights(run.checkpoint)
    [out] = loaded.infer(_sessions(loaded), [request(0, PROMPT)], loaded.parse_config(FAST))
    assert out.image.shape == (64, 64, 3)
    if method == "full":
        keys = load_file(str(run.checkpoint / "model.safetensors"))
        assert {k.split(".")[0] for k in keys} == {"unet", "text_encoder"}

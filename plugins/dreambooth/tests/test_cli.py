"""The CLI end to end (train a LoRA, infer with it), and full fine-tuned pipelines as a diffusers folder."""

from __future__ import annotations

import numpy as np
import pytest
from db_helpers import FAST, TINY, content, max_diff, request, run_cli
from PIL import Image
from styleengine_dreambooth import DreamBoothStyle


def test_train_and_infer_through_the_cli(instance_dir, tmp_path):
    run = tmp_path / "run"
    code, out, err = run_cli(
        "train", "dreambooth", "--data", str(instance_dir), "--set", "model={size: tiny}",
        "--set", "instance_prompt=a photo of sks dog", "--set", "resolution=64", "--set", "train_batch_size=1",
        "--set", "max_train_steps=2", "--set", "learning_rate=0.01", "--set", "preflight=header",
        "--cpu", "--no-progress", "--out", str(run))
    assert code == 0, err
    weights = run / "weights"
    assert out.strip() == str(weights) and (weights / "pytorch_lora_weights.safetensors").is_file()
    Image.fromarray((content(0, (40, 56)) * 255).astype(np.uint8)).save(tmp_path / "img.png")
    code, out, err = run_cli("infer", "dreambooth", str(tmp_path / "img.png"), "--weights", str(weights),
                             "--text", "prompt=a painting of sks dog", "--set", "steps=2", "--set", "resolution=64",
                             "--seed", "3", "-o", str(tmp_path / "out"))
    assert code == 0, err
    assert np.asarray(Image.open(out.strip())).shape == (40, 56, 3)
    code, _, err = run_cli("infer", "dreambooth", str(tmp_path / "img.png"), "--model-set", "size=tiny",
                           "--allow-random-weights")
    assert code == 1 and "needs --text prompt=" in err
    code, _, err = run_cli("train", "dreambooth", "--data", str(instance_dir), "--set", "model={size: tiny}",
                           "--cpu", "--no-progress", "--out", str(tmp_path / "r2"))
    assert code != 0 and "instance_prompt" in err and "Traceback" not in err


def test_full_pipeline_diffusers_folder_imports(tmp_path):
    """A fine-tuned pipeline saved by diffusers (save_pretrained) is a --weights source giving the same image."""
    from diffusion_support import sd_pipeline

    style = DreamBoothStyle(TINY)
    sd_pipeline(style.components).save_pretrained(str(tmp_path / "pipe"), safe_serialization=True)
    loaded = DreamBoothStyle()
    loaded.load_weights(tmp_path / "pipe")
    assert loaded.model_config.source == str(tmp_path / "pipe") and loaded.weights_sha256
    from styleengine.runtime.base import SessionOptions
    from styleengine.runtime.torch import TorchSession

    def run(s):
        sessions = {g.name: TorchSession(g, SessionOptions()) for g in s.graphs()}
        # The model's own scheduler (PNDM): a diffusers round trip writes the scheduler config's defaulted keys
        # (timestep_spacing) explicitly, so another scheduler derived from it can differ, in diffusers as here.
        return s.infer(sessions, [request(1), request(2, image=content(2))], s.parse_config({**FAST, "scheduler": "pndm"}))

    for a, b in zip(run(style), run(loaded), strict=True):
        assert max_diff(a.image, b.image) < 1e-6


@pytest.mark.parametrize("suffix", [".safetensors", ".ckpt"])
def test_full_fine_tune_single_file_imports(tmp_path, suffix):
    """An SD 1.x single-file checkpoint (CompVis LDM keys, e.g. a DreamBooth fine-tune shared as one file) through the
    core's single-file conversion, never unpickling: the same modules.  The tiny model names its config folder."""
    import torch
    from diffusion_support import ldm_checkpoint, sd_pipeline
    from safetensors.torch import save_file

    style = DreamBoothStyle(TINY)
    sd_pipeline(style.components).save_pretrained(str(tmp_path / "cfg"), safe_serialization=True)
    sd = ldm_checkpoint(style.components)
    path = tmp_path / f"sks-dog{suffix}"
    if suffix == ".ckpt":
        torch.save({"state_dict": sd, "global_step": 800}, path)
    else:
        save_file(sd, str(path))
    loaded = DreamBoothStyle({"config": str(tmp_path / "cfg")})
    loaded.load_weights(path)
    assert loaded.model_config.source == str(path)
    for m in ("unet", "vae", "text_encoder"):
        a, b = style.modules[m].state_dict(), loaded.modules[m].state_dict()
        assert set(a) <= set(b) and all(torch.equal(a[k], b[k]) for k in a), m


def test_pickled_ckpt_is_refused(tmp_path):
    import torch

    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(1)}, "obj": object()}, path)
    with pytest.raises(ValueError, match="weights_only"):
        DreamBoothStyle().load_weights(path)
    bin_lora = tmp_path / "lora.bin"
    bin_lora.write_bytes(b"x")
    from styleengine_dreambooth.importer import lora_file

    with pytest.raises(ValueError, match="pickled LoRA files are not loaded"):
        lora_file(bin_lora)

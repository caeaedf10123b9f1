"""Component loading (folder, hf:// from a local cache, single-file refusals), schedulers, LoRA, SD 1.5 sizes."""

from __future__ import annotations

import argparse
import warnings

import pytest
import torch
from diffusion_support import assert_close, sd_pipeline, torch_sessions

from styleengine.diffusion import (
    SCHEDULERS,
    WeightsUnavailableError,
    fuse_lora,
    load_components,
    load_lora,
    make_scheduler,
    txt2img,
)
from styleengine.diffusion.components import read_checkpoint
from styleengine.diffusion.tiny import sd15_configs, sd15_parameter_counts, tiny_components

SHA = "0123456789abcdef0123456789abcdef01234567"


# -- SD 1.5 sizes -------------------------------------------------------------------------------------


def test_sd15_parameter_counts():
    counts = sd15_parameter_counts()
    assert counts == {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480}
    assert sd15_parameter_counts(unet_in_channels=8)["unet"] == 859_532_484  # InstructPix2Pix


def test_builtin_sd15_config_folder_for_single_files(tmp_path):
    """What a single-file SD 1.x checkpoint is configured from offline when no config= is given."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig

    from styleengine.diffusion.components import _sd15_config_folder
    from styleengine.diffusion.tiny import count_parameters

    root = _sd15_config_folder(tmp_path / "cfg", unet_in_channels=8)
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(str(root), subfolder="unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(str(root), subfolder="vae"))
    assert count_parameters(unet) == 859_532_484 and count_parameters(vae) == 83_653_863
    assert CLIPTextConfig.from_pretrained(str(root), subfolder="text_encoder").hidden_size == 768
    assert PNDMScheduler.from_pretrained(str(root), subfolder="scheduler").config.skip_prk_steps


# -- schedulers ---------------------------------------------------------------------------------------


def test_make_scheduler_by_name_keeps_the_noise_schedule():
    base = sd15_configs()["scheduler"]
    expected = {
        "ddim": "DDIMScheduler", "euler": "EulerDiscreteScheduler",
        "euler_ancestral": "EulerAncestralDiscreteScheduler", "dpmpp": "DPMSolverMultistepScheduler",
        "pndm": "PNDMScheduler", "ddpm": "DDPMScheduler",
    }
    assert set(SCHEDULERS) == set(expected)
    for name, cls in expected.items():
        s = make_scheduler(name, base)
        assert type(s).__name__ == cls
        assert s.config.beta_schedule == "scaled_linear" and s.config.beta_end == 0.012
        assert s.config.steps_offset == 1
    assert make_scheduler("dpmpp", base).config.algorithm_type == "dpmsolver++"
    assert type(make_scheduler("Euler-A", make_scheduler("ddim", base))).__name__ == "EulerAncestralDiscreteScheduler"
    with pytest.raises(ValueError, match="valid choices: ddim, euler, euler_ancestral, dpmpp, pndm, ddpm"):
        make_scheduler("heun", base)


# -- diffusers folders and hf:// ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_folder(tiny, tmp_path_factory):
    folder = tmp_path_factory.mktemp("sd_folder")
    sd_pipeline(tiny).save_pretrained(str(folder))
    return folder


def _same_text_embedding(a, b):
    ids = a.tokenizer(["a cat"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        return torch.equal(a.text_encoder(ids)[0], b.text_encoder(ids)[0])


def test_load_diffusers_folder(tiny, saved_folder):
    comps = load_components(saved_folder, scheduler="euler")
    assert type(comps.scheduler).__name__ == "EulerDiscreteScheduler"
    assert comps.source == str(saved_folder) and comps.revision is None
    assert comps.unet.config.in_channels == 4 and comps.vae_scale_factor == 8 and comps.max_length == 77
    for a, b in zip(comps.unet.state_dict().values(), tiny.unet.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert _same_text_embedding(comps, tiny)
    with pytest.raises(ValueError, match="8 expected"):
        load_components(saved_folder, unet_in_channels=8)


def _fake_hub_cache(root, folder, repo="org/tiny-sd"):
    """The layout huggingface_hub's cache uses: models--org--name/{refs/main, snapshots/<sha>/...}."""
    import shutil

    storage = root / ("models--" + repo.replace("/", "--"))
    shutil.copytree(folder, storage / "snapshots" / SHA)
    (storage / "refs").mkdir(parents=True)
    (storage / "refs" / "main").write_text(SHA)
    return root


def test_hf_ref_loads_from_the_local_cache_offline(saved_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cache = _fake_hub_cache(tmp_path / "hub", saved_folder)
    comps = load_components(f"hf://org/tiny-sd@{SHA}", cache_dir=cache)
    assert comps.revision == SHA and comps.source == f"hf://org/tiny-sd@{SHA}"
    with pytest.warns(UserWarning, match="no revision pinned"):
        comps = load_components("hf://org/tiny-sd", cache_dir=cache)
    assert comps.revision == SHA  # the branch is resolved to the commit the cache holds


def test_hf_ref_missing_offline_says_how_to_download(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsUnavailableError, match=r"hf download org/absent --revision v1") as err:
        load_components("hf://org/absent@v1", cache_dir=tmp_path)
    assert "HF_HUB_OFFLINE=1" in str(err.value)
    with pytest.raises(ValueError, match="hf://org/repo@revision"):
        load_components("hf://not-a-repo")


# -- single-file checkpoints --------------------------------------------------------------------------


def test_ckpt_with_pickled_objects_is_refused(tmp_path):
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "hparams": argparse.Namespace(lr=1.0)}, path)
    with pytest.raises(ValueError, match="never unpickles code"):
        read_checkpoint(path)
    ok = tmp_path / "ok.ckpt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "global_step": 7}, ok)
    assert list(read_checkpoint(ok)) == ["w"]


def test_single_file_without_tokenizer_names_what_is_missing(tmp_path, monkeypatch):
    import huggingface_hub.constants
    from safetensors.torch import save_file

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    path = tmp_path / "sd15.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(320, 8, 3, 3)}, str(path))
    with pytest.raises(WeightsUnavailableError, match="vocab.json and merges.txt") as err:
        load_components(path)
    assert "openai/clip-vit-large-patch14" in str(err.value)
    other = tmp_path / "other.safetensors"
    save_file({"encoder.weight": torch.zeros(2)}, str(other))
    with pytest.raises(ValueError, match="not an original-format SD 1.x checkpoint"):
        load_components(other)
    with pytest.raises(WeightsUnavailableError, match="no such file"):
        load_components(tmp_path / "missing.safetensors")


# -- LoRA ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lora_file(tmp_path_factory):
    """A random LoRA (UNet attention + CLIP attention) saved in diffusers' format."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    tmp = tmp_path_factory.mktemp("lora")
    src = tiny_components(seed=0, tmpdir=tmp / "src")
    torch.manual_seed(123)
    src.unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights=False,
                                    target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    src.text_encoder.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights=False,
                                            target_modules=["q_proj", "k_proj", "v_proj", "out_proj"]))
    StableDiffusionPipeline.save_lora_weights(
        str(tmp / "out"),
        unet_lora_layers=convert_state_dict_to_diffusers(get_peft_model_state_dict(src.unet)),
        text_encoder_lora_layers=convert_state_dict_to_diffusers(get_peft_model_state_dict(src.text_encoder)),
        safe_serialization=True,
    )
    return tmp / "out" / "pytorch_lora_weights.safetensors"


def test_lora_fused_equals_unfused(lora_file, tmp_path):
    """Fusing folds W + s·(α/r)·BA into W: same outputs within 1e-5 relative (observed ~1e-7)."""
    comps = tiny_components(seed=0, tmpdir=tmp_path)
    kw = dict(seeds=[1], steps=3, height=64, width=64, output="latent")
    base = txt2img(torch_sessions(comps), comps.tokenizer, comps.scheduler, ["a cat"], **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        name = load_lora(comps, lora_file, scale=0.7)
    assert comps.lora_scales == {name: 0.7}
    unfused = txt2img(torch_sessions(comps), comps.tokenizer, comps.scheduler, ["a cat"], **kw)
    assert not torch.allclose(unfused, base, atol=1e-3), "the LoRA had no effect"
    fuse_lora(comps)
    assert comps.lora_scales == {}
    assert not any("lora" in n for n, _ in comps.unet.named_parameters())
    assert not any("lora" in n for n, _ in comps.text_encoder.named_parameters())
    fused = txt2img(torch_sessions(comps), comps.tokenizer, comps.scheduler, ["a cat"], **kw)
    assert_close(fused, unfused, rel=1e-5, what="fused vs unfused LoRA")


def test_fuse_lora_chosen_adapters(lora_file, tmp_path):
    """fuse_lora(adapters=...) folds exactly the named adapters at the given weights; {} = the base weights."""
    kw = dict(seeds=[1], steps=2, height=64, width=64, output="latent")

    def run(comps):
        return txt2img(torch_sessions(comps), comps.tokenizer, comps.scheduler, ["a cat"], **kw)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        comps = tiny_components(seed=0, tmpdir=tmp_path / "a")
        base = run(comps)
        name = load_lora(comps, lora_file, scale=1.0)
        unfused = run(comps)
        fuse_lora(comps, {name: 1.0})
        assert_close(run(comps), unfused, rel=1e-5, what="fused chosen adapter vs unfused")
        comps = tiny_components(seed=0, tmpdir=tmp_path / "b")
        load_lora(comps, lora_file, scale=0.7)
        fuse_lora(comps, {})
        assert not any("lora" in n for n, _ in comps.unet.named_parameters())
        assert_close(run(comps), base, rel=1e-6, what="no adapter fused vs base")


@pytest.mark.parametrize("suffix", [".safetensors", ".ckpt"])
def test_single_file_round_trip(tiny, saved_folder, tmp_path, suffix):
    """Tiny components → original LDM single file → load_components: identical modules.

    ``config=`` supplies the (tiny) diffusers configs and the tokenizer, as it must offline; real SD 1.x
    files fall back on the built-in SD 1.5 configs and need only the tokenizer files."""
    from diffusion_support import ldm_checkpoint
    from safetensors.torch import save_file

    sd = ldm_checkpoint(tiny)
    path = tmp_path / f"tiny{suffix}"
    if suffix == ".safetensors":
        save_file(sd, str(path))
    else:
        torch.save({"state_dict": sd, "global_step": 1}, path)
    comps = load_components(path, config=saved_folder, scheduler="ddim")
    assert comps.source == str(path)
    for name in ("unet", "vae", "text_encoder"):
        ours, ref = getattr(comps, name).state_dict(), getattr(tiny, name).state_dict()
        assert set(ours) == set(ref), name
        for k in ref:
            assert torch.equal(ours[k].reshape(ref[k].shape), ref[k]), f"{name}.{k}"
    assert _same_text_embedding(comps, tiny)

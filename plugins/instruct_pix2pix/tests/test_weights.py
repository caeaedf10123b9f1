"""Weights: diffusers folder, original single file (.ckpt), hf:// (offline), self-contained engine checkpoints."""

from __future__ import annotations

import hashlib
import shutil

import pytest
import torch
from ip2p_helpers import FAST, max_diff, request, run_cli
from styleengine_instruct_pix2pix import HUB_REF, InstructPix2PixStyle

from styleengine.weights import WeightsUnavailableError

SHA = "0123456789abcdef0123456789abcdef01234567"


def _same_modules(a, b) -> None:
    for name in ("unet", "vae", "text_encoder"):
        sa, sb = a.modules[name].state_dict(), b.modules[name].state_dict()
        assert set(sa) == set(sb), name
        for k in sa:
            assert torch.equal(sa[k].reshape(sb[k].shape), sb[k]), f"{name}.{k}"


def _sessions(style):
    from styleengine.runtime.base import SessionOptions
    from styleengine.runtime.torch import TorchSession

    return {s.name: TorchSession(s, SessionOptions()) for s in style.graphs()}


@pytest.fixture(scope="module")
def saved_folder(tiny_style, tmp_path_factory):
    """The tiny model in the diffusers layout of timbrooks/instruct-pix2pix (model_index.json + component folders)."""
    from diffusion_support import sd_pipeline

    folder = tmp_path_factory.mktemp("ip2p_folder")
    sd_pipeline(tiny_style.components, "StableDiffusionInstructPix2PixPipeline", image_encoder=None).save_pretrained(str(folder))
    return folder


def test_diffusers_folder(tiny_style, torch_sessions, saved_folder):
    style = InstructPix2PixStyle()  # the default (SD 1.5) config: the folder decides the architecture
    style.load_weights(saved_folder)
    assert style.model_config.source == str(saved_folder) and style.weights_path == saved_folder
    assert style.weights_sha256 and len(style.weights_sha256) == 64
    style.require_weights(allow_random=False)
    _same_modules(style, tiny_style)
    cfg = style.parse_config(FAST)
    [ours] = style.infer(_sessions(style), [request(0)], cfg)
    [ref] = tiny_style.infer(torch_sessions, [request(0)], cfg)
    assert max_diff(ours.image, ref.image) < 1e-6


@pytest.mark.parametrize("suffix", [".ckpt", ".safetensors"])
def test_original_single_file(tiny_style, saved_folder, tmp_path, suffix):
    """instruct-pix2pix-00-22000.ckpt's layout (CompVis LDM keys, 8-channel input block) through the core's
    single-file conversion.  The real file is SD 1.5-shaped (built-in configs); the tiny one names its configs."""
    from diffusion_support import ldm_checkpoint
    from safetensors.torch import save_file

    sd = ldm_checkpoint(tiny_style.components)
    assert sd["model.diffusion_model.input_blocks.0.0.weight"].shape[1] == 8
    path = tmp_path / f"instruct-pix2pix-tiny{suffix}"
    if suffix == ".ckpt":
        torch.save({"state_dict": sd, "global_step": 22000}, path)
    else:
        save_file(sd, str(path))
    style = InstructPix2PixStyle({"config": str(saved_folder)})
    style.load_weights(path)
    assert style.model_config.source == str(path)
    assert style.components.unet.config.in_channels == 8
    _same_modules(style, tiny_style)


def test_pickled_ckpt_is_refused(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(1)}, "obj": object()}, path)
    with pytest.raises(ValueError, match="weights_only"):
        InstructPix2PixStyle().load_weights(path)


def test_text_to_image_source_needs_widen(tmp_path_factory):
    from diffusion_support import sd_pipeline

    from styleengine.diffusion.tiny import tiny_components

    folder = tmp_path_factory.mktemp("sd_t2i")
    comps = tiny_components(seed=3, unet_in_channels=4, tmpdir=folder / "tok")
    sd_pipeline(comps).save_pretrained(str(folder / "model"))
    with pytest.raises(ValueError, match="widen_unet=true"):
        _ = InstructPix2PixStyle({"source": str(folder / "model")}).modules
    style = InstructPix2PixStyle({"source": str(folder / "model"), "widen_unet": True})
    conv = style.modules["unet"].conv_in
    assert conv.in_channels == 8 and style.components.unet.config.in_channels == 8
    assert torch.equal(conv.weight[:, :4], comps.unet.conv_in.weight) and not conv.weight[:, 4:].any()


def test_hf_ref_offline(saved_folder, tmp_path, monkeypatch):
    import huggingface_hub.constants as hub_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(WeightsUnavailableError, match=f"hf download timbrooks/instruct-pix2pix --revision {HUB_REF[-40:]}"):
        _ = InstructPix2PixStyle({"source": HUB_REF}).modules
    # A cached snapshot (huggingface_hub's layout) loads offline, pinned to its commit.
    storage = tmp_path / "hub" / "models--org--tiny-ip2p"
    shutil.copytree(saved_folder, storage / "snapshots" / SHA)
    (storage / "refs").mkdir()
    (storage / "refs" / "main").write_text(SHA)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    style = InstructPix2PixStyle({"source": f"hf://org/tiny-ip2p@{SHA}"})
    assert style.components.unet.config.in_channels == 8 and style.components.revision == SHA
    assert style.weights_sha256 == hashlib.sha256(f"hf://org/tiny-ip2p@{SHA}".encode()).hexdigest()
    assert style.weights_path == storage / "snapshots" / SHA
    style.load_weights(f"hf://org/tiny-ip2p@{SHA}")  # --weights hf://... goes the same way
    assert style.model_config.source == f"hf://org/tiny-ip2p@{SHA}"


def test_pull_offline_says_what_to_fetch(tmp_path, monkeypatch):
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    code, _, err = run_cli("pull", "instruct_pix2pix", "--out", str(tmp_path / "w"))
    assert code == 1 and "hf://timbrooks/instruct-pix2pix@" in err and "Traceback" not in err


def test_full_engine_checkpoint_is_self_contained(tiny_style, torch_sessions, tmp_path):
    """``state_dict()`` carries the configs and tokenizer (``meta.*``): the checkpoint needs no source, and loading
    it does not initialise random weights first."""
    from styleengine.weights import save_checkpoint

    sd = tiny_style.state_dict()
    assert {k.split(".")[0] for k in sd} == {"text_encoder", "unet", "vae", "meta"}
    path = save_checkpoint(tmp_path / "full", sd, style="instruct_pix2pix",
                           model_config={"source": str(tmp_path / "gone"), "size": "sd15"})
    style = InstructPix2PixStyle()
    style.load_weights(path)
    assert style.weights_path == path and style.components.source == "checkpoint"
    _same_modules(style, tiny_style)
    cfg = style.parse_config(FAST)
    [ours] = style.infer(_sessions(style), [request(1)], cfg)
    [ref] = tiny_style.infer(torch_sessions, [request(1)], cfg)
    assert max_diff(ours.image, ref.image) < 1e-6


def test_unknown_weights_are_refused(tmp_path):
    junk = tmp_path / "weights.bin"
    junk.write_bytes(b"\0" * 16)
    with pytest.raises(ValueError, match="diffusers folder"):
        InstructPix2PixStyle().load_weights(junk)
    with pytest.raises(FileNotFoundError):
        InstructPix2PixStyle().load_weights(tmp_path / "missing")

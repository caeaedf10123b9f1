"""Tiny random Stable Diffusion components for tests, and the real SD 1.5 configurations.

:func:`tiny_components` builds a complete, SD-shaped model family in milliseconds: the VAE downsamples
by 8 with 4 latent channels and the text encoder emits ``[B, 77, D]`` like SD 1.x, so pipelines, graph
specs and exports are exercised with the real tensor layout, only with small widths.  The tokenizer is a
real :class:`~transformers.CLIPTokenizer` (CLIP's byte-level BPE with ``</w>`` word ends) read from a
``vocab.json`` / ``merges.txt`` pair written here: the byte alphabet plus a handful of merges, so any
text tokenizes and nothing is downloaded.

:func:`sd15_configs` returns the published SD 1.5 component configurations (``unet/config.json``,
``vae/config.json``, ``text_encoder/config.json``, ``scheduler/scheduler_config.json`` of
``stable-diffusion-v1-5/stable-diffusion-v1-5``), written out in code so that tests can instantiate the
real architectures on the meta device and single-file loading can work without fetching configs.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

#: The tokenizer's sequence length (CLIP's context length, as in SD 1.x).
MAX_LENGTH = 77

_MERGES = ["t h", "a n", "i n", "e r", "th e</w>", "o n", "a r", "s t", "e n", "o r"]


def _byte_alphabet() -> list[str]:
    """GPT-2/CLIP's reversible byte → printable unicode table (256 symbols)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    out, extra = [], 0
    for b in range(256):
        if b in keep:
            out.append(chr(b))
        else:
            out.append(chr(256 + extra))
            extra += 1
    return out


def write_tiny_tokenizer_files(directory: str | Path) -> Path:
    """Write ``vocab.json`` and ``merges.txt`` of a tiny CLIP BPE vocabulary into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokens: list[str] = []
    for sym in _byte_alphabet():
        tokens += [sym, sym + "</w>"]
    for merge in _MERGES:
        merged = merge.replace(" ", "")
        tokens += [merged] if merged.endswith("</w>") else [merged, merged + "</w>"]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(tokens))}
    (directory / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(_MERGES) + "\n", encoding="utf-8")
    return directory


def tiny_tokenizer(directory: str | Path) -> Any:
    from transformers import CLIPTokenizer

    write_tiny_tokenizer_files(directory)
    return CLIPTokenizer.from_pretrained(str(directory), model_max_length=MAX_LENGTH)


def _randomize_zero_params(module: Any, generator: Any, std: float = 0.05) -> None:
    """ControlNet zero-initialises its output convolutions; make them non-zero so tests see their effect."""
    import torch

    with torch.no_grad():
        for p in module.parameters():
            if not p.any():
                p.copy_(torch.randn(p.shape, generator=generator) * std)


def tiny_components(
    seed: int = 0,
    unet_in_channels: int = 4,
    with_controlnet: bool = False,
    tmpdir: str | Path | None = None,
    scheduler: str = "ddim",
) -> Any:
    """Random SD-shaped :class:`~styleengine.diffusion.components.Components` (fp32, CPU, eval mode).

    Sizes: UNet block_out_channels (32, 64), one layer per block, cross-attention dim 32; VAE with four
    levels (downsampling 8, 4 latent channels, scaling factor 0.18215); CLIP text model with hidden size
    32 and 2 layers.  ``unet_in_channels=8`` gives an InstructPix2Pix-shaped UNet (noise + image latents).
    """
    import torch
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from .components import Components, make_scheduler

    tmp = Path(tmpdir) if tmpdir is not None else Path(tempfile.mkdtemp(prefix="styleengine-tiny-"))
    tokenizer = tiny_tokenizer(tmp / "tokenizer")

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=unet_in_channels,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=32,
    )
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(16, 16, 32, 32),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=128,
    )
    torch.manual_seed(seed + 2)
    text_config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=MAX_LENGTH,
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
        projection_dim=32,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    text_encoder = CLIPTextModel(text_config)

    controlnets = []
    if with_controlnet:
        torch.manual_seed(seed + 3)
        controlnet = ControlNetModel(
            in_channels=4,
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=8,
            norm_num_groups=32,
            conditioning_embedding_out_channels=(8, 16, 16, 32),
        )
        _randomize_zero_params(controlnet, torch.Generator().manual_seed(seed + 4))
        controlnets.append(controlnet.eval())

    sched = make_scheduler(scheduler, sd15_configs()["scheduler"])
    return Components(
        text_encoder=text_encoder.eval(),
        tokenizer=tokenizer,
        unet=unet.eval(),
        vae=vae.eval(),
        scheduler=sched,
        controlnets=controlnets,
        source=f"tiny:seed={seed}",
        revision=None,
    )


def sd15_configs() -> dict[str, dict[str, Any]]:
    """The published SD 1.5 configurations (diffusers / transformers format), as plain dicts.

    Parameter counts with these: UNet 859,520,964 (859,532,484 with ``in_channels=8``, InstructPix2Pix),
    VAE 83,653,863, CLIP text encoder 123,060,480.
    """
    unet = {
        "act_fn": "silu",
        "attention_head_dim": 8,
        "block_out_channels": [320, 640, 1280, 1280],
        "center_input_sample": False,
        "cross_attention_dim": 768,
        "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        "downsample_padding": 1,
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "in_channels": 4,
        "layers_per_block": 2,
        "mid_block_scale_factor": 1,
        "norm_eps": 1e-05,
        "norm_num_groups": 32,
        "out_channels": 4,
        "sample_size": 64,
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    }
    vae = {
        "act_fn": "silu",
        "block_out_channels": [128, 256, 512, 512],
        "down_block_types": ["DownEncoderBlock2D"] * 4,
        "in_channels": 3,
        "latent_channels": 4,
        "layers_per_block": 2,
        "norm_num_groups": 32,
        "out_channels": 3,
        "sample_size": 512,
        "scaling_factor": 0.18215,
        "up_block_types": ["UpDecoderBlock2D"] * 4,
    }
    text_encoder = {
        "architectures": ["CLIPTextModel"],
        "attention_dropout": 0.0,
        "bos_token_id": 0,
        "dropout": 0.0,
        "eos_token_id": 2,
        "hidden_act": "quick_gelu",
        "hidden_size": 768,
        "initializer_factor": 1.0,
        "initializer_range": 0.02,
        "intermediate_size": 3072,
        "layer_norm_eps": 1e-05,
        "max_position_embeddings": 77,
        "model_type": "clip_text_model",
        "num_attention_heads": 12,
        "num_hidden_layers": 12,
        "pad_token_id": 1,
        "projection_dim": 768,
        "vocab_size": 49408,
    }
    scheduler = {
        "_class_name": "PNDMScheduler",
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "beta_start": 0.00085,
        "clip_sample": False,
        "num_train_timesteps": 1000,
        "set_alpha_to_one": False,
        "skip_prk_steps": True,
        "steps_offset": 1,
        "trained_betas": None,
    }
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder, "scheduler": scheduler}


def count_parameters(module: Any) -> int:
    return sum(p.numel() for p in module.parameters())


def sd15_parameter_counts(unet_in_channels: int = 4) -> dict[str, int]:
    """Instantiate the SD 1.5 architectures with empty (meta) weights and count their parameters."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = sd15_configs()
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config({**cfg["unet"], "in_channels": unet_in_channels})
        vae = AutoencoderKL.from_config(cfg["vae"])
        text = CLIPTextModel(CLIPTextConfig(**cfg["text_encoder"]))
    return {"unet": count_parameters(unet), "vae": count_parameters(vae), "text_encoder": count_parameters(text)}

"""Helpers of the DreamBooth plugin's tests (conftest puts this folder on sys.path)."""

from __future__ import annotations

import contextlib
import io

import numpy as np

TINY = {"size": "tiny"}
FAST = {"steps": 2, "resolution": 64}


def run_cli(*args: str) -> tuple[int, str, str]:
    """``engine ARGS`` in this process: (exit code, stdout, stderr)."""
    from styleengine.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def request(seed: int, prompt: str = "a photo of sks dog", image: np.ndarray | None = None, negative: str = "",
            lora: str = ""):
    from styleengine.style import StyleRequest

    texts = {"prompt": prompt}
    if negative:
        texts["negative_prompt"] = negative
    if lora:
        texts["lora"] = lora
    images = {"image": image} if image is not None else {}
    return StyleRequest(images=images, texts=texts, seed=seed, id=f"r{seed}")


def content(seed: int, size: tuple[int, int] = (64, 64)) -> np.ndarray:
    return np.random.default_rng(seed).random((*size, 3), dtype=np.float32)


def max_diff(a, b) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max())


def random_lora(path, seed: int, text_encoder: bool = False):
    """A LoRA with visible effect (B != 0) in diffusers' format, written by the core's save_diffusers_lora."""
    from styleengine.diffusion.lora import UNET_TARGETS, add_lora, lora_config, save_diffusers_lora

    import torch
    from styleengine_dreambooth import DreamBoothStyle

    comps = DreamBoothStyle(TINY).components
    g = torch.Generator().manual_seed(seed)
    add_lora(comps.unet, lora_config(4, 4, UNET_TARGETS))
    mods = [comps.unet]
    if text_encoder:
        add_lora(comps.text_encoder, lora_config(4, 4, ("q_proj", "k_proj", "v_proj", "out_proj")))
        mods.append(comps.text_encoder)
    with torch.no_grad():
        for m in mods:
            for n, p in m.named_parameters():
                if "lora_" in n:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return save_diffusers_lora(path, unet=comps.unet, text_encoder=comps.text_encoder if text_encoder else None)

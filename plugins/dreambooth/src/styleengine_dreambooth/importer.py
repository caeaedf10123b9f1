"""Where the DreamBooth components come from, and the formats ``--weights`` / ``loras`` accept (never unpickling).

* base model (``ModelConfig.source``): a diffusers folder, an SD 1.x single file (``.safetensors``, or ``.ckpt``
  read with ``torch.load(weights_only=True)``), ``hf://org/repo@revision``, all through
  :func:`styleengine.diffusion.load_components`; without a source, random SD 1.5 shapes or the tiny test model;
* LoRA files: diffusers / PEFT layout (``unet.<module>.lora_A.weight``: what ``train_dreambooth_lora.py`` and this
  style's training write as ``pytorch_lora_weights.safetensors``) and the kohya / A1111 layout users share
  (``lora_unet_*.lora_down.weight`` / ``.lora_up.weight`` / ``.alpha``), both read by diffusers' own
  ``load_lora_weights`` through :func:`styleengine.diffusion.load_lora` (nothing re-implemented here);
* engine checkpoints (``model.safetensors`` + ``config.json``): a full fine-tune's ``unet.*`` (and ``text_encoder.*``).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Literal

from styleengine.diffusion import sources as _sources
from styleengine.diffusion.lora import LORA_FILE

from .config import ModelConfig

MODULES = ("text_encoder", "unet", "vae")
_LDM_UNET_IN = "model.diffusion_model.input_blocks.0.0.weight"

WeightsKind = Literal["diffusers", "single_file", "lora", "engine"]


def build_components(mc: ModelConfig, *, seed: int = 0) -> Any:
    """:class:`~styleengine.diffusion.Components` for a model config (fp32, CPU, eval), its LoRAs attached."""
    from styleengine.diffusion import load_components, load_lora

    cn = mc.controlnet
    if cn == "tiny" and (mc.source is not None or mc.size != "tiny"):
        raise ValueError("controlnet=tiny is the tiny random ControlNet: it goes with size=tiny and no source")
    if mc.source is not None:
        tok = _sources.find_tokenizer(mc.tokenizer, required=False) if mc.tokenizer is not None else None
        comps = load_components(mc.source, tokenizer=tok, config=mc.config, unet_in_channels=4,
                                controlnets=[cn] if cn else None)
    elif mc.size == "tiny":
        from styleengine.diffusion.tiny import tiny_components

        comps = tiny_components(seed=seed, tmpdir=tempfile.mkdtemp(prefix="styleengine-dreambooth-"), scheduler="pndm",
                                with_controlnet=cn == "tiny")
        if cn and cn != "tiny":
            from styleengine.diffusion.components import load_controlnet

            comps.controlnets.append(load_controlnet(cn))
    else:
        comps = _sources.random_sd15_components(seed=seed, tokenizer=mc.tokenizer, controlnet=bool(cn))
    if mc.fused_lora is not None:
        from styleengine.diffusion import fuse_lora

        load_lora(comps, lora_file(mc.fused_lora), adapter_name="fused")
        fuse_lora(comps)
    for name, path in mc.loras.items():
        load_lora(comps, lora_file(path), adapter_name=name)
    return comps


def pipeline_parts(mc: ModelConfig) -> tuple[Any, dict[str, Any], float]:
    """(tokenizer, scheduler config, VAE scaling factor) without loading weights (serving exported graphs)."""
    return _sources.pipeline_parts(mc.source, tiny=mc.size == "tiny", tokenizer=mc.tokenizer, config=mc.config)


def lora_file(path: str | os.PathLike[str]) -> Path:
    """A LoRA ``.safetensors`` file, or a folder holding ``pytorch_lora_weights.safetensors``."""
    p = Path(path).expanduser()
    if p.is_dir() and (p / LORA_FILE).is_file():
        return p / LORA_FILE
    if p.is_file() and p.suffix == ".safetensors":
        return p
    if p.is_file() and p.suffix in (".bin", ".pt", ".ckpt", ".pth"):
        raise ValueError(f"{p}: pickled LoRA files are not loaded; convert it to .safetensors")
    raise FileNotFoundError(f"{p}: no LoRA here (a .safetensors file, or a folder with {LORA_FILE})")


def lora_layout(path: str | os.PathLike[str]) -> str:
    """``diffusers`` (PEFT keys), ``kohya`` (``lora_unet_*`` / ``lora_te_*``) or ``unknown``."""
    from safetensors import safe_open

    with safe_open(str(lora_file(path)), framework="pt") as fh:
        keys = list(fh.keys())
    if any(k.startswith(("lora_unet_", "lora_te_", "lora_te1_")) for k in keys):
        return "kohya"
    if any(".lora_A." in k or ".lora.down." in k or ".lora_linear_layer." in k for k in keys):
        return "diffusers"
    return "unknown"


def weights_kind(path: str | os.PathLike[str]) -> WeightsKind:
    """What ``--weights PATH`` points at; raises ``ValueError`` naming the accepted formats."""
    from styleengine.weights import MODEL_FILE

    p = Path(path)
    if p.is_dir():
        if (p / "model_index.json").is_file():
            return "diffusers"
        if (p / LORA_FILE).is_file():
            return "lora"
        if (p / MODEL_FILE).is_file():
            return "engine"
    elif p.is_file() and p.suffix == ".ckpt":
        return "single_file"
    elif p.is_file() and p.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(p), framework="pt") as fh:
            if (fh.metadata() or {}).get("styleengine"):
                return "engine"
            keys = list(fh.keys())
        if _LDM_UNET_IN in keys:
            return "single_file"
        if lora_layout(p) != "unknown":
            return "lora"
    raise ValueError(
        f"{p}: not DreamBooth weights. Accepted: a LoRA (.safetensors in the diffusers/PEFT or kohya/A1111 layout, or a "
        f"folder with {LORA_FILE}), a diffusers folder (model_index.json), an SD 1.x .ckpt/.safetensors single file, "
        "or an engine checkpoint folder (model.safetensors + config.json, e.g. a full fine-tune from `engine train dreambooth`)"
    )


def lora_run_config(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The model config training wrote beside a LoRA (``config.json``), if any."""
    p = Path(path)
    folder = p if p.is_dir() else p.parent
    cfg = folder / "config.json"
    if cfg.is_file():
        data = json.loads(cfg.read_text())
        if data.get("style") == "dreambooth":
            return dict(data.get("model_config") or {})
    return None

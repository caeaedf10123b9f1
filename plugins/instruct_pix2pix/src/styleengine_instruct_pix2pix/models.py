"""Where the InstructPix2Pix components come from, and the checkpoint formats this style reads and writes.

Sources (``ModelConfig.source``), all through :func:`styleengine.diffusion.load_components`:

* a diffusers folder (``model_index.json``: the layout of ``timbrooks/instruct-pix2pix`` on the Hub);
* the original single-file checkpoint (``instruct-pix2pix-00-22000.ckpt`` read with
  ``torch.load(weights_only=True)``, or its ``.safetensors`` twin), converted by diffusers' single-file
  loader with the UNet's 8 input channels read from the checkpoint; it carries no tokenizer, so the CLIP
  tokenizer files must be local (``ModelConfig.tokenizer`` or the Hugging Face cache);
* ``hf://org/repo@revision``: the diffusers layout's configs, tokenizer and safetensors only.

Without a source the architecture is built with random weights: ``size="sd15"`` (the real SD 1.5 shapes with
an 8-channel UNet: latency work) or ``size="tiny"`` (tests).

Engine checkpoints (``model.safetensors`` + ``config.json``) come in three kinds, told apart by their keys:

* **full**: ``text_encoder.*``, ``unet.*``, ``vae.*`` plus ``meta.*`` (the component configs and the tokenizer
  files as byte tensors), so the checkpoint rebuilds the model on its own, wherever it is loaded;
* **UNet**: ``unet.*`` only (a full fine-tune): the other components come from the recorded ``source``;
* **LoRA**: ``lora.*`` (PEFT adapter weights of the UNet; shape in ``ModelConfig.lora``): applied to the
  source's UNet and fused, so every runtime and the export see plain weights.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, field_validator
from torch import nn

from styleengine.diffusion import lora as _lora
from styleengine.diffusion import sources as _sources
from styleengine.diffusion.lora import LoraWeights, lora_state_dict, set_lora_state_dict  # noqa: F401 - public here too
from styleengine.diffusion.sources import load_tokenizer, resolve_source, tiny_tokenizer_dir  # noqa: F401
from styleengine.style import StyleConfig

log = logging.getLogger(__name__)

MODULES = ("text_encoder", "unet", "vae")
#: UNet input channels: 4 noisy latents + 4 (unscaled) conditioning-image latents.
IN_CHANNELS = 8
#: The attention projections diffusers' InstructPix2Pix LoRA script adapts.
LORA_TARGETS = ("to_k", "to_q", "to_v", "to_out.0")
META = "meta."
_LDM_UNET_IN = "model.diffusion_model.input_blocks.0.0.weight"


class LoraSpec(StyleConfig):
    """Shape of a LoRA adapter of the UNet (written by training next to its weights)."""

    rank: int = Field(4, ge=1, le=1024)
    alpha: float = Field(4.0, gt=0.0, le=4096.0)
    targets: tuple[str, ...] = Field(LORA_TARGETS, min_length=1, max_length=32)


class ModelConfig(StyleConfig):
    """Where the components come from (saved beside trained weights, so a checkpoint finds its base)."""

    source: str | None = Field(
        None,
        description="diffusers folder, original .ckpt/.safetensors single file, or hf://org/repo@revision; "
        "none = random weights of `size` (latency work, tests)",
    )
    size: Literal["sd15", "tiny"] = Field(
        "sd15", description="architecture without a source: sd15 (SD 1.5 shapes, 8-channel UNet) or tiny (tests)"
    )
    tokenizer: str | None = Field(
        None, description="folder with the CLIP tokenizer files (single-file sources carry none)"
    )
    config: str | None = Field(
        None, description="diffusers config folder for a single-file source that is not SD 1.5-shaped (unet/, vae/, ...)"
    )
    widen_unet: bool = Field(
        False,
        description="the source is a text-to-image SD 1.x model: widen the UNet's conv_in to 8 channels (new ones "
        "zero), as the reference initialises training",
    )
    lora: LoraSpec | None = Field(None, description="shape of the LoRA adapter a checkpoint holds (set by training)")

    @field_validator("source", "tokenizer", "config")
    @classmethod
    def _not_blank(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("must not be empty")
        return v


# -- tokenizers (styleengine.diffusion.sources) --------------------------------------------------------------


def find_tokenizer(mc: ModelConfig, *, required: bool) -> Path | None:
    """The CLIP tokenizer folder for a model config (see :func:`styleengine.diffusion.sources.find_tokenizer`)."""
    return _sources.find_tokenizer(mc.tokenizer, required=required)


# -- building components -----------------------------------------------------------------------------------


def widen_conv_in(unet: Any, in_channels: int = IN_CHANNELS) -> Any:
    """Give a text-to-image UNet InstructPix2Pix's input layer: ``in_channels`` inputs, the new ones zero.

    What the reference (``ddpm_edit.py`` loading SD 1.5 into an 8-channel UNet) and diffusers'
    ``train_instruct_pix2pix.py`` do before training.
    """
    old = unet.conv_in
    if old.in_channels == in_channels:
        return unet
    new = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride, old.padding)
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, : old.in_channels].copy_(old.weight)
        new.bias.copy_(old.bias)
    unet.conv_in = new.to(dtype=old.weight.dtype, device=old.weight.device)
    unet.register_to_config(in_channels=in_channels)
    return unet


def _check_unet(comps: Any, mc: ModelConfig) -> Any:
    ch = int(comps.unet.config.in_channels)
    if ch == IN_CHANNELS:
        return comps
    if ch == 4 and mc.widen_unet:
        log.info("%s: widening the text-to-image UNet's conv_in from 4 to 8 channels (new channels zero)", mc.source)
        widen_conv_in(comps.unet)
        return comps
    hint = " (a text-to-image SD 1.x model: set widen_unet=true to start InstructPix2Pix training from it)" if ch == 4 else ""
    raise ValueError(f"{mc.source}: the UNet has {ch} input channels, InstructPix2Pix needs {IN_CHANNELS}{hint}")


def build_components(mc: ModelConfig, *, seed: int = 0) -> Any:
    """:class:`~styleengine.diffusion.Components` for a model config (fp32, CPU, eval mode)."""
    from styleengine.diffusion import load_components

    if mc.source is not None:
        tok = find_tokenizer(mc, required=False) if mc.tokenizer is not None else None
        comps = load_components(mc.source, tokenizer=tok, config=mc.config)
        return _check_unet(comps, mc)
    if mc.size == "tiny":
        from styleengine.diffusion.tiny import tiny_components

        return tiny_components(seed=seed, unet_in_channels=IN_CHANNELS, tmpdir=tempfile.mkdtemp(prefix="styleengine-ip2p-"),
                               scheduler="euler_ancestral")
    return random_sd15_components(mc, seed=seed)


def random_sd15_components(mc: ModelConfig, *, seed: int = 0) -> Any:
    """SD 1.5-shaped components (8-channel UNet) with random weights: latency work only."""
    return _sources.random_sd15_components(seed=seed, unet_in_channels=IN_CHANNELS, scheduler="euler_ancestral",
                                           tokenizer=mc.tokenizer)


def pipeline_parts(mc: ModelConfig) -> tuple[Any, dict[str, Any], float]:
    """(tokenizer, scheduler config, VAE scaling factor) without loading any weights (serving exported graphs)."""
    return _sources.pipeline_parts(mc.source, tiny=mc.size == "tiny", tokenizer=mc.tokenizer, config=mc.config)


# -- self-contained full checkpoints -----------------------------------------------------------------------


def _bytes_tensor(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).clone()


def _tensor_bytes(t: torch.Tensor) -> bytes:
    return bytes(t.to(torch.uint8).contiguous().cpu().numpy().tobytes())


def _as_saved(config: Mapping[str, Any]) -> dict[str, Any]:
    """A diffusers config as it must be stored (dumped with sorted keys: the same config is the same bytes,
    whichever order ``from_config`` rebuilt it in): without ``_use_default_values``.  ``from_config`` drops the keys
    that list names and takes the class defaults for them instead, so a config built with one value and
    saved with that list comes back with another (a scheduler's ``timestep_spacing``: 'linspace' -> 'leading')."""
    return {k: v for k, v in dict(config).items() if k != "_use_default_values"}


def meta_tensors(comps: Any) -> dict[str, torch.Tensor]:
    """The component configs and tokenizer files as ``meta.*`` byte tensors (a few MB)."""
    out = {
        f"{META}unet_config": _bytes_tensor(json.dumps(_as_saved(comps.unet.config), sort_keys=True).encode()),
        f"{META}vae_config": _bytes_tensor(json.dumps(_as_saved(comps.vae.config), sort_keys=True).encode()),
        f"{META}text_encoder_config": _bytes_tensor(comps.text_encoder.config.to_json_string().encode()),
        f"{META}scheduler_config": _bytes_tensor(json.dumps(_as_saved(comps.scheduler.config), sort_keys=True).encode()),
    }
    with tempfile.TemporaryDirectory(prefix="styleengine-ip2p-tok-") as tmp:
        comps.tokenizer.save_pretrained(tmp)
        for f in sorted(Path(tmp).iterdir()):
            if f.is_file():
                out[f"{META}tokenizer/{f.name}"] = _bytes_tensor(f.read_bytes())
    return out


def components_from_meta(meta: Mapping[str, torch.Tensor], weights: Mapping[str, Mapping[str, torch.Tensor]]) -> Any:
    """Rebuild :class:`Components` from ``meta.*`` tensors and every module's weights (no random init)."""
    import diffusers
    from accelerate import init_empty_weights
    from transformers import CLIPTextConfig, CLIPTextModel

    from styleengine.diffusion import Components

    def cfg(name: str) -> dict[str, Any]:
        key = f"{name}_config"
        if key not in meta:
            raise ValueError(f"checkpoint meta has no {key}")
        return _as_saved(json.loads(_tensor_bytes(meta[key]).decode()))  # older checkpoints still carry the list

    unet_cfg, vae_cfg, sched_cfg = cfg("unet"), cfg("vae"), cfg("scheduler")
    with init_empty_weights():
        unet = diffusers.UNet2DConditionModel.from_config(unet_cfg)
        vae = diffusers.AutoencoderKL.from_config(vae_cfg)
        text = CLIPTextModel(CLIPTextConfig(**cfg("text_encoder")))
    for name, mod in (("unet", unet), ("vae", vae), ("text_encoder", text)):
        sd = dict(weights.get(name, {}))
        missing, unexpected = mod.load_state_dict(sd, strict=False, assign=True)
        missing = [k for k in missing if not _is_nonpersistent(mod, k)]
        if missing or unexpected:
            raise ValueError(f"module {name!r} does not match its config: missing {missing[:8]}, unexpected {unexpected[:8]}")
    _materialise(text)
    sched_cls = getattr(diffusers, sched_cfg.get("_class_name", "PNDMScheduler"))
    with tempfile.TemporaryDirectory(prefix="styleengine-ip2p-tok-") as tmp:
        for key, t in meta.items():
            if key.startswith("tokenizer/"):
                (Path(tmp) / key.split("/", 1)[1]).write_bytes(_tensor_bytes(t))
        tokenizer = load_tokenizer(tmp)
    return Components(
        text_encoder=text.eval(), tokenizer=tokenizer, unet=unet.eval(), vae=vae.eval(),
        scheduler=sched_cls.from_config(sched_cfg), source="checkpoint",
    )


def _is_nonpersistent(module: nn.Module, key: str) -> bool:
    owner, _, name = key.rpartition(".")
    try:
        sub = module.get_submodule(owner) if owner else module
    except AttributeError:
        return False
    return name in getattr(sub, "_non_persistent_buffers_set", set())


def _materialise(module: nn.Module) -> None:
    """Buffers that stayed on the meta device (non-persistent ones, e.g. CLIP's position ids) → real tensors."""
    for name, buf in list(module.named_buffers()):
        if buf.device.type == "meta":
            owner, _, leaf = name.rpartition(".")
            sub = module.get_submodule(owner) if owner else module
            if leaf == "position_ids":
                value = torch.arange(buf.shape[-1]).expand(buf.shape)
            else:
                value = torch.zeros(buf.shape, dtype=buf.dtype)
            sub.register_buffer(leaf, value, persistent=leaf not in sub._non_persistent_buffers_set)


# -- LoRA --------------------------------------------------------------------------------------------------


def lora_config(spec: LoraSpec) -> Any:
    return _lora.lora_config(spec.rank, spec.alpha, spec.targets)


def add_lora(unet: Any, spec: LoraSpec) -> None:
    """Attach an (initially no-op: B = 0) LoRA adapter to the UNet's attention projections."""
    _lora.add_lora(unet, lora_config(spec))


def apply_lora(unet: Any, spec: LoraSpec, state: Mapping[str, torch.Tensor]) -> None:
    """Attach the adapter, load its weights, fold them into the base weights and drop the PEFT layers."""
    add_lora(unet, spec)
    set_lora_state_dict(unet, state)
    unet.fuse_lora(lora_scale=1.0)
    unet.unload_lora()


# -- detecting what a weights path is ---------------------------------------------------------------------

WeightsKind = Literal["diffusers", "single_file", "engine"]


def weights_kind(path: str | os.PathLike[str]) -> WeightsKind:
    """What ``--weights PATH`` points at; raises ``ValueError`` naming the accepted formats."""
    from styleengine.weights import MODEL_FILE

    p = Path(path)
    if p.is_dir():
        if (p / "model_index.json").is_file():
            return "diffusers"
        if (p / MODEL_FILE).is_file():
            return "engine"
    elif p.is_file():
        if p.suffix == ".ckpt":
            return "single_file"
        if p.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(p), framework="pt") as fh:
                if (fh.metadata() or {}).get("styleengine"):
                    return "engine"
                if _LDM_UNET_IN in fh.keys():  # noqa: SIM118 - safe_open has keys(), not __contains__
                    return "single_file"
            return "engine"
    raise ValueError(
        f"{p}: not InstructPix2Pix weights. Accepted: a diffusers folder (model_index.json), the original "
        "instruct-pix2pix-00-22000.ckpt / .safetensors single file, hf://timbrooks/instruct-pix2pix@<rev>, or an "
        "engine checkpoint folder (model.safetensors + config.json, e.g. from `engine train instruct_pix2pix`)"
    )


def split_tensors(tensors: Mapping[str, torch.Tensor]) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
    """``{"unet.x": t, "meta.y": b}`` → ({"unet": {"x": t}}, {"y": b}); unknown prefixes raise ValueError."""
    groups: dict[str, dict[str, torch.Tensor]] = {}
    meta: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, value in tensors.items():
        if key.startswith(META):
            meta[key[len(META):]] = value
            continue
        mod, _, rest = key.partition(".")
        if mod in (*MODULES, "lora") and rest:
            groups.setdefault(mod, {})[rest] = value
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"keys for unknown modules {unknown[:5]} (expected {', '.join(MODULES)}, lora, meta)")
    return groups, meta


def trainable(params: Iterable[nn.Parameter]) -> list[nn.Parameter]:
    return [p for p in params if p.requires_grad]

"""LoRA adapters on SD modules: attach for training, checkpoint, activate per request, save for diffusers.

Everything goes through PEFT (the layers) and diffusers (the file format and adapter switching), so what is
written here is what ``StableDiffusionPipeline.load_lora_weights`` reads, and what it reads (diffusers / PEFT
layout, kohya / A1111 ``lora_unet_*`` layout) loads here through :func:`~styleengine.diffusion.load_lora`.

* :func:`lora_config` / :func:`add_lora`: a PEFT ``LoraConfig`` on a UNet or CLIP text encoder (training);
* :func:`lora_state_dict` / :func:`set_lora_state_dict` / :class:`LoraWeights`: an adapter's weights alone,
  as a module a training checkpoint can hold;
* :func:`activate`: per request, which loaded adapters are active with which weights (diffusers'
  ``set_adapters``; weights are absolute, so switching back and forth is exact); unchanged states are skipped;
* :func:`save_diffusers_lora`: ``pytorch_lora_weights.safetensors`` (``unet.`` / ``text_encoder.`` prefixes,
  PEFT key names, the adapter's ``LoraConfig`` in the header), written atomically.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

#: What diffusers' DreamBooth LoRA script adapts in the UNet (``add_*`` exist in some UNets only).
UNET_TARGETS = ("to_k", "to_q", "to_v", "to_out.0", "add_k_proj", "add_v_proj")
#: ... and in the CLIP text encoder (``--train_text_encoder``).
TEXT_ENCODER_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")
#: The file name diffusers writes and ``load_lora_weights`` looks for.
LORA_FILE = "pytorch_lora_weights.safetensors"


def lora_config(rank: int, alpha: float | None = None, targets: Sequence[str] = UNET_TARGETS, *,
                dropout: float = 0.0, init: str | bool = "gaussian") -> Any:
    """A PEFT ``LoraConfig``: ``alpha`` defaults to the rank (scale 1), ``init="gaussian"`` (B = 0: a no-op
    adapter at the start), as diffusers' training scripts use."""
    from peft import LoraConfig

    return LoraConfig(r=int(rank), lora_alpha=float(alpha if alpha is not None else rank), lora_dropout=float(dropout),
                      init_lora_weights=init, target_modules=list(targets))


def add_lora(module: Any, config: Any, adapter_name: str = "default") -> None:
    """Attach an adapter to a diffusers model or a transformers text model (both have ``add_adapter``)."""
    module.add_adapter(config, adapter_name=adapter_name)


def lora_state_dict(module: Any, adapter_name: str = "default") -> dict[str, torch.Tensor]:
    from peft.utils import get_peft_model_state_dict

    return get_peft_model_state_dict(module, adapter_name=adapter_name)


def set_lora_state_dict(module: Any, state: Mapping[str, torch.Tensor], adapter_name: str = "default") -> None:
    from peft.utils import set_peft_model_state_dict

    result = set_peft_model_state_dict(module, dict(state), adapter_name=adapter_name)
    unexpected = list(getattr(result, "unexpected_keys", []) or [])
    if unexpected:
        raise ValueError(f"LoRA weights do not match the adapter: unexpected {unexpected[:8]}")


class LoraWeights(nn.Module):
    """A module's LoRA adapter weights as a module, so training checkpoints hold the adapter alone."""

    def __init__(self, module: Any, adapter_name: str = "default") -> None:
        super().__init__()
        object.__setattr__(self, "_target", module)  # not a submodule: its base weights stay out of the state dict
        self.adapter_name = adapter_name

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:  # type: ignore[override]
        return {k: v.detach() for k, v in lora_state_dict(self._target, self.adapter_name).items()}

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:  # type: ignore[override]
        have = set(lora_state_dict(self._target, self.adapter_name))
        if strict and set(state_dict) != have:
            raise ValueError(f"LoRA state mismatch: missing {sorted(have - set(state_dict))[:5]}, "
                             f"unexpected {sorted(set(state_dict) - have)[:5]}")
        set_lora_state_dict(self._target, state_dict, self.adapter_name)
        return nn.modules.module._IncompatibleKeys([], [])


# -- per-request activation ------------------------------------------------------------------------------


def adapters_of(module: Any) -> list[str]:
    """Names of the LoRA adapters loaded into ``module`` (empty when it has none)."""
    return list(getattr(module, "peft_config", None) or {})


_state_lock = threading.Lock()
#: Each module's active (name, weight) pairs as :func:`activate` last set them (weak: modules may go away).
_active: weakref.WeakKeyDictionary[Any, tuple[tuple[str, float], ...]] = weakref.WeakKeyDictionary()


def activate(modules: Sequence[Any], weights: Mapping[str, float] | None) -> bool:
    """Make exactly ``weights`` (adapter name → weight) the active LoRAs of each module; None / {} = none.

    Each module gets the adapters it has (a LoRA without text-encoder weights leaves the text encoder at its
    base); a module with none of them runs without LoRA.  Returns True when some module changed state (the
    switch cost), False when every module already was in that state.  Unknown names are the caller's to refuse.
    """
    from diffusers.loaders.lora_base import (
        disable_lora_for_text_encoder,
        enable_lora_for_text_encoder,
        set_adapters_for_text_encoder,
    )
    from diffusers.models.modeling_utils import ModelMixin

    changed = False
    wanted = dict(weights or {})
    for m in modules:
        have = adapters_of(m)
        if not have:
            continue
        mine = {n: float(w) for n, w in wanted.items() if n in have}
        state = tuple(sorted(mine.items()))
        with _state_lock:
            if _active.get(m) == state:
                continue
            _active[m] = state
        changed = True
        diffusers_model = isinstance(m, ModelMixin)
        if not mine:
            m.disable_lora() if diffusers_model else disable_lora_for_text_encoder(m)
            continue
        names, ws = list(mine), list(mine.values())
        if diffusers_model:
            m.set_adapters(names, ws)
            m.enable_lora()
        else:
            set_adapters_for_text_encoder(names, m, ws)
            enable_lora_for_text_encoder(m)
    return changed


def forget(module: Any) -> None:
    """Drop the cached activation state of ``module`` (after its adapters were changed outside :func:`activate`)."""
    with _state_lock:
        _active.pop(module, None)


# -- saving in diffusers' format ---------------------------------------------------------------------------


def save_diffusers_lora(path: str | os.PathLike[str], *, unet: Any = None, text_encoder: Any = None,
                        adapter_name: str = "default") -> Path:
    """Write ``unet`` / ``text_encoder`` adapters as diffusers' ``pytorch_lora_weights.safetensors`` (atomic).

    Keys: ``unet.<module>.lora_A.weight`` ... (``convert_state_dict_to_diffusers``), weights in fp32, each
    adapter's ``LoraConfig`` (rank, alpha, targets) in the safetensors header, as diffusers' training scripts
    save them; ``load_lora_weights`` reads the file as it is.
    """
    import tempfile

    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers

    from ..io import _fsync_dir

    target = Path(path)
    if target.suffix != ".safetensors":
        target = target / LORA_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    layers: dict[str, Any] = {}
    for key, module in (("unet", unet), ("text_encoder", text_encoder)):
        if module is None or adapter_name not in adapters_of(module):
            continue
        sd = {k: v.detach().float().cpu().contiguous() for k, v in lora_state_dict(module, adapter_name).items()}
        layers[f"{key}_lora_layers"] = convert_state_dict_to_diffusers(sd)
        layers[f"{key}_lora_adapter_metadata"] = module.peft_config[adapter_name].to_dict()
    if not layers:
        raise ValueError(f"no LoRA adapter {adapter_name!r} on the given modules: nothing to save")
    with tempfile.TemporaryDirectory(prefix=f".{target.name}.", dir=target.parent) as tmp:
        StableDiffusionPipeline.save_lora_weights(tmp, weight_name=target.name, safe_serialization=True, **layers)
        os.replace(Path(tmp) / target.name, target)
    _fsync_dir(target.parent)
    return target

"""Reference checkpoints (``latest_net_G.pth``, ``<epoch>_net_G.pth``, the released ``<name>.pth``).

The reference saves ``net.module.cpu().state_dict()`` (or ``net.cpu().state_dict()`` on CPU) with
``torch.save``; the keys are those of ``styleengine.nn``'s generators (``model.model.0.weight`` ...).
Files are read with ``torch.load(weights_only=True)`` only (:func:`styleengine.nn.load_reference_state_dict`),
then loaded with :func:`styleengine.nn.load_into`, which checks keys and shapes first and drops the stale
InstanceNorm statistics that PyTorch < 0.4 saved, as the reference's loader does.

The architecture is read off the checkpoint (netG, ngf, norm, input_nc, output_nc, and for ResNets
whether there is dropout, which shifts the block's layer indices; a U-Net's dropout has no trace in its
weights, so ``no_dropout`` keeps its configured value there): model-config fields the caller did not set explicitly follow the
checkpoint; explicitly set fields that contradict it are an error naming both architectures.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from styleengine.nn import describe_architecture

_UNET_NAMES = {8: "unet_256", 7: "unet_128"}
_RESNET_NAMES = {9: "resnet_9blocks", 6: "resnet_6blocks"}


def _norm(state: Mapping[str, torch.Tensor], post_norm_conv: str) -> str:
    # BatchNorm has 1-D affine weights; instance norm (affine=False) has none but keeps conv biases
    # (pre-0.4 checkpoints also carry its running statistics); "none" has neither.
    if any(k.endswith(".weight") and v.dim() == 1 for k, v in state.items()):
        return "batch"
    if f"{post_norm_conv}.bias" in state or any(k.endswith("running_mean") for k in state):
        return "instance"
    return "none"


def detect_generator(state: Mapping[str, torch.Tensor]) -> dict[str, Any] | None:
    """The pix2pix ``ModelConfig`` fields a generator state dict implies, or None if it is not one."""
    first = state.get("model.model.0.weight")
    if first is not None and first.dim() == 4 and first.shape[-1] == 4:
        depth = max(k.split(".").count("model") for k in state) - 1
        up = state.get("model.model.3.weight")
        if depth not in _UNET_NAMES or up is None or up.dim() != 4:
            return None
        return {
            "netG": _UNET_NAMES[depth],
            "ngf": int(first.shape[0]),
            "input_nc": int(first.shape[1]),
            "output_nc": int(up.shape[1]),  # ConvTranspose2d weight: (in, out, k, k)
            "norm": _norm(state, "model.model.1.model.1"),
        }
    first = state.get("model.1.weight")
    if first is not None and first.dim() == 4 and first.shape[-1] == 7:
        blocks = {k.split(".")[1] for k in state if re.match(r"model\.\d+\.conv_block\.", k)}
        convs = sorted((int(k.split(".")[1]), v) for k, v in state.items() if re.fullmatch(r"model\.\d+\.weight", k) and v.dim() == 4)
        if len(blocks) not in _RESNET_NAMES or not convs:
            return None
        return {
            "netG": _RESNET_NAMES[len(blocks)],
            "ngf": int(first.shape[0]),
            "input_nc": int(first.shape[1]),
            "output_nc": int(convs[-1][1].shape[0]),
            "norm": _norm(state, "model.1"),
            # a residual block's Dropout shifts its second conv from conv_block.5 to conv_block.6
            "no_dropout": any(k.endswith(".conv_block.5.weight") and v.dim() == 4 for k, v in state.items()),
        }
    return None


def describe(state: Mapping[str, torch.Tensor]) -> str:
    return describe_architecture(state) or f"an unrecognised key layout (first keys: {', '.join(list(state)[:4])})"


def is_discriminator(state: Mapping[str, torch.Tensor]) -> bool:
    d = describe_architecture(state) or ""
    return "PatchGAN" in d or "discriminator" in d

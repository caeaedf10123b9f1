"""The reference implementation's formats: generator checkpoints and published releases.

Checkpoints (``latest_net_G.pth``, ``<epoch>_net_G.pth``, the released ``<name>.pth``): the reference saves
``net.module.cpu().state_dict()`` (or ``net.cpu().state_dict()`` on CPU) with ``torch.save``; the keys are
those of ``styleengine.nn``'s generators (``model.model.0.weight`` ...).  Files are read with
``torch.load(weights_only=True)`` only (:func:`styleengine.nn.load_reference_state_dict`), then loaded with
:func:`styleengine.nn.load_into`, which checks keys and shapes first and drops the stale InstanceNorm
statistics that PyTorch < 0.4 saved, as the reference's loader does.

The architecture is read off the checkpoint (netG, ngf, norm, input_nc, output_nc, and for ResNets whether
there is dropout, which shifts the block's layer indices; a U-Net's dropout has no trace in its weights, so
``no_dropout`` keeps its configured value there): model-config fields the caller did not set explicitly
follow the checkpoint; explicitly set fields that contradict it are an error naming both architectures.

Published generators (:data:`PRETRAINED`, ``engine pull pix2pix:<name>``): the URLs the reference's
``scripts/download_pix2pix_model.sh`` fetches (``http://efrosgans.eecs.berkeley.edu/pix2pix/models-pytorch/
<name>.pth``; edges2shoes, sat2map, map2sat, facades_label2photo, day2night), all ``unet_256``, ngf 64, batch
norm, dropout, trained at 256 x 256.  ``direction`` records which side of the paired dataset was the input
(facades and maps store photo | label and satellite | map, hence BtoA for label2photo and map2sat).
**sha256 is None for every entry**: the reference publishes no checksums and this machine cannot download
the files to compute them, so the download is not integrity-checked (and the server speaks plain http).
``engine pull`` prints and records the sha256 of what it downloaded; pin it here once verified.

torch is imported inside the functions, so the style class can declare :data:`PRETRAINED` without it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from styleengine.pull import Pretrained

if TYPE_CHECKING:
    import torch

    from .style import Pix2Pix

log = logging.getLogger(__name__)

URL = "http://efrosgans.eecs.berkeley.edu/pix2pix/models-pytorch/{name}.pth"

_MODELS: dict[str, tuple[str, str]] = {
    "facades_label2photo": ("BtoA", "CMP Facades: architectural label map -> photo"),
    "sat2map": ("AtoB", "Google Maps: aerial photo -> map"),
    "map2sat": ("BtoA", "Google Maps: map -> aerial photo"),
    "edges2shoes": ("AtoB", "UT Zappos50K: edge map -> shoe photo"),
    "day2night": ("AtoB", "Transient Attributes: daytime -> night-time scene"),
}

PRETRAINED: dict[str, Pretrained] = {
    name: Pretrained(
        url=URL.format(name=name),
        sha256=None,  # not published by the reference; see the module docstring
        description=desc,
        model_config={"netG": "unet_256", "ngf": 64, "norm": "batch", "input_nc": 3, "output_nc": 3, "direction": direction},
        filename=f"{name}.pth",
    )
    for name, (direction, desc) in _MODELS.items()
}

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
    from styleengine.nn import describe_architecture

    return describe_architecture(state) or f"an unrecognised key layout (first keys: {', '.join(list(state)[:4])})"


def is_discriminator(state: Mapping[str, torch.Tensor]) -> bool:
    from styleengine.nn import describe_architecture

    d = describe_architecture(state) or ""
    return "PatchGAN" in d or "discriminator" in d


def import_generator(style: Pix2Pix, path: Path) -> None:
    """Load a reference generator checkpoint into ``style`` (see the module docstring)."""
    from styleengine.nn import CheckpointMismatchError, load_into, load_reference_state_dict

    state = load_reference_state_dict(path)
    if is_discriminator(state):
        raise ValueError(
            f"{path} holds a discriminator ({describe(state)}); inference needs the generator "
            "checkpoint (latest_net_G.pth / <epoch>_net_G.pth)"
        )
    found = detect_generator(state)
    if found is None:
        raise ValueError(f"{path} is not a pix2pix generator checkpoint: it looks like {describe(state)}")
    if found["norm"] not in ("batch", "instance"):
        raise ValueError(f"{path}: generator with norm={found['norm']!r} ({describe(state)}); pix2pix supports batch and instance")
    cfg = style.model_config
    explicit = cfg.model_fields_set
    conflicts = {k: v for k, v in found.items() if k in explicit and getattr(cfg, k) != v}
    if conflicts:
        wanted = ", ".join(f"{k}={getattr(cfg, k)}" for k in conflicts)
        raise CheckpointMismatchError(
            f"{path} holds {describe(state)}, but the model config asks for {wanted}; "
            f"use {', '.join(f'{k}={v}' for k, v in conflicts.items())} (or leave them unset)",
            missing=[], unexpected=[], shape_mismatches=[], hint=describe(state),
        )
    updates = {k: v for k, v in found.items() if getattr(cfg, k) != v}
    if updates:
        log.info("%s: using the checkpoint's architecture %s", path, updates)
        style.model_config = style.ModelConfig(**{k: getattr(cfg, k) for k in explicit}, **updates)
        style._modules = None
    try:
        load_into(style.modules["generator"], state)
    except CheckpointMismatchError as exc:
        raise CheckpointMismatchError(
            f"{path}: {exc}", missing=exc.missing, unexpected=exc.unexpected, shape_mismatches=exc.shape_mismatches, hint=exc.hint
        ) from exc
    style.discriminator_state = None

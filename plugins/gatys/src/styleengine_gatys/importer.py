"""The references' formats: loss-network weights for the optimisation, published fast_neural_style models.

* Loss networks (:func:`read_loss_network`): torchvision's ``vgg19-dcbb9e9d.pth`` / ``vgg16-397923af.pth``
  (or any ``features.N.*`` state dict, classifier keys ignored) and AdaIN's ``vgg_normalised.pth`` (the
  Caffe VGG-19 with its preprocessing folded into a 1x1 convolution), told apart by their keys.
* fast_neural_style models (:func:`load_fast_neural_style`): ``candy.pth``, ``mosaic.pth``,
  ``rain_princess.pth``, ``udnie.pth`` from the pytorch/examples release (``saved_models.zip``): state dicts
  of ``TransformerNet`` whose older files carry ``in*.running_mean`` / ``running_var`` keys (InstanceNorm
  used to track statistics); the reference deletes them before loading (``re.search(r'in\\d+\\.running_(mean|var)$',
  k)``) and so do we.  Anything else that does not fit is an error naming the keys.

Every ``.pth`` is read with ``torch.load(weights_only=True)`` (:func:`styleengine.nn.vgg.read_state_dict`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

    from .nets import TransformerNet

VGG_ENV = "STYLEENGINE_GATYS_VGG"
VGG_HOW_TO_GET = (
    "download torchvision's VGG-19 weights (https://download.pytorch.org/models/vgg19-dcbb9e9d.pth) or AdaIN's "
    "vgg_normalised.pth (`engine pull adain`) and pass --weights PATH (or set STYLEENGINE_GATYS_VGG=PATH)"
)
FAST_RELEASE = "https://www.dropbox.com/s/lrvwfehqdcxoza8/saved_models.zip?dl=1"
FAST_HOW_TO_GET = (
    f"import a published fast_neural_style model (candy/mosaic/rain_princess/udnie .pth from {FAST_RELEASE}, "
    "pytorch/examples fast_neural_style/download_saved_models.py) with --variant fast --weights FILE.pth"
)
#: The reference's own filter for stale InstanceNorm statistics keys.
STALE_KEY = re.compile(r"in\d+\.running_(mean|var)$")


def detect_layout(state: Mapping[str, Any]) -> tuple[str, str]:
    """``(network, layout)`` of a VGG state dict: ``("vgg19" | "vgg16", "torchvision")`` or ``("vgg19", "normalised")``."""
    if "0.weight" in state and tuple(state["0.weight"].shape) == (3, 3, 1, 1):
        return "vgg19", "normalised"
    if "features.0.weight" in state:
        return ("vgg19" if "features.34.weight" in state else "vgg16"), "torchvision"
    keys = ", ".join(list(state)[:5])
    raise ValueError(
        f"not a VGG state dict (keys {keys} ...): expected torchvision's features.N.* or AdaIN's vgg_normalised 0.weight ...; "
        f"{VGG_HOW_TO_GET}"
    )


def read_loss_network(path_or_state: Any) -> tuple[str, str, nn.Module]:
    """``(network, layout, module)``: the optimisation's loss network from a torchvision VGG-19/16 or a
    ``vgg_normalised`` file (or state dict)."""
    from styleengine.nn.vgg import load_torchvision_vgg16, load_torchvision_vgg19, load_vgg_normalised, read_state_dict

    state = read_state_dict(path_or_state)
    network, layout = detect_layout(state)
    if layout == "normalised":
        vgg: nn.Module = load_vgg_normalised(state)
    elif network == "vgg19":
        vgg = load_torchvision_vgg19(state, upto="relu5_4")
    else:
        vgg = load_torchvision_vgg16(state, upto="relu5_3")
    return network, layout, vgg.requires_grad_(False)


def strip_stale_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict without InstanceNorm running statistics (the reference's ``del state_dict[k]`` loop)."""
    return {k: v for k, v in state.items() if not STALE_KEY.search(k)}


def load_fast_neural_style(path_or_state: Any) -> TransformerNet:
    """A :class:`~styleengine_gatys.nets.TransformerNet` from a fast_neural_style ``.pth`` (or its state dict,
    or a safetensors file), stale running-stat keys dropped."""
    from styleengine.nn.vgg import load_state_dict_checked, read_state_dict

    from .nets import TransformerNet

    state = strip_stale_keys(read_state_dict(path_or_state))
    hint = ""
    if any(k.startswith("features.") for k in state) or "0.weight" in state:
        hint = "These look like VGG weights: the loss network of the default variant, not a fast network"
    source = "state dict" if isinstance(path_or_state, Mapping) else str(path_or_state)
    net = TransformerNet()
    load_state_dict_checked(net, state, source=source, hint=hint)
    return net


def export_fast_neural_style(net: TransformerNet, path: str | Path) -> Path:
    """Write ``net`` as a reference-format ``.pth`` state dict (what fast_neural_style's ``eval`` loads)."""
    import io

    import torch

    from styleengine.io import atomic_write_bytes

    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, buf)
    return atomic_write_bytes(path, buf.getvalue())

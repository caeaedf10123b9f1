"""Multi-scale PatchGAN discriminators, as BicycleGAN's ``D_NLayersMulti`` (junyanz/BicycleGAN,
``models/networks.py``), and the adversarial loss summed over their outputs.

``num_D`` PatchGANs (:class:`~styleengine.nn.NLayerDiscriminator` layers, every conv with a bias) look at
the image at 1, 1/2, 1/4 ... of its size (``AvgPool2d(3, stride 2, padding 1, count_include_pad=False)``
between scales); the i-th has ``round(ndf / 2**i)`` filters.  Keys as the reference: ``model.<i>.*`` for
``num_D = 1`` (and ``forward`` returns one map), ``model_0.*``, ``model_1.*`` ... and a ``down`` pool
otherwise (``forward`` returns a list of maps, finest first).

Names (the reference's ``--netD``): ``basic_256_multi`` (3 layers per scale, 70x70 patches at full size),
``basic_128_multi`` (2 layers); ``basic_256`` / ``basic_128`` are single-scale.
"""

from __future__ import annotations

import torch
from torch import nn

from .gan_loss import GANLoss
from .norm import get_norm_layer
from .patchgan import NLayerDiscriminator

__all__ = ["MULTISCALE_D_NAMES", "MultiscaleDiscriminator", "define_D_multiscale", "multiscale_gan_loss"]

#: ``netD`` name → (layers per scale, multi-scale?).
MULTISCALE_D_NAMES: dict[str, tuple[int, bool]] = {
    "basic_256_multi": (3, True),
    "basic_128_multi": (2, True),
    "basic_256": (3, False),
    "basic_128": (2, False),
}


def _patchgan_layers(input_nc: int, ndf: int, n_layers: int, norm: str) -> nn.Sequential:
    return NLayerDiscriminator(input_nc, ndf, n_layers, get_norm_layer(norm), bias=True).model


class MultiscaleDiscriminator(nn.Module):
    """``D_NLayersMulti``: see the module docstring.  ``norm="none"`` uses identities (the reference
    cannot build that case at all)."""

    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 3, norm: str = "instance", num_D: int = 1) -> None:
        super().__init__()
        if num_D < 1:
            raise ValueError(f"num_D must be >= 1, got {num_D}")
        self.num_D = num_D
        if num_D == 1:
            self.model = _patchgan_layers(input_nc, ndf, n_layers, norm)
            return
        self.add_module("model_0", _patchgan_layers(input_nc, ndf, n_layers, norm))
        self.down = nn.AvgPool2d(3, stride=2, padding=[1, 1], count_include_pad=False)
        for i in range(1, num_D):
            self.add_module(f"model_{i}", _patchgan_layers(input_nc, int(round(ndf / (2**i))), n_layers, norm))

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if self.num_D == 1:
            return self.model(x)
        out = []
        for i in range(self.num_D):
            out.append(getattr(self, f"model_{i}")(x))
            if i != self.num_D - 1:
                x = self.down(x)
        return out


def define_D_multiscale(input_nc: int, ndf: int = 64, netD: str = "basic_256_multi", norm: str = "instance", num_Ds: int = 2) -> nn.Module:
    """Build a discriminator by the reference BicycleGAN's names (uninitialised).  The single-scale names
    ignore ``num_Ds`` and are the reference's ``D_NLayers``: a plain PatchGAN whose convs follow the norm's
    bias rule (no bias before batch norm)."""
    if netD not in MULTISCALE_D_NAMES:
        raise ValueError(f"unknown discriminator netD={netD!r}; valid choices: {', '.join(MULTISCALE_D_NAMES)}")
    n_layers, multi = MULTISCALE_D_NAMES[netD]
    if not multi:
        return NLayerDiscriminator(input_nc, ndf, n_layers, get_norm_layer(norm))
    return MultiscaleDiscriminator(input_nc, ndf, n_layers, norm, num_Ds)


def multiscale_gan_loss(criterion: GANLoss, predictions: torch.Tensor | list[torch.Tensor], target_is_real: bool) -> torch.Tensor:
    """The reference BicycleGAN's ``GANLoss.__call__``: the sum of the loss over the predictions.

    Faithful to its one quirk: it iterates whatever it is given, so a single map (``num_D = 1``) is iterated
    over its *batch*, giving the sum of per-sample losses rather than their mean."""
    items = predictions if isinstance(predictions, list | tuple) else list(predictions.unbind(0))
    return sum((criterion(p, target_is_real) for p in items), torch.zeros((), device=items[0].device))

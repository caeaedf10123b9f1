"""PatchGAN discriminators (Isola et al., pix2pix, CVPR 2017), laid out as the reference
implementation (junyanz/pytorch-CycleGAN-and-pix2pix, ``models/networks.py``).

A PatchGAN classifies overlapping patches rather than the whole image: its output is a map of
logits, one per receptive field.  With ``n_layers=3`` (the reference's ``basic`` discriminator) each
output sees a 70x70 input patch.  The discriminators end with a raw conv (no sigmoid):
:class:`~styleengine.nn.gan_loss.GANLoss` applies the sigmoid inside ``BCEWithLogitsLoss`` for the
vanilla objective, and LSGAN / WGAN-GP want unbounded scores anyway.
"""

from __future__ import annotations

import torch
from torch import nn

from .norm import NormLayer, use_bias

__all__ = ["NLayerDiscriminator", "PixelDiscriminator"]


class NLayerDiscriminator(nn.Module):
    """PatchGAN with ``n_layers`` stride-2 4x4 convolutions after the first, then two stride-1 ones.

    ``model`` layout: ``Conv(input_nc -> ndf, s2, bias), LeakyReLU(0.2)``; for ``n = 1 .. n_layers-1``
    ``Conv(s2), Norm, LeakyReLU``; then ``Conv(s1), Norm, LeakyReLU`` and ``Conv(-> 1, s1, bias)``.
    Channel multipliers double per layer and are capped at 8 (``ndf * min(2**n, 8)``).

    ``bias``: whether the normalised convs have a bias; by default the norm decides (pix2pix's rule,
    :func:`~styleengine.nn.use_bias`).  BicycleGAN's discriminators keep every bias (``bias=True``).
    """

    def __init__(
        self,
        input_nc: int,
        ndf: int = 64,
        n_layers: int = 3,
        norm_layer: NormLayer = nn.BatchNorm2d,
        bias: bool | None = None,
    ) -> None:
        super().__init__()
        if n_layers < 0:
            raise ValueError(f"n_layers must be >= 0, got {n_layers}")
        bias = use_bias(norm_layer) if bias is None else bias
        kw, padw = 4, 1
        layers: list[nn.Module] = [
            nn.Conv2d(input_nc, ndf, kernel_size=kw, stride=2, padding=padw),
            nn.LeakyReLU(0.2, True),
        ]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, kernel_size=kw, stride=2, padding=padw, bias=bias),
                norm_layer(ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
        prev, mult = mult, min(2**n_layers, 8)
        layers += [
            nn.Conv2d(ndf * prev, ndf * mult, kernel_size=kw, stride=1, padding=padw, bias=bias),
            norm_layer(ndf * mult),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * mult, 1, kernel_size=kw, stride=1, padding=padw),
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self.model(input)


class PixelDiscriminator(nn.Module):
    """1x1 PatchGAN ("PixelGAN"): classifies every pixel independently.

    ``net`` layout: ``Conv1x1(input_nc -> ndf, bias), LeakyReLU(0.2), Conv1x1(-> 2ndf), Norm,
    LeakyReLU(0.2), Conv1x1(-> 1)``; the last two convs follow the norm bias rule (the reference
    applies it to the output conv too).
    """

    def __init__(
        self, input_nc: int, ndf: int = 64, norm_layer: NormLayer = nn.BatchNorm2d
    ) -> None:
        super().__init__()
        bias = use_bias(norm_layer)
        self.net = nn.Sequential(
            nn.Conv2d(input_nc, ndf, kernel_size=1, stride=1, padding=0),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf, ndf * 2, kernel_size=1, stride=1, padding=0, bias=bias),
            norm_layer(ndf * 2),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 2, 1, kernel_size=1, stride=1, padding=0, bias=bias),
        )

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self.net(input)

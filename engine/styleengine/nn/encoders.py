"""Image encoders to a latent code, as BicycleGAN's ``E_ResNet`` and ``E_NLayers`` (junyanz/BicycleGAN,
``models/networks.py``), with the reference's module layout so its ``latest_net_E.pth`` loads as-is.

Both end in ``AvgPool2d(8)`` and a linear layer on the flattened map, so they accept only inputs whose
last feature map pools to 1 x 1: the size they were built for (``*_256``: 256 x 256, ``*_128``: 128 x 128;
larger inputs give a longer flattened vector and the linear layer refuses it).  With ``vae_like`` (what
BicycleGAN always uses) they return ``(mu, logvar)`` from two heads ``fc`` and ``fcVar``.

* :class:`ResNetEncoder` (``resnet_128`` / ``resnet_256``: 4 / 5 blocks): a 4x4 stride-2 conv, then
  ``n_blocks - 1`` :class:`BasicBlock` s (pre-activation residual blocks that halve the size, widths
  ``nef * min(4, n)``), the activation, the pool.  Keys: ``conv.0.weight``, ``conv.1.conv.2.weight``,
  ``conv.1.shortcut.1.weight``, ``fc.0.weight``, ``fcVar.0.weight``.
* :class:`ConvEncoder` (``conv_128`` / ``conv_256``: 4 / 5 layers): stride-2 4x4 convs (widths
  ``nef * min(2**n, 4)``) each followed by norm and activation.  Keys ``conv.<i>.weight``, ``fc.0.*``.

The reference always builds them with LeakyReLU(0.2) (its ``define_E`` ignores ``--nl``) and with the
global ``--norm``; ``norm="none"`` leaves the norm layers out.  Every conv and linear layer has a bias.
"""

from __future__ import annotations

import torch
from torch import nn

from .zunet import NlFactory, NormFactory, get_nonlinearity, optional_norm_layer

__all__ = ["ENCODER_NAMES", "BasicBlock", "ConvEncoder", "ResNetEncoder", "define_E", "encoder_input_size"]

#: ``netE`` name → (kind, blocks or layers, the one input side it accepts).
ENCODER_NAMES: dict[str, tuple[str, int, int]] = {
    "resnet_256": ("resnet", 5, 256),
    "resnet_128": ("resnet", 4, 128),
    "conv_256": ("conv", 5, 256),
    "conv_128": ("conv", 4, 128),
}


def encoder_input_size(netE: str) -> int:
    """The input side (height = width) an encoder accepts."""
    if netE not in ENCODER_NAMES:
        raise ValueError(f"unknown encoder netE={netE!r}; valid choices: {', '.join(ENCODER_NAMES)}")
    return ENCODER_NAMES[netE][2]


def _conv3x3(in_planes: int, out_planes: int) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=1, padding=1, bias=True)


class BasicBlock(nn.Module):
    """``conv(x) + shortcut(x)``, halving height and width.

    ``conv``: ``[Norm, NL, Conv3x3(in -> in), Norm, NL, [Conv3x3(in -> out), AvgPool2]]`` (norms left out for
    ``norm="none"``); ``shortcut``: ``[AvgPool2, Conv1x1(in -> out)]``.
    """

    def __init__(self, inplanes: int, outplanes: int, norm_layer: NormFactory | None = None, nl_layer: NlFactory | None = None) -> None:
        super().__init__()
        nl_layer = nl_layer or get_nonlinearity("lrelu")
        layers: list[nn.Module] = []
        if norm_layer is not None:
            layers.append(norm_layer(inplanes))
        layers += [nl_layer(), _conv3x3(inplanes, inplanes)]
        if norm_layer is not None:
            layers.append(norm_layer(inplanes))
        layers += [nl_layer(), nn.Sequential(_conv3x3(inplanes, outplanes), nn.AvgPool2d(kernel_size=2, stride=2))]
        self.conv = nn.Sequential(*layers)
        self.shortcut = nn.Sequential(
            nn.AvgPool2d(kernel_size=2, stride=2), nn.Conv2d(inplanes, outplanes, kernel_size=1, stride=1, padding=0, bias=True)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.shortcut(x)


class _Heads(nn.Module):
    """``conv`` to a pooled 1 x 1 map, then ``fc`` (and ``fcVar`` when ``vae_like``)."""

    vae_like: bool
    conv: nn.Sequential
    fc: nn.Sequential

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        flat = self.conv(x).view(x.size(0), -1)
        mu = self.fc(flat)
        if self.vae_like:
            return mu, self.fcVar(flat)
        return mu


class ResNetEncoder(_Heads):
    """``E_ResNet``: ``forward(x) -> (mu, logvar)`` (or ``mu`` alone without ``vae_like``)."""

    def __init__(
        self, input_nc: int = 3, output_nc: int = 1, nef: int = 64, n_blocks: int = 4, norm_layer: NormFactory | None = None,
        nl_layer: NlFactory | None = None, vae_like: bool = True,
    ) -> None:
        super().__init__()
        if n_blocks < 2:
            raise ValueError(f"ResNetEncoder needs n_blocks >= 2, got {n_blocks}")
        nl_layer = nl_layer or get_nonlinearity("lrelu")
        self.vae_like = vae_like
        layers: list[nn.Module] = [nn.Conv2d(input_nc, nef, kernel_size=4, stride=2, padding=1, bias=True)]
        out_ndf = nef
        for n in range(1, n_blocks):
            in_ndf, out_ndf = nef * min(4, n), nef * min(4, n + 1)
            layers.append(BasicBlock(in_ndf, out_ndf, norm_layer, nl_layer))
        layers += [nl_layer(), nn.AvgPool2d(8)]
        # registered in the reference's order (fc, fcVar, conv): xavier initialisation then draws alike
        self.fc = nn.Sequential(nn.Linear(out_ndf, output_nc))
        if vae_like:
            self.fcVar = nn.Sequential(nn.Linear(out_ndf, output_nc))
        self.conv = nn.Sequential(*layers)


class ConvEncoder(_Heads):
    """``E_NLayers``: ``forward(x) -> (mu, logvar)`` (or ``mu`` alone without ``vae_like``)."""

    def __init__(
        self, input_nc: int, output_nc: int = 1, nef: int = 64, n_layers: int = 3, norm_layer: NormFactory | None = None,
        nl_layer: NlFactory | None = None, vae_like: bool = True,
    ) -> None:
        super().__init__()
        nl_layer = nl_layer or get_nonlinearity("lrelu")
        self.vae_like = vae_like
        layers: list[nn.Module] = [nn.Conv2d(input_nc, nef, kernel_size=4, stride=2, padding=1), nl_layer()]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 4)
            layers.append(nn.Conv2d(nef * prev, nef * mult, kernel_size=4, stride=2, padding=1))
            if norm_layer is not None:
                layers.append(norm_layer(nef * mult))
            layers.append(nl_layer())
        layers.append(nn.AvgPool2d(8))
        self.conv = nn.Sequential(*layers)
        self.fc = nn.Sequential(nn.Linear(nef * mult, output_nc))
        if vae_like:
            self.fcVar = nn.Sequential(nn.Linear(nef * mult, output_nc))


def define_E(input_nc: int, nz: int, nef: int = 64, netE: str = "resnet_256", norm: str = "instance", vae_like: bool = True) -> nn.Module:
    """Build an encoder by the reference's names (uninitialised; BicycleGAN: ``xavier``, gain 0.02).  The
    activation is LeakyReLU(0.2) whatever the generator's ``nl``, as in the reference."""
    kind, depth, _ = ENCODER_NAMES[netE] if netE in ENCODER_NAMES else (None, 0, 0)
    norm_layer, nl_layer = optional_norm_layer(norm), get_nonlinearity("lrelu")
    if kind == "resnet":
        return ResNetEncoder(input_nc, nz, nef, n_blocks=depth, norm_layer=norm_layer, nl_layer=nl_layer, vae_like=vae_like)
    if kind == "conv":
        return ConvEncoder(input_nc, nz, nef, n_layers=depth, norm_layer=norm_layer, nl_layer=nl_layer, vae_like=vae_like)
    raise ValueError(f"unknown encoder netE={netE!r}; valid choices: {', '.join(ENCODER_NAMES)}")

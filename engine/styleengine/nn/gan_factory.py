"""Build the reference generators and discriminators by name, as the reference implementation's
``define_G`` / ``define_D`` (junyanz/pytorch-CycleGAN-and-pix2pix, ``models/networks.py``).

Differences from the reference functions, all deliberate:

* no ``gpu_ids``: nothing is moved to a device or wrapped in ``DataParallel`` (device placement is
  the caller's; a DataParallel wrapper would also prefix every state-dict key with ``module.``);
* ``define_G``'s ``use_dropout`` defaults to True, which is what the pix2pix command line passes
  (``not --no_dropout``); the reference function's own default is False;
* unknown names raise ``ValueError`` listing the valid ones (the reference raises
  ``NotImplementedError``);
* an optional ``generator`` makes the initialisation reproducible (see :func:`.init.init_weights`).
"""

from __future__ import annotations

import torch
from torch import nn

from .init import init_weights
from .norm import get_norm_layer
from .patchgan import NLayerDiscriminator, PixelDiscriminator
from .resnet import ResnetGenerator
from .unet import UnetGenerator

__all__ = ["GENERATOR_NAMES", "DISCRIMINATOR_NAMES", "define_G", "define_D"]

#: Valid ``netG`` names.
GENERATOR_NAMES: tuple[str, ...] = ("unet_256", "unet_128", "resnet_9blocks", "resnet_6blocks")
#: Valid ``netD`` names.
DISCRIMINATOR_NAMES: tuple[str, ...] = ("basic", "n_layers", "pixel")


def define_G(
    input_nc: int,
    output_nc: int,
    ngf: int,
    netG: str,
    norm: str = "batch",
    use_dropout: bool = True,
    init_type: str = "normal",
    init_gain: float = 0.02,
    *,
    generator: torch.Generator | None = None,
) -> nn.Module:
    """Build and initialise a generator: ``unet_256`` / ``unet_128`` (U-Net with 8 / 7
    downsamplings) or ``resnet_9blocks`` / ``resnet_6blocks`` (ResNet generator, reflect padding)."""
    norm_layer = get_norm_layer(norm)
    if netG == "unet_256":
        net: nn.Module = UnetGenerator(input_nc, output_nc, 8, ngf, norm_layer, use_dropout)
    elif netG == "unet_128":
        net = UnetGenerator(input_nc, output_nc, 7, ngf, norm_layer, use_dropout)
    elif netG == "resnet_9blocks":
        net = ResnetGenerator(input_nc, output_nc, ngf, norm_layer, use_dropout, n_blocks=9)
    elif netG == "resnet_6blocks":
        net = ResnetGenerator(input_nc, output_nc, ngf, norm_layer, use_dropout, n_blocks=6)
    else:
        raise ValueError(
            f"unknown generator netG={netG!r}; valid choices: {', '.join(GENERATOR_NAMES)}"
        )
    return init_weights(net, init_type, init_gain, generator=generator)


def define_D(
    input_nc: int,
    ndf: int,
    netD: str,
    n_layers_D: int = 3,
    norm: str = "batch",
    init_type: str = "normal",
    init_gain: float = 0.02,
    *,
    generator: torch.Generator | None = None,
) -> nn.Module:
    """Build and initialise a discriminator: ``basic`` (70x70 PatchGAN, 3 layers), ``n_layers``
    (PatchGAN with ``n_layers_D`` layers) or ``pixel`` (1x1 PixelGAN).  For pix2pix, ``input_nc`` is
    ``input_nc + output_nc`` of the generator (D sees the condition and the image stacked)."""
    norm_layer = get_norm_layer(norm)
    if netD == "basic":
        net: nn.Module = NLayerDiscriminator(input_nc, ndf, n_layers=3, norm_layer=norm_layer)
    elif netD == "n_layers":
        net = NLayerDiscriminator(input_nc, ndf, n_layers=n_layers_D, norm_layer=norm_layer)
    elif netD == "pixel":
        net = PixelDiscriminator(input_nc, ndf, norm_layer=norm_layer)
    else:
        raise ValueError(
            f"unknown discriminator netD={netD!r}; valid choices: {', '.join(DISCRIMINATOR_NAMES)}"
        )
    return init_weights(net, init_type, init_gain, generator=generator)

"""The pix2pix U-Net generator (Isola et al., "Image-to-Image Translation with Conditional Adversarial
Networks", CVPR 2017), laid out module for module as the reference implementation
(junyanz/pytorch-CycleGAN-and-pix2pix, ``models/networks.py``) so that its checkpoints load as-is.

The U-Net is built recursively from the inside out: each :class:`UnetSkipConnectionBlock` holds
``down -> submodule -> up`` in one ``nn.Sequential`` called ``model`` and concatenates its input to
its output (the skip connection), except the outermost block, which returns its output alone.  The
nesting gives the reference state-dict keys, e.g. ``model.model.0.weight`` (outermost down-conv),
``model.model.1.model.1.weight`` (second block's down-conv), ``model.model.3.weight`` (outermost
up-conv).  Layout of the ``model`` sequential per block kind:

* outermost: ``[Conv, submodule, ReLU, ConvTranspose(bias), Tanh]``
* middle:    ``[LeakyReLU(0.2), Conv, Norm, submodule, ReLU, ConvTranspose, Norm, (Dropout(0.5))]``
* innermost: ``[LeakyReLU(0.2), Conv, ReLU, ConvTranspose, Norm]`` (no norm at the 1x1 bottleneck)

All convolutions are 4x4, stride 2, padding 1.  Dropout sits at the end of the ``num_downs - 5``
``ngf*8`` blocks around the innermost one, i.e. in the three innermost decoder stages of ``unet_256``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .norm import NormLayer, use_bias
from .per_sample_norm import MaskDropout, Shape, unet_dropout_mask_shapes

__all__ = ["UnetSkipConnectionBlock", "UnetGenerator"]


class UnetSkipConnectionBlock(nn.Module):
    """One U-Net level: ``x -> cat([x, up(submodule(down(x)))])`` (outermost: no concatenation).

    ``outer_nc`` is the channel count this level outputs (and, unless ``input_nc`` is given, takes),
    ``inner_nc`` the channel count of its down-convolution.  ``use_dropout`` adds a
    :class:`~styleengine.nn.per_sample_norm.MaskDropout` (p = 0.5) after the up-path of a middle block,
    as the reference does; it is ignored for the innermost and outermost blocks.
    """

    def __init__(
        self,
        outer_nc: int,
        inner_nc: int,
        input_nc: int | None = None,
        submodule: UnetSkipConnectionBlock | None = None,
        outermost: bool = False,
        innermost: bool = False,
        norm_layer: NormLayer = nn.BatchNorm2d,
        use_dropout: bool = False,
    ) -> None:
        super().__init__()
        self.outermost = outermost
        self.innermost = innermost
        self.has_dropout = bool(use_dropout) and not outermost and not innermost
        bias = use_bias(norm_layer)
        if input_nc is None:
            input_nc = outer_nc
        if not innermost and submodule is None:
            raise ValueError("only the innermost U-Net block may have no submodule")

        down_conv = nn.Conv2d(input_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=bias)
        if outermost:
            # The output layer keeps its bias whatever the norm: nothing normalises after it.
            up_conv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1)
            layers: list[nn.Module] = [down_conv, submodule, nn.ReLU(True), up_conv, nn.Tanh()]
        elif innermost:
            up_conv = nn.ConvTranspose2d(
                inner_nc, outer_nc, kernel_size=4, stride=2, padding=1, bias=bias
            )
            layers = [
                nn.LeakyReLU(0.2, True),
                down_conv,
                nn.ReLU(True),
                up_conv,
                norm_layer(outer_nc),
            ]
        else:
            up_conv = nn.ConvTranspose2d(
                inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1, bias=bias
            )
            layers = [
                nn.LeakyReLU(0.2, True),
                down_conv,
                norm_layer(inner_nc),
                submodule,
                nn.ReLU(True),
                up_conv,
                norm_layer(outer_nc),
            ]
            if self.has_dropout:
                layers.append(MaskDropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(
        self, x: torch.Tensor, dropout_masks: Sequence[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """``dropout_masks``: masks for the blocks inside this one, then (if it has dropout) its
        own, i.e. innermost first, the order in which the dropout layers run."""
        if dropout_masks is None:
            y = self.model(x)
        else:
            own = dropout_masks[-1] if self.has_dropout else None
            inner = dropout_masks[:-1] if self.has_dropout else dropout_masks
            y = x
            for layer in self.model:
                if isinstance(layer, UnetSkipConnectionBlock):
                    y = layer(y, inner)
                elif isinstance(layer, MaskDropout):
                    y = layer(y, own)
                else:
                    y = layer(y)
        if self.outermost:
            return y
        return torch.cat([x, y], 1)


class UnetGenerator(nn.Module):
    """U-Net generator with ``num_downs`` stride-2 downsamplings (``unet_256``: 8, ``unet_128``: 7).

    An input of ``2**num_downs`` pixels reaches a 1x1 bottleneck; height and width must be multiples
    of ``2**num_downs``.  Channel widths: ``ngf, 2ngf, 4ngf`` then ``8ngf`` for every deeper level.

    ``forward(x, dropout_masks)``: with ``dropout_masks=None`` dropout behaves as ``nn.Dropout``
    (train/eval as usual).  Otherwise pass one mask per dropout layer in module order (which is also
    execution order: innermost, smallest map first), shaped as :meth:`dropout_mask_shapes` says
    (see :func:`~styleengine.nn.per_sample_norm.make_dropout_masks`); they are applied whatever the
    module's mode.
    """

    def __init__(
        self,
        input_nc: int,
        output_nc: int,
        num_downs: int,
        ngf: int = 64,
        norm_layer: NormLayer = nn.BatchNorm2d,
        use_dropout: bool = False,
    ) -> None:
        super().__init__()
        if num_downs < 5:
            raise ValueError(f"UnetGenerator needs num_downs >= 5, got {num_downs}")
        self.input_nc, self.output_nc = input_nc, output_nc
        self.num_downs, self.ngf, self.use_dropout = num_downs, ngf, bool(use_dropout)

        block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, norm_layer=norm_layer, innermost=True)
        for _ in range(num_downs - 5):
            block = UnetSkipConnectionBlock(
                ngf * 8, ngf * 8, submodule=block, norm_layer=norm_layer, use_dropout=use_dropout
            )
        block = UnetSkipConnectionBlock(ngf * 4, ngf * 8, submodule=block, norm_layer=norm_layer)
        block = UnetSkipConnectionBlock(ngf * 2, ngf * 4, submodule=block, norm_layer=norm_layer)
        block = UnetSkipConnectionBlock(ngf, ngf * 2, submodule=block, norm_layer=norm_layer)
        self.model = UnetSkipConnectionBlock(
            output_nc, ngf, input_nc=input_nc, submodule=block, outermost=True, norm_layer=norm_layer
        )

    @property
    def num_dropout_masks(self) -> int:
        """How many masks ``forward`` expects when given explicit dropout masks."""
        return self.num_downs - 5 if self.use_dropout else 0

    def dropout_mask_shapes(self, batch: int, height: int, width: int) -> list[Shape]:
        """Shapes of the explicit dropout masks for a ``batch x input_nc x height x width`` input."""
        if not self.use_dropout:
            return []
        return unet_dropout_mask_shapes(self.num_downs, self.ngf, batch, height, width)

    def forward(
        self, x: torch.Tensor, dropout_masks: Sequence[torch.Tensor] | None = None
    ) -> torch.Tensor:
        if dropout_masks is not None and len(dropout_masks) != self.num_dropout_masks:
            raise ValueError(
                f"expected {self.num_dropout_masks} dropout mask(s), got {len(dropout_masks)}"
            )
        return self.model(x, dropout_masks)

"""The ResNet generator used by CycleGAN (and pix2pix with ``--netG resnet_*``), after Johnson et al.,
"Perceptual Losses for Real-Time Style Transfer and Super-Resolution" (ECCV 2016), laid out as the
reference implementation (junyanz/pytorch-CycleGAN-and-pix2pix, ``models/networks.py``) so that its
checkpoints load as-is.

``model`` is one flat ``nn.Sequential``::

    ReflectionPad(3), Conv7x7(input_nc -> ngf), Norm, ReLU,
    2 x [Conv3x3 stride 2 (doubling channels), Norm, ReLU],
    n_blocks x ResnetBlock(4 ngf),
    2 x [ConvTranspose3x3 stride 2, output_padding 1 (halving channels), Norm, ReLU],
    ReflectionPad(3), Conv7x7(ngf -> output_nc, with bias), Tanh

so e.g. the first conv is ``model.1.weight`` and, for 9 blocks, the last one ``model.26.weight``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .norm import NormLayer, use_bias
from .per_sample_norm import MaskDropout, Shape, resnet_dropout_mask_shapes

__all__ = ["PADDING_TYPES", "ResnetBlock", "ResnetGenerator"]

#: Valid ``padding_type`` values.
PADDING_TYPES: tuple[str, ...] = ("reflect", "replicate", "zero")


def _padding(padding_type: str) -> tuple[list[nn.Module], int]:
    """Explicit padding layer(s) and the conv's own padding for a 3x3 conv that keeps the size."""
    if padding_type == "reflect":
        return [nn.ReflectionPad2d(1)], 0
    if padding_type == "replicate":
        return [nn.ReplicationPad2d(1)], 0
    if padding_type == "zero":
        return [], 1
    raise ValueError(
        f"unknown padding_type {padding_type!r}; valid choices: {', '.join(PADDING_TYPES)}"
    )


class ResnetBlock(nn.Module):
    """Residual block ``x + conv_block(x)``.

    ``conv_block`` is ``[Pad, Conv3x3, Norm, ReLU, (Dropout(0.5)), Pad, Conv3x3, Norm]``; with
    ``padding_type="zero"`` the pad layers are absent and the convs pad by 1 themselves (the
    sequential's indices shift accordingly, as in the reference).
    """

    def __init__(
        self,
        dim: int,
        padding_type: str,
        norm_layer: NormLayer,
        use_dropout: bool,
        use_bias: bool,
    ) -> None:
        super().__init__()
        self.has_dropout = bool(use_dropout)
        pad, p = _padding(padding_type)
        layers: list[nn.Module] = [
            *pad,
            nn.Conv2d(dim, dim, kernel_size=3, padding=p, bias=use_bias),
            norm_layer(dim),
            nn.ReLU(True),
        ]
        if use_dropout:
            layers.append(MaskDropout(0.5))
        pad, p = _padding(padding_type)
        layers += [*pad, nn.Conv2d(dim, dim, kernel_size=3, padding=p, bias=use_bias), norm_layer(dim)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, dropout_mask: torch.Tensor | None = None) -> torch.Tensor:
        if dropout_mask is None:
            return x + self.conv_block(x)
        y = x
        for layer in self.conv_block:
            y = layer(y, dropout_mask) if isinstance(layer, MaskDropout) else layer(y)
        return x + y


class ResnetGenerator(nn.Module):
    """ResNet generator: 2 downsamplings, ``n_blocks`` residual blocks (6 or 9 in the reference
    names ``resnet_6blocks`` / ``resnet_9blocks``), 2 upsamplings.

    ``forward(x, dropout_masks)``: as :class:`~styleengine.nn.unet.UnetGenerator`, one mask per
    residual block (when built with ``use_dropout``), shaped as :meth:`dropout_mask_shapes` says.
    """

    def __init__(
        self,
        input_nc: int,
        output_nc: int,
        ngf: int = 64,
        norm_layer: NormLayer = nn.BatchNorm2d,
        use_dropout: bool = False,
        n_blocks: int = 6,
        padding_type: str = "reflect",
    ) -> None:
        if n_blocks < 0:
            raise ValueError(f"n_blocks must be >= 0, got {n_blocks}")
        super().__init__()
        self.input_nc, self.output_nc, self.ngf = input_nc, output_nc, ngf
        self.n_blocks, self.use_dropout = n_blocks, bool(use_dropout)
        bias = use_bias(norm_layer)

        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(input_nc, ngf, kernel_size=7, padding=0, bias=bias),
            norm_layer(ngf),
            nn.ReLU(True),
        ]
        n_downsampling = 2
        for i in range(n_downsampling):
            c = ngf * 2**i
            layers += [
                nn.Conv2d(c, c * 2, kernel_size=3, stride=2, padding=1, bias=bias),
                norm_layer(c * 2),
                nn.ReLU(True),
            ]
        dim = ngf * 2**n_downsampling
        layers += [
            ResnetBlock(dim, padding_type, norm_layer, use_dropout=use_dropout, use_bias=bias)
            for _ in range(n_blocks)
        ]
        for i in range(n_downsampling):
            c = ngf * 2 ** (n_downsampling - i)
            layers += [
                nn.ConvTranspose2d(
                    c, c // 2, kernel_size=3, stride=2, padding=1, output_padding=1, bias=bias
                ),
                norm_layer(c // 2),
                nn.ReLU(True),
            ]
        layers += [
            nn.ReflectionPad2d(3),
            nn.Conv2d(ngf, output_nc, kernel_size=7, padding=0),
            nn.Tanh(),
        ]
        self.model = nn.Sequential(*layers)

    @property
    def num_dropout_masks(self) -> int:
        """How many masks ``forward`` expects when given explicit dropout masks."""
        return self.n_blocks if self.use_dropout else 0

    def dropout_mask_shapes(self, batch: int, height: int, width: int) -> list[Shape]:
        """Shapes of the explicit dropout masks for a ``batch x input_nc x height x width`` input."""
        if not self.use_dropout:
            return []
        return resnet_dropout_mask_shapes(self.n_blocks, self.ngf, batch, height, width)

    def forward(
        self, x: torch.Tensor, dropout_masks: Sequence[torch.Tensor] | None = None
    ) -> torch.Tensor:
        if dropout_masks is None:
            return self.model(x)
        if len(dropout_masks) != self.num_dropout_masks:
            raise ValueError(
                f"expected {self.num_dropout_masks} dropout mask(s), got {len(dropout_masks)}"
            )
        masks = iter(dropout_masks)
        for layer in self.model:
            if isinstance(layer, ResnetBlock):
                x = layer(x, next(masks) if layer.has_dropout else None)
            else:
                x = layer(x)
        return x

"""U-Net generators that take a latent code ``z`` beside the image, as BicycleGAN's (Zhu et al., "Toward
Multimodal Image-to-Image Translation", NeurIPS 2017), laid out module for module as the reference
implementation (junyanz/BicycleGAN, ``models/networks.py``) so its checkpoints load as-is.

Two ways of injecting ``z`` (the reference's ``--where_add``):

* :class:`UnetAddAllGenerator` (``G_Unet_add_all``, ``where_add=all``, the reference default): ``z`` is
  tiled to the feature map's size and concatenated to the input of **every** down-convolution.  Each level
  is a :class:`UnetBlockWithZ` holding ``down`` / ``submodule`` / ``up``; keys read ``model.down.0.weight``
  (outermost down-conv), ``model.submodule.down.1.weight``, ``model.up.1.weight`` ...
* :class:`UnetAddInputGenerator` (``G_Unet_add_input``, ``where_add=input``): ``z`` is tiled and
  concatenated to the image only.  Each level is a :class:`UnetBlock` with one ``model`` sequential, so
  keys read ``model.model.0.weight``, ``model.model.1.model.1.weight`` as in pix2pix.

Where these differ from pix2pix's :class:`~styleengine.nn.UnetGenerator`, on purpose (it is the
reference's code, not an accident of ours): every convolution keeps its bias whatever the norm; the
up-path non-linearity is chosen (``nl``: relu / lrelu / elu); the up-sampling is a 4x4 transposed conv
(``basic``) or bilinear x2 + reflect pad + 3x3 conv (``bilinear``); ``norm="none"`` *omits* the norm
layers (indices shift) instead of placing identities; a block concatenates ``[up-path, skip]`` (pix2pix:
``[skip, up-path]``); dropout (p = 0.5) sits after the up-path of the ``num_downs - 5`` blocks around
the innermost one.

In-place activations are kept as the reference has them, and with them one of its quirks: in
``G_Unet_add_input`` a block's first layer (an in-place LeakyReLU) overwrites the block's input, so the
skip connection carries ``LeakyReLU(x)``, not ``x``; in ``G_Unet_add_all`` the input is concatenated
with ``z`` first, so the skip carries ``x`` itself.  Trained checkpoints expect exactly that.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import nn

from .norm import get_norm_layer

__all__ = [
    "NL_KINDS",
    "UPSAMPLE_KINDS",
    "WHERE_ADD",
    "UnetAddAllGenerator",
    "UnetAddInputGenerator",
    "UnetBlock",
    "UnetBlockWithZ",
    "define_G_z",
    "get_nonlinearity",
    "optional_norm_layer",
    "tile_z",
    "upsample_layers",
]

#: Valid ``nl`` values (the reference's ``get_non_linearity``).
NL_KINDS: tuple[str, ...] = ("relu", "lrelu", "elu")
#: Valid ``upsample`` values (the reference's ``upsampleLayer``).
UPSAMPLE_KINDS: tuple[str, ...] = ("basic", "bilinear")
#: Valid ``where_add`` values.
WHERE_ADD: tuple[str, ...] = ("all", "input")

NormFactory = Callable[[int], nn.Module]
NlFactory = Callable[[], nn.Module]


def get_nonlinearity(kind: str = "relu") -> NlFactory:
    """A factory of in-place activations: ``relu``, ``lrelu`` (slope 0.2) or ``elu``."""
    if kind == "relu":
        return functools.partial(nn.ReLU, inplace=True)
    if kind == "lrelu":
        return functools.partial(nn.LeakyReLU, negative_slope=0.2, inplace=True)
    if kind == "elu":
        return functools.partial(nn.ELU, inplace=True)
    raise ValueError(f"unknown non-linearity {kind!r}; valid choices: {', '.join(NL_KINDS)}")


def optional_norm_layer(kind: str) -> NormFactory | None:
    """The reference BicycleGAN's norm factory: as :func:`~styleengine.nn.get_norm_layer`, but ``"none"``
    gives ``None`` (the blocks then leave the norm layer out rather than placing an identity)."""
    return None if kind == "none" else get_norm_layer(kind)


def upsample_layers(in_channels: int, out_channels: int, kind: str = "basic") -> list[nn.Module]:
    """x2 up-sampling: a 4x4 stride-2 transposed conv, or bilinear x2, reflect pad 1 and a 3x3 conv."""
    if kind == "basic":
        return [nn.ConvTranspose2d(in_channels, out_channels, kernel_size=4, stride=2, padding=1)]
    if kind == "bilinear":
        return [
            nn.Upsample(scale_factor=2, mode="bilinear"),
            nn.ReflectionPad2d(1),
            nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=0),
        ]
    raise ValueError(f"unknown upsample {kind!r}; valid choices: {', '.join(UPSAMPLE_KINDS)}")


def tile_z(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``cat([x, z broadcast to x's height and width], 1)``."""
    n, c = z.size(0), z.size(1)
    return torch.cat([x, z.view(n, c, 1, 1).expand(n, c, x.size(2), x.size(3))], 1)


def _level(
    input_nc: int, outer_nc: int, inner_nc: int, *, outermost: bool, innermost: bool, norm_layer: NormFactory | None,
    nl_layer: NlFactory, use_dropout: bool, upsample: str,
) -> tuple[list[nn.Module], list[nn.Module]]:
    """The down and up layers of one U-Net level (the submodule goes between them)."""
    down_conv = nn.Conv2d(input_nc, inner_nc, kernel_size=4, stride=2, padding=1)
    if outermost:
        return [down_conv], [nl_layer(), *upsample_layers(inner_nc * 2, outer_nc, upsample), nn.Tanh()]
    down: list[nn.Module] = [nn.LeakyReLU(0.2, True), down_conv]
    if innermost:
        up = [nl_layer(), *upsample_layers(inner_nc, outer_nc, upsample)]
    else:
        if norm_layer is not None:
            down.append(norm_layer(inner_nc))
        up = [nl_layer(), *upsample_layers(inner_nc * 2, outer_nc, upsample)]
    if norm_layer is not None:
        up.append(norm_layer(outer_nc))
    if use_dropout and not innermost:
        up.append(nn.Dropout(0.5))
    return down, up


class UnetBlock(nn.Module):
    """One level of ``G_Unet_add_input``: ``cat([model(x), x])`` (outermost: ``model(x)``), where ``model``
    is ``down + [submodule] + up`` in one sequential."""

    def __init__(
        self, input_nc: int, outer_nc: int, inner_nc: int, submodule: UnetBlock | None = None, *, outermost: bool = False,
        innermost: bool = False, norm_layer: NormFactory | None = None, nl_layer: NlFactory | None = None,
        use_dropout: bool = False, upsample: str = "basic",
    ) -> None:
        super().__init__()
        if not innermost and submodule is None:
            raise ValueError("only the innermost U-Net block may have no submodule")
        self.outermost = outermost
        down, up = _level(
            input_nc, outer_nc, inner_nc, outermost=outermost, innermost=innermost, norm_layer=norm_layer,
            nl_layer=nl_layer or get_nonlinearity("relu"), use_dropout=use_dropout, upsample=upsample,
        )
        self.model = nn.Sequential(*down, *([] if innermost else [submodule]), *up)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([self.model(x), x], 1)


class UnetBlockWithZ(nn.Module):
    """One level of ``G_Unet_add_all``: ``z`` is tiled onto the level's input before its down-conv;
    returns ``cat([up(submodule(down(cat(x, z)), z)), x])`` (outermost: no concatenation)."""

    def __init__(
        self, input_nc: int, outer_nc: int, inner_nc: int, nz: int = 0, submodule: UnetBlockWithZ | None = None, *,
        outermost: bool = False, innermost: bool = False, norm_layer: NormFactory | None = None,
        nl_layer: NlFactory | None = None, use_dropout: bool = False, upsample: str = "basic",
    ) -> None:
        super().__init__()
        if not innermost and submodule is None:
            raise ValueError("only the innermost U-Net block may have no submodule")
        self.outermost, self.innermost, self.nz = outermost, innermost, nz
        down, up = _level(
            input_nc + nz, outer_nc, inner_nc, outermost=outermost, innermost=innermost, norm_layer=norm_layer,
            nl_layer=nl_layer or get_nonlinearity("relu"), use_dropout=use_dropout, upsample=upsample,
        )
        self.down = nn.Sequential(*down)
        self.submodule = submodule
        self.up = nn.Sequential(*up)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        x_and_z = tile_z(x, z) if self.nz > 0 else x
        if self.innermost:
            return torch.cat([self.up(self.down(x_and_z)), x], 1)
        assert self.submodule is not None
        y = self.up(self.submodule(self.down(x_and_z), z))
        return y if self.outermost else torch.cat([y, x], 1)


def _check(num_downs: int, upsample: str) -> None:
    if num_downs < 6:
        raise ValueError(f"the z U-Nets need num_downs >= 6, got {num_downs}")
    if upsample not in UPSAMPLE_KINDS:
        raise ValueError(f"unknown upsample {upsample!r}; valid choices: {', '.join(UPSAMPLE_KINDS)}")


def _ladder(make: Callable[..., nn.Module], input_nc: int, output_nc: int, num_downs: int, ngf: int, use_dropout: bool) -> nn.Module:
    """The reference's nesting, inside out: the innermost level, ``num_downs - 5`` ``8 ngf`` levels with
    dropout, then ``8 -> 4 -> 2 -> 1 ngf`` and the outermost.  ``make(input_nc, outer_nc, inner_nc, submodule, **flags)``."""
    block = make(ngf * 8, ngf * 8, ngf * 8, None, innermost=True)
    for _ in range(num_downs - 5):
        block = make(ngf * 8, ngf * 8, ngf * 8, block, use_dropout=use_dropout)
    for outer, inner in ((4, 8), (2, 4), (1, 2)):
        block = make(ngf * outer, ngf * outer, ngf * inner, block)
    return make(input_nc, output_nc, ngf, block, outermost=True)


class _ZUnet(nn.Module):
    """The constructor both z U-Nets share; subclasses say how a level is built (:meth:`level`)."""

    #: Whether z is tiled onto the image (so the outermost level takes ``input_nc + nz`` channels).
    z_on_input: bool = False

    def __init__(
        self, input_nc: int, output_nc: int, nz: int, num_downs: int, ngf: int = 64, *, norm_layer: NormFactory | None = None,
        nl_layer: NlFactory | None = None, use_dropout: bool = False, upsample: str = "basic",
    ) -> None:
        super().__init__()
        _check(num_downs, upsample)
        self.nz = nz
        kw = {"norm_layer": norm_layer, "nl_layer": nl_layer, "upsample": upsample}
        outer_in = input_nc + (nz if self.z_on_input else 0)
        self.model = _ladder(lambda i, o, n, sub, **flags: self.level(i, o, n, sub, **kw, **flags), outer_in, output_nc, num_downs, ngf, use_dropout)

    def level(self, input_nc: int, outer_nc: int, inner_nc: int, submodule: nn.Module | None, **kw: object) -> nn.Module:
        raise NotImplementedError


class UnetAddAllGenerator(_ZUnet):
    """``G_Unet_add_all``: ``forward(x, z)``, ``z`` of shape ``(N, nz)`` added at every level.

    Height and width must be multiples of ``2**num_downs`` (``unet_256``: 8 levels, ``unet_128``: 7).
    """

    def level(self, input_nc: int, outer_nc: int, inner_nc: int, submodule: nn.Module | None, **kw: object) -> nn.Module:
        return UnetBlockWithZ(input_nc, outer_nc, inner_nc, self.nz, submodule, **kw)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.model(x, z)


class UnetAddInputGenerator(_ZUnet):
    """``G_Unet_add_input``: ``forward(x, z)``, ``z`` tiled onto the image only (``nz = 0``: no ``z``)."""

    z_on_input = True

    def level(self, input_nc: int, outer_nc: int, inner_nc: int, submodule: nn.Module | None, **kw: object) -> nn.Module:
        return UnetBlock(input_nc, outer_nc, inner_nc, submodule, **kw)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        if self.nz > 0:
            if z is None:
                raise ValueError(f"this generator takes a latent code z of {self.nz} values")
            x = tile_z(x, z)
        return self.model(x)


#: ``netG`` name → number of down-samplings.
Z_UNET_DEPTH: dict[str, int] = {"unet_256": 8, "unet_128": 7}


def define_G_z(
    input_nc: int, output_nc: int, nz: int, ngf: int = 64, netG: str = "unet_256", norm: str = "instance", nl: str = "relu",
    use_dropout: bool = False, where_add: str = "all", upsample: str = "basic",
) -> nn.Module:
    """Build a z-injecting U-Net by the reference's names (uninitialised: see
    :func:`~styleengine.nn.init_weights`; BicycleGAN uses ``xavier`` with gain 0.02).  ``nz = 0`` forces
    ``where_add="input"``, as the reference does."""
    if netG not in Z_UNET_DEPTH:
        raise ValueError(f"unknown generator netG={netG!r}; valid choices: {', '.join(Z_UNET_DEPTH)}")
    if where_add not in WHERE_ADD:
        raise ValueError(f"unknown where_add {where_add!r}; valid choices: {', '.join(WHERE_ADD)}")
    cls = UnetAddAllGenerator if where_add == "all" and nz > 0 else UnetAddInputGenerator
    return cls(
        input_nc, output_nc, nz, Z_UNET_DEPTH[netG], ngf, norm_layer=optional_norm_layer(norm), nl_layer=get_nonlinearity(nl),
        use_dropout=use_dropout, upsample=upsample,
    )

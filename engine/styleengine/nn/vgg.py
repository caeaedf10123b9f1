"""VGG-19 / VGG-16 feature extractors in plain torch, in the two layouts style-transfer checkpoints use.

* :class:`NormalisedVGG` -- the ``vgg_normalised`` network of AdaIN (Huang & Belongie, ICCV 2017;
  reference code xunhuang1995/AdaIN-style and its port naoto0804/pytorch-AdaIN, ``net.py``).  It is a
  single ``nn.Sequential`` of 53 modules whose indices match the reference, so ``vgg_normalised.pth``
  loads with its own keys (``0.weight``, ``2.weight``, ``5.weight``, ... ``51.weight``).  Module 0 is
  a 1x1 convolution 3 -> 3 that folds the Caffe preprocessing (RGB -> BGR, x255, minus the BGR mean
  pixel) into the network, so it takes RGB images in [0, 1].  Every 3x3 convolution is unpadded and
  preceded by a 1-pixel reflection pad; max-pools are 2x2/2 in ceil mode; there is no fifth pool.
* :class:`VGG19Features` -- the ImageNet VGG-19 feature stack in torchvision's layout
  (``features.0.weight`` ... ``features.34.weight``): 3x3 convolutions with zero padding 1, 2x2/2
  floor-mode max-pools (optionally average pools, as Gatys et al. suggest), and the ImageNet
  mean/std normalisation of [0, 1] RGB input applied inside ``forward``.

* :class:`VGG16Features` -- the same for ImageNet VGG-16 (configuration "D": 2, 2, 3, 3, 3 convolutions per
  block; ``features.0`` ... ``features.30``), the loss network of Johnson et al.'s fast style transfer
  (pytorch/examples ``fast_neural_style``), imported by :func:`load_torchvision_vgg16`.

All expose named taps (``conv1_1``, ``relu1_1``, ..., ``relu5_4``, ``pool1`` ...) and stop computing
at the deepest tap asked for.  The importers :func:`load_vgg_normalised` and
:func:`load_torchvision_vgg19` read legacy ``.pth`` files only through ``torch.load(weights_only=True)``
(or safetensors) and fail with a ``ValueError`` that names missing and unexpected keys.  Nothing here
imports torchvision.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Union

import torch
from torch import nn

from ..weights import read_state_dict  # re-exported: the one reader of state-dict files

__all__ = [
    "VGG_MEAN",
    "VGG_STD",
    "ADAIN_TAPS",
    "NORMALISED_VGG_LAYER_NAMES",
    "VGG19_LAYER_NAMES",
    "NormalisedVGG",
    "VGG16_LAYER_NAMES",
    "VGG19Features",
    "VGG16Features",
    "vgg19_classifier",
    "load_vgg_normalised",
    "load_torchvision_vgg19",
    "load_torchvision_vgg16",
    "read_state_dict",
    "load_state_dict_checked",
]

#: ImageNet per-channel mean of RGB images in [0, 1] (the statistics torchvision's VGG was trained with).
VGG_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
#: ImageNet per-channel standard deviation of RGB images in [0, 1].
VGG_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

#: The four layers AdaIN reads: the reference splits its encoder right after each of them.
ADAIN_TAPS: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")

#: Convolutions per block of VGG-19 (configuration "E"), and each block's channel count.
_BLOCKS: tuple[tuple[int, int], ...] = ((64, 2), (128, 2), (256, 4), (512, 4), (512, 4))
#: The same for VGG-16 (configuration "D").
_BLOCKS16: tuple[tuple[int, int], ...] = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))

StateDict = Mapping[str, torch.Tensor]
PathOrState = Union[str, os.PathLike, StateDict]


def _layer_names(*, normalised: bool, blocks: Sequence[tuple[int, int]] = _BLOCKS) -> tuple[str, ...]:
    """Names of the modules, by index, of either layout.

    ``normalised``: ``preprocess``, then per conv ``pad/conv/relu``; pools after blocks 1-4 only.
    torchvision: per conv ``conv/relu``; a pool after each of the five blocks.
    """
    names: list[str] = ["preprocess"] if normalised else []
    for b, (_, n_convs) in enumerate(blocks, start=1):
        for i in range(1, n_convs + 1):
            if normalised:
                names.append(f"pad{b}_{i}")
            names += [f"conv{b}_{i}", f"relu{b}_{i}"]
        if not normalised or b < len(blocks):
            names.append(f"pool{b}")
    return tuple(names)


#: Module names of :class:`NormalisedVGG` by ``nn.Sequential`` index
#: (``[3] == "relu1_1"``, ``[30] == "relu4_1"``, ``[52] == "relu5_4"``).
NORMALISED_VGG_LAYER_NAMES: tuple[str, ...] = _layer_names(normalised=True)
#: Module names of :class:`VGG19Features` ``.features`` by index (``[1] == "relu1_1"``, ``[36] == "pool5"``).
VGG19_LAYER_NAMES: tuple[str, ...] = _layer_names(normalised=False)
#: Module names of :class:`VGG16Features` ``.features`` by index (``[3] == "relu1_2"``, ``[22] == "relu4_3"``).
VGG16_LAYER_NAMES: tuple[str, ...] = _layer_names(normalised=False, blocks=_BLOCKS16)


def _index_of(name: str, names: Sequence[str], what: str) -> int:
    try:
        return names.index(name)
    except ValueError:
        close = difflib.get_close_matches(name, names, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"{what}: unknown layer {name!r}{hint} (layers: {', '.join(names)})") from None


def _build_layers(*, normalised: bool, pool: str, depth: int, blocks: Sequence[tuple[int, int]] = _BLOCKS) -> list[nn.Module]:
    """The modules of either layout, the first ``depth`` of them."""
    layers: list[nn.Module] = [nn.Conv2d(3, 3, kernel_size=1)] if normalised else []
    in_ch = 3
    for b, (out_ch, n_convs) in enumerate(blocks, start=1):
        for _ in range(n_convs):
            if normalised:
                layers += [nn.ReflectionPad2d(1), nn.Conv2d(in_ch, out_ch, kernel_size=3)]
            else:
                layers.append(nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1))
            # Not in-place: a ``conv*`` tap must survive the ReLU that follows it.
            layers.append(nn.ReLU())
            in_ch = out_ch
        if not normalised or b < len(blocks):
            if normalised:
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2, padding=0, ceil_mode=True))
            elif pool == "max":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers.append(nn.AvgPool2d(kernel_size=2, stride=2))
    return layers[:depth]


def _swap_pool(layer: nn.Module, pool: str | None) -> nn.Module:
    """``layer`` itself, or for a pooling layer and ``pool`` ``"max"``/``"avg"`` the other kind with the same
    kernel, stride, padding and ceil mode (pooling has no parameters, so the same weights serve both)."""
    if pool is None or not isinstance(layer, nn.MaxPool2d | nn.AvgPool2d):
        return layer
    if pool == "max" and not isinstance(layer, nn.MaxPool2d):
        return nn.MaxPool2d(layer.kernel_size, layer.stride, layer.padding, ceil_mode=layer.ceil_mode)
    if pool == "avg" and not isinstance(layer, nn.AvgPool2d):
        return nn.AvgPool2d(layer.kernel_size, layer.stride, layer.padding, ceil_mode=layer.ceil_mode)
    return layer


def _run_taps(layers: Sequence[nn.Module], names: Sequence[str], x: torch.Tensor, taps: str | Iterable[str], what: str,
              pool: str | None = None) -> dict[str, torch.Tensor]:
    """Run ``layers`` in order on ``x`` up to the deepest of ``taps``; return each tap's output by name.

    ``names`` are the full-depth layout's names, so a valid layer beyond a truncated network is
    reported as too deep rather than unknown.  ``pool`` (``"max"`` / ``"avg"``) overrides the kind of
    every pooling layer for this call.
    """
    if pool not in (None, "max", "avg"):
        raise ValueError(f"{what}: pool must be 'max' or 'avg', not {pool!r}")
    taps = [taps] if isinstance(taps, str) else list(dict.fromkeys(taps))
    if not taps:
        raise ValueError(f"{what}: no taps requested")
    wanted = {_index_of(t, names, what): t for t in taps}
    last = max(wanted)
    if last >= len(layers):
        raise ValueError(
            f"{what}: layer {wanted[last]!r} is deeper than this network, "
            f"which stops at {names[len(layers) - 1]!r}"
        )
    out: dict[str, torch.Tensor] = {}
    for i in range(last + 1):
        x = _swap_pool(layers[i], pool)(x)
        if i in wanted:
            out[wanted[i]] = x
    return {t: out[t] for t in taps}


class NormalisedVGG(nn.Sequential):
    """AdaIN's ``vgg_normalised`` encoder, module for module as the reference (see the module docstring).

    ``upto`` builds only the layers up to and including the named one; the reference keeps the first 31
    modules (``upto="relu4_1"``) for AdaIN.  Calling the module runs every layer it has, as the
    reference's sliced ``nn.Sequential`` does.  Input: RGB in [0, 1], ``(N, 3, H, W)``.
    """

    def __init__(self, upto: str = "relu5_4") -> None:
        depth = _index_of(upto, NORMALISED_VGG_LAYER_NAMES, "NormalisedVGG") + 1
        super().__init__(*_build_layers(normalised=True, pool="max", depth=depth))
        self.layer_names: tuple[str, ...] = NORMALISED_VGG_LAYER_NAMES[:depth]

    @property
    def last_layer(self) -> str:
        return self.layer_names[-1]

    def truncated(self, upto: str) -> NormalisedVGG:
        """A network made of this one's first layers up to ``upto``, sharing (not copying) their weights.

        Mirrors the reference's ``nn.Sequential(*list(vgg.children())[:31])`` for ``upto="relu4_1"``.
        """
        depth = _index_of(upto, self.layer_names, "NormalisedVGG.truncated") + 1
        new = NormalisedVGG.__new__(NormalisedVGG)
        nn.Sequential.__init__(new, *list(self)[:depth])
        new.layer_names = self.layer_names[:depth]
        return new

    def encode(self, x: torch.Tensor, upto: str = "relu4_1") -> torch.Tensor:
        """The output of layer ``upto`` (default relu4_1, the AdaIN content/style feature)."""
        return _run_taps(self, NORMALISED_VGG_LAYER_NAMES, x, [upto], "NormalisedVGG.encode")[upto]

    def encode_with_taps(self, x: torch.Tensor, taps: str | Iterable[str] = ADAIN_TAPS, *, pool: str | None = None
                         ) -> dict[str, torch.Tensor]:
        """Outputs of several layers in one pass, by name; default relu1_1, relu2_1, relu3_1, relu4_1.

        Equals the reference's ``encode_with_intermediate`` (its ``enc_1``..``enc_4`` slices end at
        exactly these four layers).  ``pool="avg"`` runs the (ceil-mode) pools as average pools.
        """
        return _run_taps(self, NORMALISED_VGG_LAYER_NAMES, x, taps, "NormalisedVGG.encode_with_taps", pool=pool)


class VGG19Features(nn.Module):
    """ImageNet VGG-19 convolutional features in torchvision's layout (``features.N.*`` keys).

    ``normalize``: subtract :data:`VGG_MEAN` and divide by :data:`VGG_STD` in ``forward`` (input then
    is RGB in [0, 1]); ``forward(..., normalize=...)`` overrides it per call.  ``pool``: ``"max"``
    (torchvision) or ``"avg"`` (Gatys et al. report slightly better results with average pooling;
    parameter-free, so the same weights load); ``forward(..., pool=...)`` overrides it per call.
    ``upto`` builds only the layers up to that name.
    """

    _blocks: tuple[tuple[int, int], ...] = _BLOCKS
    _names: tuple[str, ...] = VGG19_LAYER_NAMES

    def __init__(self, *, pool: str = "max", normalize: bool = True, upto: str = "pool5") -> None:
        super().__init__()
        what = type(self).__name__
        if pool not in ("max", "avg"):
            raise ValueError(f"{what}: pool must be 'max' or 'avg', not {pool!r}")
        depth = _index_of(upto, self._names, what) + 1
        self.pool = pool
        self.normalize = normalize
        self.features = nn.Sequential(*_build_layers(normalised=False, pool=pool, depth=depth, blocks=self._blocks))
        self.layer_names: tuple[str, ...] = self._names[:depth]
        self.register_buffer("mean", torch.tensor(VGG_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(VGG_STD).view(1, 3, 1, 1), persistent=False)

    def normalize_input(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / std`` with the ImageNet statistics, for RGB in [0, 1]."""
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def forward(self, x: torch.Tensor, taps: str | Iterable[str] | None = None, *, normalize: bool | None = None,
                pool: str | None = None) -> dict[str, torch.Tensor]:
        """Outputs of the named layers (default: every ``relu*`` layer built), computed in one pass that
        stops at the deepest of them."""
        if self.normalize if normalize is None else normalize:
            x = self.normalize_input(x)
        if taps is None:
            taps = [n for n in self.layer_names if n.startswith("relu")]
        return _run_taps(self.features, self._names, x, taps, type(self).__name__, pool=pool)


class VGG16Features(VGG19Features):
    """ImageNet VGG-16 convolutional features in torchvision's layout (``features.0`` ... ``features.28``
    convolutions, ``features.30`` the fifth pool); otherwise exactly :class:`VGG19Features`.

    fast_neural_style's loss network is this stack up to ``relu4_3`` (its four slices end at ``relu1_2``,
    ``relu2_2``, ``relu3_3``, ``relu4_3``).
    """

    _blocks = _BLOCKS16
    _names = VGG16_LAYER_NAMES


def vgg19_classifier() -> nn.Sequential:
    """torchvision's VGG-19 classifier head (keys ``0``, ``3``, ``6``: 25088 -> 4096 -> 4096 -> 1000).

    The feature extractors never use it; it documents the ``classifier.*`` keys that
    :func:`load_torchvision_vgg19` accepts and ignores.  Build it on the meta device to inspect shapes
    without allocating 123.6 M parameters.
    """
    return nn.Sequential(
        nn.Linear(512 * 7 * 7, 4096), nn.ReLU(), nn.Dropout(),
        nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(),
        nn.Linear(4096, 1000),
    )


# --------------------------------------------------------------------------------------------------
# State-dict reading and checked loading (shared by the VGG and AdaIN importers).


def _natural_key(key: str) -> list[object]:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", key)]


def _short(keys: Sequence[str], n: int = 8) -> str:
    keys = sorted(keys, key=_natural_key)
    more = f", ... ({len(keys) - n} more)" if len(keys) > n else ""
    return "[" + ", ".join(keys[:n]) + more + "]"


def load_state_dict_checked(module: nn.Module, state: StateDict, *, ignore: Iterable[str] = (),
                            source: str = "state dict", hint: str = "") -> nn.Module:
    """Load ``state`` into ``module`` strictly, with a readable ``ValueError`` on any mismatch.

    Keys in ``ignore`` may be present and are dropped.  The error names the missing keys, the
    unexpected keys and any shape mismatches (``hint`` is appended, e.g. "is this the other layout?").
    """
    expected = module.state_dict()
    ignore = set(ignore)
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected and k not in ignore]
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items() if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys {_short(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_short(unexpected)}")
        if shapes:
            parts.append(f"shape mismatches [{'; '.join(shapes[:8])}]")
        message = f"{source} does not fit {type(module).__name__}: " + "; ".join(parts)
        raise ValueError(message + (f". {hint}" if hint else ""))
    module.load_state_dict({k: state[k] for k in expected}, strict=True)
    return module


def _source(path_or_state: PathOrState) -> str:
    return "state dict" if isinstance(path_or_state, Mapping) else str(path_or_state)


def load_vgg_normalised(path_or_state: PathOrState, *, upto: str = "relu5_4") -> NormalisedVGG:
    """Import AdaIN's ``vgg_normalised.pth`` (keys ``0.weight`` ... ``51.bias``) or its safetensors twin.

    With ``upto`` (e.g. ``"relu4_1"``, as the reference uses) only that prefix is built; the file may
    then be the full network (deeper keys are ignored, as the reference's slicing discards them) or
    just the prefix.
    """
    model = NormalisedVGG(upto=upto)
    full_keys = _normalised_full_keys()
    state = read_state_dict(path_or_state)
    hint = ""
    if any(k.startswith("features.") for k in state):
        hint = "These look like torchvision VGG-19 keys; use load_torchvision_vgg19."
    load_state_dict_checked(model, state, ignore=full_keys, source=_source(path_or_state), hint=hint)
    return model


def _normalised_full_keys() -> set[str]:
    with torch.device("meta"):
        return set(NormalisedVGG().state_dict())


def _vgg19_full_keys(cls: type[VGG19Features] | None = None) -> set[str]:
    with torch.device("meta"):
        keys = set((cls or VGG19Features)().state_dict())
        keys |= {f"classifier.{k}" for k in vgg19_classifier().state_dict()}  # same keys for VGG-16's head
    return keys


def load_torchvision_vgg19(path_or_state: PathOrState, *, pool: str = "max", normalize: bool = True,
                           upto: str = "pool5") -> VGG19Features:
    """Import torchvision's ``vgg19`` weights (``vgg19-dcbb9e9d.pth`` or a ``model.state_dict()``).

    ``classifier.*`` keys are accepted and ignored; a file with only ``features.*`` keys loads too.
    Layers deeper than ``upto`` are ignored.  ``pool``/``normalize`` as :class:`VGG19Features`.
    """
    model = VGG19Features(pool=pool, normalize=normalize, upto=upto)
    state = read_state_dict(path_or_state)
    hint = ""
    if "0.weight" in state and tuple(state["0.weight"].shape) == (3, 3, 1, 1):
        hint = "These look like AdaIN vgg_normalised keys; use load_vgg_normalised."
    load_state_dict_checked(model, state, ignore=_vgg19_full_keys(), source=_source(path_or_state), hint=hint)
    return model


def load_torchvision_vgg16(path_or_state: PathOrState, *, pool: str = "max", normalize: bool = True,
                           upto: str = "pool5") -> VGG16Features:
    """Import torchvision's ``vgg16`` weights (``vgg16-397923af.pth`` or a ``model.state_dict()``); as
    :func:`load_torchvision_vgg19`.  A VGG-19 file is refused (its keys run to ``features.34``)."""
    model = VGG16Features(pool=pool, normalize=normalize, upto=upto)
    state = read_state_dict(path_or_state)
    hint = ""
    if "features.34.weight" in state:
        hint = "These look like VGG-19 weights (features.34 exists); use load_torchvision_vgg19."
    elif "0.weight" in state and tuple(state["0.weight"].shape) == (3, 3, 1, 1):
        hint = "These look like AdaIN vgg_normalised keys; use load_vgg_normalised."
    load_state_dict_checked(model, state, ignore=_vgg19_full_keys(VGG16Features), source=_source(path_or_state), hint=hint)
    return model

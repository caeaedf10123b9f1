"""The work AdaIN does *between* its two graphs, in plain torch, so it runs the same on every runtime.

The exported graphs are only the encoder (image -> relu4_1) and the decoder (features -> image).  Everything
else happens here, on the tensors the Sessions return (CPU, or CUDA for GPU sessions):

* the size rule (:func:`working_size`): the short side goes to ``content_size`` / ``style_size`` as the
  references' ``--content_size 512`` (0 keeps the image's size), both sides are rounded to multiples of 8
  (the encoder pools three times, the decoder upsamples three times, so a multiple of 8 comes back at exactly
  its size) and the result is kept inside the graphs' accepted range;
* colour preservation (:func:`styleengine.nn.adain_ops.coral` on the style *image*, before encoding, as
  ``test.py``/``test.lua`` do; it needs an SVD, which is why it is not in a graph);
* AdaIN from cached statistics, style interpolation, the foreground/background mask and the alpha blend
  (:func:`target_features`), with the reference's arithmetic in the reference's order, so a pipeline on torch
  sessions reproduces :class:`~styleengine_adain.net.AdaINNet` bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from styleengine.nn.adain_ops import calc_mean_std, masked_mean_std
from styleengine.preprocess import resize, to_tensor

#: Encoder/decoder sides must be multiples of this (three 2x poolings / upsamplings).
MULTIPLE = 8

Stats = tuple[torch.Tensor, torch.Tensor]


def _round_to(v: float, m: int) -> int:
    return int(math.floor(v / m + 0.5)) * m


def working_size(h: int, w: int, size: int, lo: int, hi: int, multiple: int = MULTIPLE) -> tuple[int, int]:
    """The (height, width) an ``h`` x ``w`` image is processed at.

    1. scale so the short side is ``size`` (``size == 0``: keep the image's scale), keeping the aspect ratio;
    2. if the long side then exceeds ``hi``, scale down so it fits; if the short side is below ``lo``, scale up;
    3. round each side to the nearest multiple of ``multiple`` and clamp it to ``[lo, hi]`` (rounded inwards).
    """
    if h < 1 or w < 1:
        raise ValueError(f"image has no pixels ({w}x{h})")
    lo_m = -(-lo // multiple) * multiple
    hi_m = hi // multiple * multiple
    short, long = min(h, w), max(h, w)
    f = size / short if size > 0 else 1.0
    if long * f > hi_m:
        f = hi_m / long
    if short * f < lo_m:
        f = lo_m / short
    return tuple(min(max(_round_to(v * f, multiple), lo_m), hi_m) for v in (h, w))  # type: ignore[return-value]


def center_crop_square(t: torch.Tensor) -> torch.Tensor:
    """The central ``s`` x ``s`` square of an NCHW tensor, ``s`` the short side (the references' ``--crop``)."""
    h, w = t.shape[-2:]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return t[..., top : top + s, left : left + s]


def prepare_image(img: np.ndarray, size: int, lo: int, hi: int, *, crop: bool = False) -> torch.Tensor:
    """A request image (HxWx3 float in [0, 1]) as a ``(1, 3, H, W)`` tensor at its working size, values in [0, 1]."""
    t = to_tensor(img, (0.0, 1.0))
    if crop:
        t = center_crop_square(t)
    return resize(t, working_size(t.shape[-2], t.shape[-1], size, lo, hi))


def mask_tensor(img: np.ndarray) -> torch.Tensor:
    """A mask image (HxWx3 or HxW in [0, 1]) as ``(1, 1, H, W)`` grey values (mean of the channels)."""
    arr = np.asarray(img, dtype=np.float32)
    if arr.ndim == 3:
        arr = arr.mean(axis=2)
    if arr.ndim != 2:
        raise ValueError(f"mask must be an HxW or HxWx3 image, got shape {arr.shape}")
    return torch.from_numpy(np.ascontiguousarray(arr))[None, None]


def feature_mask(mask: torch.Tensor, size: Sequence[int], device: torch.device | str | None = None) -> torch.Tensor:
    """The mask on the relu4_1 grid: nearest-neighbour resize (Lua ``image.scale(..., 'simple')``), then >= 0.5."""
    small = F.interpolate(mask.float(), size=tuple(size), mode="nearest")
    return (small >= 0.5).to(device) if device is not None else small >= 0.5


def adain(content_feat: torch.Tensor, content_stats: Stats, style_stats: Stats) -> torch.Tensor:
    """AdaIN with precomputed statistics; the same operations, in the same order, as
    :func:`styleengine.nn.adain_ops.adaptive_instance_normalization` (so results are bit-identical)."""
    content_mean, content_std = content_stats
    style_mean, style_std = style_stats
    normalized = (content_feat - content_mean) / content_std
    return normalized * style_std + style_mean


def normalise_weights(weights: Sequence[float] | None, k: int) -> list[float] | None:
    """Interpolation weights divided by their sum (both references do).  ``None`` with one style."""
    if weights is None:
        return None if k == 1 else [1.0 / k] * k
    if len(weights) != k:
        raise ValueError(f"style_weights has {len(weights)} value(s) but the request has {k} style image(s)")
    total = float(sum(weights))
    if total <= 0 or min(weights) < 0:
        raise ValueError(f"style_weights must be non-negative with a positive sum, got {list(weights)}")
    return [float(w) / total for w in weights]


def target_features(
    content_feat: torch.Tensor,
    style_stats: Sequence[Stats],
    *,
    weights: Sequence[float] | None = None,
    mask: torch.Tensor | None = None,
    alpha: float = 1.0,
) -> torch.Tensor:
    """The decoder's input for one request (``content_feat``: ``(1, 512, h, w)``).

    * one style, no weights: ``AdaIN(f(c), f(s))`` (``test.py``'s ``style_transfer``);
    * weights (already normalised): ``sum_k w_k AdaIN(f(c), f(s_k))``, accumulated from zero in order, as
      ``test.py``/``test.lua``;
    * ``mask`` (bool, on the relu4_1 grid): the first style inside the mask and the second outside, each
      AdaIN-ed with the content statistics of its own region only (``test.lua -mask``).  With a single style
      the outside keeps the content features (the foreground alone is stylised);
    * finally ``feat * alpha + f(c) * (1 - alpha)``.
    """
    if not style_stats:
        raise ValueError("at least one style image is needed")
    if mask is not None:
        if len(style_stats) > 2 or weights is not None:
            raise ValueError("a mask takes one style (foreground only) or two (foreground, background), without style_weights")
        mask = mask.to(content_feat.device)
        fg = adain(content_feat, masked_mean_std(content_feat, mask), style_stats[0])
        if len(style_stats) == 2:
            bg = adain(content_feat, masked_mean_std(content_feat, ~mask), style_stats[1])
        else:
            bg = content_feat
        feat = torch.where(mask, fg, bg)
    else:
        content_stats = calc_mean_std(content_feat)
        if weights is None:
            if len(style_stats) != 1:
                raise ValueError(f"{len(style_stats)} styles need interpolation weights")
            feat = adain(content_feat, content_stats, style_stats[0])
        else:
            feat = torch.zeros_like(content_feat)
            for w, stats in zip(weights, style_stats, strict=True):
                feat = feat + w * adain(content_feat, content_stats, stats)
    return feat * alpha + content_feat * (1 - alpha)

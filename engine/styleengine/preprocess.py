"""Bring request images to a size the graphs accept, and the outputs back, as the style's contract says.

Images arrive as float32 HxWx3 RGB in [0, 1] (the decoder's output).  Graph tensors are NCHW in the
contract's value range.  Size policies (``InputContract.size_policy``):

* ``resize``: to the nearest accepted size (rounded to ``size_multiple``, clamped to the graph's Dim
  range), output resized back to the request's size;
* ``pad``: reflect-pad up to the next multiple, output cropped back (no resampling of the content);
* ``fixed``: to ``fixed_size`` square, output resized back;
* ``none``: sizes that do not fit are refused with a message naming the accepted ones.

Resampling is bilinear with antialiasing (torch ``interpolate(antialias=True)``) in both directions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .spec import Dim
from .style import InputContract


class SizeError(ValueError):
    """The image size cannot be served under this contract."""


def to_tensor(img: np.ndarray, value_range: tuple[float, float] = (-1.0, 1.0)) -> torch.Tensor:
    """One HxWx3 float32 image in [0, 1] → a (1, 3, H, W) tensor in ``value_range``."""
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 image, got shape {img.shape}")
    lo, hi = value_range
    t = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32)).permute(2, 0, 1).unsqueeze(0)
    return t * (hi - lo) + lo


def from_tensor(t: torch.Tensor, value_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """One NCHW (N=1) or CHW tensor → HxWx3 float32 in [0, 1] (clipped)."""
    lo, hi = value_range
    if t.ndim == 4:
        t = t[0]
    x = ((t.detach().float().cpu() - lo) / (hi - lo)).clamp(0, 1)
    return x.permute(1, 2, 0).numpy()


def resize(t: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """NCHW ``t`` resized to ``size`` (h, w): bilinear with antialiasing; unchanged when already that size."""
    if tuple(t.shape[-2:]) == tuple(size):
        return t
    return F.interpolate(t, size=size, mode="bilinear", align_corners=False, antialias=True)


def _fit_side(v: int, multiple: int, dim: Dim | None, policy: str) -> int:
    m = max(multiple, dim.multiple_of if dim else 1)
    if policy == "pad":
        target = -(-v // m) * m
    else:
        target = max(m, int(round(v / m)) * m)
    if dim is not None:
        lo = -(-dim.min // m) * m
        hi = dim.max // m * m
        if policy == "pad" and target > hi:
            raise SizeError(f"side {v} needs padding to {target}, above the maximum {dim.max}; resize the image first")
        target = min(max(target, lo), hi)
    return target


@dataclass(frozen=True)
class Fitted:
    tensor: torch.Tensor
    size: tuple[int, int]  # the request's (h, w)
    policy: str
    pad: tuple[int, int] = (0, 0)  # bottom, right


def fit(img: np.ndarray, contract: InputContract, height: Dim | None = None, width: Dim | None = None) -> Fitted:
    """Bring one request image (float32 HxWx3 in [0, 1]) to a (1, 3, H, W) tensor a graph accepts, as the
    contract says: converted to ``contract.value_range``, then sized by ``contract.size_policy`` (``pad``:
    reflect/replicate padding up to the next multiple of ``size_multiple``; ``resize``: to the nearest accepted
    size; ``fixed``: to ``fixed_size``; ``none``: refused unless it fits) and kept within the ``height`` /
    ``width`` Dims of the graph.  Returns :class:`Fitted` (the tensor and what :func:`restore` needs to undo it).

    Raises :class:`SizeError` (one line: the server answers 422) for a size the contract cannot serve."""
    h, w = img.shape[:2]
    if min(h, w) < contract.min_side or max(h, w) > contract.max_side:
        raise SizeError(f"image is {w}x{h}; sides must be within [{contract.min_side}, {contract.max_side}]")
    t = to_tensor(img, contract.value_range)
    policy = contract.size_policy
    if policy == "fixed":
        s = contract.fixed_size or (height.opt if height else 256)
        return Fitted(resize(t, (s, s)), (h, w), policy)
    if policy == "none":
        for v, d in ((h, height), (w, width)):
            if v % contract.size_multiple or (d is not None and not d.accepts(v)):
                raise SizeError(
                    f"image is {w}x{h}; this style needs sides that are multiples of {contract.size_multiple}"
                    + (f" within [{d.min}, {d.max}]" if d else "")
                )
        return Fitted(t, (h, w), policy)
    th = _fit_side(h, contract.size_multiple, height, policy)
    tw = _fit_side(w, contract.size_multiple, width, policy)
    if policy == "pad":
        pb, pr = th - h, tw - w
        if pb or pr:
            mode = "reflect" if pb < h and pr < w else "replicate"
            t = F.pad(t, (0, pr, 0, pb), mode=mode)
        return Fitted(t, (h, w), policy, (pb, pr))
    return Fitted(resize(t, (th, tw)), (h, w), policy)


def restore(out: torch.Tensor, fitted: Fitted) -> torch.Tensor:
    """The output (NCHW) brought back to the request's size: the padding cropped (``pad``) or resized back
    (``resize``, ``fixed``).  Call it on every output before :func:`from_tensor`; an infer that forgets it
    returns padded images (the conformance suite's input-contract check catches that)."""
    h, w = fitted.size
    if fitted.policy == "pad":
        return out[..., :h, :w]
    if fitted.policy == "none":
        return out
    return resize(out, (h, w))

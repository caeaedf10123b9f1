"""Normalisation-layer factories shared by the pix2pix / CycleGAN / BicycleGAN networks.

The reference implementation (junyanz/pytorch-CycleGAN-and-pix2pix, ``models/networks.py``) picks the
normalisation by name and derives from that choice whether convolutions carry a bias:

* ``"batch"``: ``BatchNorm2d`` with learnable affine parameters and running statistics.  The norm's
  own shift makes a conv bias redundant, so convolutions followed by it have ``bias=False``.
* ``"instance"``: ``InstanceNorm2d`` without affine parameters and without running statistics (the
  post-0.4 behaviour; older checkpoints still carry stale running stats, see :mod:`.reference`).
  With no learnable shift after the conv, convolutions keep their bias.
* ``"none"``: an identity placeholder (it keeps the ``nn.Sequential`` indices, hence the state-dict
  keys, identical to the normalised variants).  The reference's bias rule only ever switches the
  bias on for instance norm, so with ``"none"`` convolutions have *no* bias either.  That is an
  accident of the reference, but checkpoints trained that way only load if we keep it.
"""

from __future__ import annotations

import functools
from typing import Callable

from torch import nn

__all__ = ["NORM_KINDS", "NormLayer", "get_norm_layer", "use_bias"]

#: Valid names for :func:`get_norm_layer`.
NORM_KINDS: tuple[str, ...] = ("batch", "instance", "none")

#: A callable mapping a channel count to a normalisation module.
NormLayer = Callable[[int], nn.Module]


def _identity_norm(num_features: int) -> nn.Module:
    """Placeholder used for ``norm="none"``: ignores the channel count, has no parameters."""
    return nn.Identity()


def get_norm_layer(kind: str = "instance") -> NormLayer:
    """Return a factory ``f(num_features) -> nn.Module`` for the named normalisation.

    Raises ``ValueError`` naming the bad choice and the valid ones.
    """
    if kind == "batch":
        return functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True)
    if kind == "instance":
        return functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
    if kind == "none":
        return _identity_norm
    raise ValueError(f"unknown norm {kind!r}; valid choices: {', '.join(NORM_KINDS)}")


def use_bias(norm_layer: NormLayer | type[nn.Module]) -> bool:
    """Whether a conv followed by ``norm_layer`` should have a bias, by the reference's rule.

    True only for instance norm (given as the class itself or a ``functools.partial`` of it); false for
    batch norm and, as in the reference, for the ``"none"`` placeholder.
    """
    target = norm_layer.func if isinstance(norm_layer, functools.partial) else norm_layer
    return isinstance(target, type) and issubclass(target, nn.InstanceNorm2d)

"""Weight initialisation as the reference implementation (junyanz/pytorch-CycleGAN-and-pix2pix,
``models/networks.py: init_weights``); the pix2pix and CycleGAN papers use ``normal`` with gain 0.02.

Rules, applied to every submodule in ``nn.Module.apply`` order (children before parents):

* modules whose class name contains ``Conv`` or ``Linear`` and that have a weight: the weight is drawn
  by ``init_type`` (``normal``: N(0, gain); ``xavier``: Xavier-normal with ``gain``; ``kaiming``:
  Kaiming-normal, fan-in, a=0, gain *ignored* as in the reference; ``orthogonal``: with ``gain``)
  and the bias, if any, is zeroed;
* modules whose class name contains ``BatchNorm2d`` (which includes
  :class:`~styleengine.nn.per_sample_norm.PerSampleBatchNorm2d`): weight ~ N(1, gain), bias 0;
* everything else (instance norm without affine, activations, padding) is left alone.

Matching by class name, as the reference does, means custom blocks named ``*Conv*`` are initialised
too.  The draws come from the global RNG (reproducing the reference after ``torch.manual_seed``) or
from ``generator`` when one is given, so initialisation can be made reproducible without touching
global state.
"""

from __future__ import annotations

import logging

import torch
from torch import nn
from torch.nn import init as _init

__all__ = ["INIT_TYPES", "init_weights"]

log = logging.getLogger(__name__)

#: Valid ``init_type`` values.
INIT_TYPES: tuple[str, ...] = ("normal", "xavier", "kaiming", "orthogonal")


def init_weights(
    net: nn.Module,
    init_type: str = "normal",
    init_gain: float = 0.02,
    generator: torch.Generator | None = None,
) -> nn.Module:
    """Initialise ``net`` in place (see the module docstring) and return it.

    ``generator`` must live on the same device as the weights (build on CPU, initialise, then move).
    Raises ``ValueError`` for an unknown ``init_type`` before touching any weight.
    """
    if init_type not in INIT_TYPES:
        raise ValueError(
            f"unknown init_type {init_type!r}; valid choices: {', '.join(INIT_TYPES)}"
        )
    g = generator

    def init_module(m: nn.Module) -> None:
        name = type(m).__name__
        weight = getattr(m, "weight", None)
        if ("Conv" in name or "Linear" in name) and isinstance(weight, torch.Tensor):
            with torch.no_grad():
                if init_type == "normal":
                    _init.normal_(weight, 0.0, init_gain, generator=g)
                elif init_type == "xavier":
                    _init.xavier_normal_(weight, gain=init_gain, generator=g)
                elif init_type == "kaiming":
                    _init.kaiming_normal_(weight, a=0, mode="fan_in", generator=g)
                else:
                    _init.orthogonal_(weight, gain=init_gain, generator=g)
                bias = getattr(m, "bias", None)
                if isinstance(bias, torch.Tensor):
                    _init.constant_(bias, 0.0)
        elif "BatchNorm2d" in name and isinstance(weight, torch.Tensor):
            with torch.no_grad():
                _init.normal_(weight, 1.0, init_gain, generator=g)
                bias = getattr(m, "bias", None)
                if isinstance(bias, torch.Tensor):
                    _init.constant_(bias, 0.0)

    log.debug("initialising %s with %s (gain %s)", type(net).__name__, init_type, init_gain)
    net.apply(init_module)
    return net

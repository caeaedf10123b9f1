"""Pieces of the reference GAN training scripts (pytorch-CycleGAN-and-pix2pix, BicycleGAN) that every GAN
style's loop uses: the ``linear`` learning-rate policy and freezing a network's parameters."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from torch import nn

__all__ = ["linear_rule", "set_requires_grad"]


def linear_rule(n_epochs: int, n_epochs_decay: int) -> Callable[[int], float]:
    """The references' ``linear`` policy (``epoch_count`` = 1) for ``LambdaLR`` stepped once per epoch:
    factor 1 for ``n_epochs`` epochs (BicycleGAN: ``niter``), then ``1 - k / (n_epochs_decay + 1)`` in the
    k-th decay epoch (``niter_decay``)."""

    def rule(epoch: int) -> float:
        return 1.0 - max(0, epoch + 1 - n_epochs) / float(n_epochs_decay + 1)

    return rule


def set_requires_grad(nets: nn.Module | Iterable[nn.Module | None] | None, flag: bool) -> None:
    """``requires_grad = flag`` on every parameter of ``nets`` (one network, or several; None entries skipped),
    as the references' ``BaseModel.set_requires_grad``."""
    if nets is None:
        return
    for net in [nets] if isinstance(nets, nn.Module) else nets:
        if net is not None:
            for p in net.parameters():
                p.requires_grad = flag

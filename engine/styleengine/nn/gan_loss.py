"""Adversarial objectives, as the reference implementation (junyanz/pytorch-CycleGAN-and-pix2pix,
``models/networks.py``: ``GANLoss`` and ``cal_gradient_penalty``).

* ``vanilla``: the original GAN cross-entropy (Goodfellow et al. 2014) on raw logits, i.e.
  ``BCEWithLogitsLoss`` against a constant target map (pix2pix's default).
* ``lsgan``: least squares (Mao et al. 2017), ``MSELoss`` against the target map (CycleGAN's default).
* ``wgangp``: Wasserstein critic score (Arjovsky et al. 2017; Gulrajani et al. 2017):
  ``-mean(D(x))`` for real targets, ``+mean(D(x))`` for fake ones; pair it with
  :func:`gradient_penalty`.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["GAN_MODES", "GANLoss", "gradient_penalty"]

#: Valid ``mode`` values for :class:`GANLoss`.
GAN_MODES: tuple[str, ...] = ("vanilla", "lsgan", "wgangp")

#: Valid ``type`` values for :func:`gradient_penalty`.
PENALTY_TYPES: tuple[str, ...] = ("real", "fake", "mixed")


class GANLoss(nn.Module):
    """Adversarial loss with the target map built to the prediction's shape.

    ``loss(prediction, target_is_real)``; the discriminator must output raw scores (no sigmoid).
    The target labels are buffers (``real_label`` / ``fake_label``), so ``.to(device)`` moves them.
    """

    def __init__(self, mode: str, target_real: float = 1.0, target_fake: float = 0.0) -> None:
        super().__init__()
        if mode not in GAN_MODES:
            raise ValueError(f"unknown GAN mode {mode!r}; valid choices: {', '.join(GAN_MODES)}")
        self.mode = mode
        self.register_buffer("real_label", torch.tensor(float(target_real)))
        self.register_buffer("fake_label", torch.tensor(float(target_fake)))
        self.loss: nn.Module | None
        if mode == "lsgan":
            self.loss = nn.MSELoss()
        elif mode == "vanilla":
            self.loss = nn.BCEWithLogitsLoss()
        else:
            self.loss = None

    def get_target_tensor(self, prediction: torch.Tensor, target_is_real: bool) -> torch.Tensor:
        """The real or fake label broadcast to ``prediction``'s shape (a view, no allocation)."""
        label = self.real_label if target_is_real else self.fake_label
        return label.to(prediction.dtype).expand_as(prediction)

    def forward(self, prediction: torch.Tensor, target_is_real: bool) -> torch.Tensor:
        if self.mode == "wgangp":
            return -prediction.mean() if target_is_real else prediction.mean()
        assert self.loss is not None
        return self.loss(prediction, self.get_target_tensor(prediction, target_is_real))


def gradient_penalty(
    netD: nn.Module,
    real: torch.Tensor,
    fake: torch.Tensor,
    device: torch.device | str,
    type: str = "mixed",
    constant: float = 1.0,
    lambda_gp: float = 10.0,
    *,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor | float, torch.Tensor | None]:
    """WGAN-GP gradient penalty ``lambda_gp * mean((||grad_x D(x)||_2 - constant)**2)``.

    ``x`` is the real batch (``type="real"``), the fake one (``"fake"``) or, as in the WGAN-GP paper,
    a per-sample random interpolation of the two (``"mixed"``; ``alpha ~ U[0, 1)`` per sample, drawn
    from ``generator`` when given).  Returns ``(penalty, flattened gradients)``; with
    ``lambda_gp <= 0`` returns ``(0.0, None)`` without touching ``netD``.  As in the reference, a tiny
    1e-16 is added to the gradients before the norm, and the graph is kept (``create_graph``) so the
    penalty can be back-propagated into ``netD``.  Unlike the reference, ``real`` / ``fake`` are never
    modified in place (a tensor that does not require grad is detached and given ``requires_grad``).
    """
    if lambda_gp <= 0.0:
        return 0.0, None
    if type == "real":
        x = real
    elif type == "fake":
        x = fake
    elif type == "mixed":
        alpha_shape = (real.shape[0],) + (1,) * (real.dim() - 1)
        if generator is None:
            alpha = torch.rand(alpha_shape, device=device)
        else:
            alpha = torch.rand(alpha_shape, generator=generator, device=generator.device).to(device)
        x = alpha * real + (1 - alpha) * fake
    else:
        raise ValueError(
            f"unknown gradient penalty type {type!r}; valid choices: {', '.join(PENALTY_TYPES)}"
        )
    if not x.requires_grad:
        x = x.detach().requires_grad_(True)
    scores = netD(x)
    (grads,) = torch.autograd.grad(
        outputs=scores,
        inputs=x,
        grad_outputs=torch.ones_like(scores),
        create_graph=True,
        retain_graph=True,
        only_inputs=True,
    )
    grads = grads.reshape(real.shape[0], -1)
    penalty = (((grads + 1e-16).norm(2, dim=1) - constant) ** 2).mean() * lambda_gp
    return penalty, grads

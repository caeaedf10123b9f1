"""AdaIN networks: the decoder, the encoder-AdaIN-decoder pipeline and its training loss.

Huang & Belongie, "Arbitrary Style Transfer in Real-time with Adaptive Instance Normalization",
ICCV 2017.  Module layout and behaviour follow naoto0804/pytorch-AdaIN (``net.py``, ``test.py``,
``train.py``) and, for spatial control, the original Lua code xunhuang1995/AdaIN-style (``test.lua``):

* :class:`AdaINDecoder` -- the reference ``decoder`` ``nn.Sequential``: the VGG encoder mirrored from
  relu4_1 back to RGB, 1-pixel reflection padding before every 3x3 convolution, nearest-neighbour 2x
  upsampling in place of the pools, no activation after the last convolution.  Same 29 indices, so
  ``decoder.pth`` (and the ``decoder_iter_*.pth.tar`` files ``train.py`` writes) load with their keys
  (:mod:`.importer`).
* :class:`EncoderGraph` / :class:`DecoderGraph` -- the two exported graphs (named inputs and outputs);
* :class:`AdaINNet` -- encoder (``vgg_normalised`` up to relu4_1, frozen) + decoder.  ``forward`` is the
  reference's test-time ``style_transfer``; ``loss`` is the reference's training ``Net.forward``.

Input and output images are RGB in [0, 1] (the decoder's output is not clamped, as in the reference).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from styleengine.nn.adain_ops import (
    adaptive_instance_normalization,
    calc_mean_std,
    masked_adaptive_instance_normalization,
)
from styleengine.nn.vgg import ADAIN_TAPS, NormalisedVGG

from .config import BATCH_SIZE, CONTENT_WEIGHT, LEARNING_RATE, LR_DECAY, MAX_ITER, STYLE_WEIGHT

__all__ = [
    "CAFFE_BGR_MEAN",
    "CONTENT_WEIGHT",
    "STYLE_WEIGHT",
    "LEARNING_RATE",
    "LR_DECAY",
    "BATCH_SIZE",
    "MAX_ITER",
    "learning_rate",
    "AdaINDecoder",
    "AdaINNet",
    "DecoderGraph",
    "EncoderGraph",
    "reference_preprocess_",
    "init_random_encoder_",
]

Alpha = float | torch.Tensor


#: The mean pixel (B, G, R on the 0..255 scale) the Caffe VGG was trained with; the reference's 1x1
#: preprocessing convolution subtracts it (xunhuang1995/AdaIN-style ``lib/utils.lua``, ``getPreprocessConv``).
CAFFE_BGR_MEAN: tuple[float, float, float] = (103.939, 116.779, 123.68)


def reference_preprocess_(conv: nn.Conv2d) -> nn.Conv2d:
    """Set the encoder's first (1x1, 3 -> 3) convolution to the reference's fixed preprocessing:
    RGB in [0, 1] -> BGR x 255 minus :data:`CAFFE_BGR_MEAN`.  ``vgg_normalised.pth`` holds these values."""
    with torch.no_grad():
        conv.weight.zero_()
        for out_ch, in_ch in ((0, 2), (1, 1), (2, 0)):
            conv.weight[out_ch, in_ch] = 255.0
        conv.bias.copy_(-torch.tensor(CAFFE_BGR_MEAN, dtype=conv.bias.dtype))
    return conv


def init_random_encoder_(encoder: NormalisedVGG) -> NormalisedVGG:
    """A *random* encoder with the activation scale of a real one (for tests, latency work and parity checks).

    The preprocessing convolution gets its fixed reference values; every 3x3 convolution is initialised as
    torchvision initialises VGG (Kaiming normal, fan-out, zero bias), so relu4_1 features are neither
    vanishing nor exploding.  It is still a random network: it encodes no image statistics worth
    transferring (see the plugin README, "Weights").
    """
    convs = [m for m in encoder if isinstance(m, nn.Conv2d)]
    reference_preprocess_(convs[0])
    for m in convs[1:]:
        nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(m.bias)
    return encoder


def learning_rate(iteration: int, lr: float = LEARNING_RATE, lr_decay: float = LR_DECAY) -> float:
    """The reference's inverse-time decay (``adjust_learning_rate``): ``lr / (1 + lr_decay * iteration)``."""
    return lr / (1.0 + lr_decay * iteration)


class AdaINDecoder(nn.Sequential):
    """The reference decoder: relu4_1 features ``(N, 512, h, w)`` -> image ``(N, 3, 8h, 8w)``.

    Conv layers sit at indices 1, 5, 8, 11, 14, 18, 21, 25, 28 (upsampling at 3, 16, 23), matching the
    keys of the reference ``decoder.pth``.
    """

    def __init__(self) -> None:
        layers: list[nn.Module] = []

        def conv(cin: int, cout: int, relu: bool = True) -> None:
            layers.extend([nn.ReflectionPad2d(1), nn.Conv2d(cin, cout, kernel_size=3)])
            if relu:
                layers.append(nn.ReLU())

        def up() -> None:
            layers.append(nn.Upsample(scale_factor=2, mode="nearest"))

        conv(512, 256); up()
        conv(256, 256); conv(256, 256); conv(256, 256); conv(256, 128); up()
        conv(128, 128); conv(128, 64); up()
        conv(64, 64); conv(64, 3, relu=False)
        super().__init__(*layers)


def _check_alpha(alpha: Alpha, like: torch.Tensor) -> Alpha:
    """Validate a python alpha (``0 <= alpha <= 1``, as the reference asserts); shape a tensor alpha
    (scalar or one value per sample) for broadcasting."""
    if isinstance(alpha, torch.Tensor):
        return alpha.to(like.dtype).reshape(-1, 1, 1, 1) if alpha.dim() > 0 else alpha.to(like.dtype)
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    return float(alpha)


def _blend(target: torch.Tensor, content_feat: torch.Tensor, alpha: Alpha) -> torch.Tensor:
    """``target * alpha + content * (1 - alpha)``: the reference's content-style trade-off, in its order."""
    alpha = _check_alpha(alpha, target)
    return target * alpha + content_feat * (1 - alpha)


class AdaINNet(nn.Module):
    """Encoder (``vgg_normalised`` up to relu4_1) -> AdaIN -> decoder.

    ``encoder`` defaults to a randomly initialised :class:`NormalisedVGG`; a deeper one is truncated at
    relu4_1 (sharing its weights), as the reference slices ``vgg[:31]``.  The encoder's parameters are
    frozen (``requires_grad=False``), as the reference's ``Net`` does; only the decoder trains.
    State-dict keys: ``encoder.0.weight`` ..., ``decoder.1.weight`` ...
    """

    def __init__(self, encoder: NormalisedVGG | None = None, decoder: AdaINDecoder | None = None) -> None:
        super().__init__()
        encoder = encoder if encoder is not None else NormalisedVGG(upto="relu4_1")
        if "relu4_1" not in encoder.layer_names:
            raise ValueError(f"AdaINNet needs an encoder reaching relu4_1; this one stops at {encoder.last_layer}")
        if encoder.last_layer != "relu4_1":
            encoder = encoder.truncated("relu4_1")
        encoder.requires_grad_(False)
        self.encoder = encoder
        self.decoder = decoder if decoder is not None else AdaINDecoder()

    # -- building blocks -----------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """relu4_1 features of an RGB [0, 1] image batch."""
        return self.encoder(x)

    def decode(self, feat: torch.Tensor) -> torch.Tensor:
        return self.decoder(feat)

    # -- inference (the reference's test.py) ---------------------------------------------------------
    def forward(self, content: torch.Tensor, style: torch.Tensor, alpha: Alpha = 1.0) -> torch.Tensor:
        """Stylise ``content`` with ``style``: ``decoder(alpha * AdaIN(f(c), f(s)) + (1 - alpha) * f(c))``.

        ``style`` has the content's batch size or 1 (shared by all); sizes may differ.  ``alpha`` is a
        float in [0, 1] or a tensor (scalar or ``(N,)``).  ``alpha=0`` is the reconstruction
        ``decoder(f(c))``.
        """
        content_f = self.encode(content)
        style_f = self.encode(style)
        feat = adaptive_instance_normalization(content_f, style_f)
        return self.decoder(_blend(feat, content_f, alpha))

    def style_transfer_multi(self, content: torch.Tensor, styles: Sequence[torch.Tensor] | torch.Tensor,
                             weights: Sequence[float] | torch.Tensor, alpha: Alpha = 1.0) -> torch.Tensor:
        """Style interpolation: decode ``alpha * sum_k w_k AdaIN(f(c), f(s_k)) + (1 - alpha) * f(c)``.

        ``styles``: a sequence of K tensors ``(1 or N, 3, H_k, W_k)`` (sizes may differ) or one stacked
        tensor ``(K, 3, H, W)`` (each used for every content image).  ``weights``: K numbers, or a tensor
        ``(K,)`` / ``(N, K)`` for per-sample weights.  Weights are divided by their sum, as both
        references do before blending; given as numbers they must be non-negative with a positive sum
        (tensor weights are not checked, so the method stays traceable).
        """
        if isinstance(styles, torch.Tensor):
            styles = [s.unsqueeze(0) for s in styles.unbind(0)] if styles.dim() == 4 else [styles]
        styles = list(styles)
        k = len(styles)
        w = weights if isinstance(weights, torch.Tensor) else torch.tensor([float(x) for x in weights])
        w = w.to(dtype=content.dtype, device=content.device)
        if w.dim() not in (1, 2) or w.shape[-1] != k or k == 0:
            raise ValueError(f"style_transfer_multi: {k} style(s) need {k} weight(s), got shape {tuple(w.shape)}")
        if not isinstance(weights, torch.Tensor) and (min(weights) < 0 or sum(weights) <= 0):
            raise ValueError(f"style_transfer_multi: weights must be non-negative with a positive sum, got {weights}")
        w = w / w.sum(-1, keepdim=True)

        content_f = self.encode(content)
        feat = torch.zeros_like(content_f)
        for i, style in enumerate(styles):
            wi = w[i] if w.dim() == 1 else w[:, i].reshape(-1, 1, 1, 1)
            feat = feat + wi * adaptive_instance_normalization(content_f, self.encode(style))
        return self.decoder(_blend(feat, content_f, alpha))

    def style_transfer_masked(self, content: torch.Tensor, foreground_style: torch.Tensor,
                              background_style: torch.Tensor, mask: torch.Tensor, alpha: Alpha = 1.0
                              ) -> torch.Tensor:
        """Spatial control (the Lua reference's ``-mask``): one style inside the mask, another outside.

        ``mask``: ``(H, W)``, ``(N, H, W)`` or ``(N, 1, H, W)``, 1 = foreground, 0 = background, usually
        at the content's resolution.  As the reference, it is resized to the relu4_1 grid by nearest
        neighbour, and each region is AdaIN-ed with content statistics computed over that region only;
        the alpha blend then uses the full content features.  Values are thresholded at 0.5 (the
        reference expects an exactly binary mask and leaves other values' features at zero).
        """
        content_f = self.encode(content)
        if mask.dim() == 2:
            mask = mask[None, None]
        elif mask.dim() == 3:
            mask = mask[:, None]
        if mask.dim() != 4 or mask.shape[1] != 1:
            raise ValueError(f"mask must be (H, W), (N, H, W) or (N, 1, H, W), got {tuple(mask.shape)}")
        mask = F.interpolate(mask.to(content_f.dtype), size=content_f.shape[-2:], mode="nearest") >= 0.5
        mask = mask.expand(content_f.shape[0], 1, *content_f.shape[-2:])
        fg = masked_adaptive_instance_normalization(content_f, self.encode(foreground_style), mask)
        bg = masked_adaptive_instance_normalization(content_f, self.encode(background_style), ~mask)
        feat = torch.where(mask, fg, bg)
        return self.decoder(_blend(feat, content_f, alpha))

    # -- training (the reference's Net.forward) ------------------------------------------------------
    def loss(self, content: torch.Tensor, style: torch.Tensor, alpha: Alpha = 1.0
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """Unweighted ``(loss_c, loss_s)``; train on ``CONTENT_WEIGHT * loss_c + STYLE_WEIGHT * loss_s``.

        ``t = AdaIN(f(c), f(s))`` (blended with ``f(c)`` by ``alpha``, as the current reference allows);
        ``loss_c = MSE(f(g(t)), t)`` at relu4_1; ``loss_s = sum over relu1_1..relu4_1 of
        MSE(mean(phi(g(t))), mean(phi(s))) + MSE(std(phi(g(t))), std(phi(s)))``.  Targets are detached
        (the reference asserts they need no gradient); gradients reach the decoder through the frozen
        encoder.
        """
        style_feats = [f.detach() for f in self.encoder.encode_with_taps(style, ADAIN_TAPS).values()]
        content_f = self.encode(content)
        t = _blend(adaptive_instance_normalization(content_f, style_feats[-1]), content_f, alpha).detach()
        g_t = self.decoder(t)
        g_t_feats = list(self.encoder.encode_with_taps(g_t, ADAIN_TAPS).values())

        loss_c = F.mse_loss(g_t_feats[-1], t)
        loss_s = g_t.new_zeros(())
        for out_f, style_f in zip(g_t_feats, style_feats):
            out_mean, out_std = calc_mean_std(out_f)
            style_mean, style_std = calc_mean_std(style_f)
            loss_s = loss_s + F.mse_loss(out_mean, style_mean) + F.mse_loss(out_std, style_std)
        return loss_c, loss_s


class EncoderGraph(nn.Module):
    """``image`` (N, 3, H, W) RGB in [0, 1] -> ``features`` (N, 512, H/8, W/8), relu4_1."""

    def __init__(self, encoder: NormalisedVGG) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.encoder(image)


class DecoderGraph(nn.Module):
    """``features`` (N, 512, h, w) -> ``image`` (N, 3, 8h, 8w), RGB nominally in [0, 1] (not clamped)."""

    def __init__(self, decoder: AdaINDecoder) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.decoder(features)

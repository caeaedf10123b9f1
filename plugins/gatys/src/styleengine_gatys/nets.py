"""The style's own torch pieces: the Gram matrix and the three losses of the optimisation, the loss network's
one interface over both VGG layouts, and the fast network (``TransformerNet`` of pytorch/examples
``fast_neural_style``, module for module, so its published state dicts load with their own keys).

Loss definitions (jcjohnson/neural-style; the PyTorch tutorial's are the same up to the weights):

* Gram: ``F F^T / (C*H*W)`` per image, ``F`` the ``(C, H*W)`` feature matrix (neural-style divides by
  ``nElement``; the tutorial by ``a*b*c*d`` with ``a`` the batch of 1: the same number);
* content: ``weight * mean((F - F_content)^2)`` (nn.MSECriterion);
* style: ``weight * mean((G - G_target)^2)`` per style layer, summed over layers, ``G_target`` the blend
  ``sum_k w_k G(style_k)``;
* TV: ``weight * 0.5 * sum((x[:, :-1, :-1] - x[:, :-1, 1:])^2 + (x[:, :-1, :-1] - x[:, 1:, :-1])^2)``, the
  function whose gradient neural-style's ``TVLoss:updateGradInput`` computes (it never reports a value).

``-normalize_gradients`` divides each loss's gradient with respect to its layer by its L1 norm (+1e-8)
before the weight multiplies it: :func:`normalized_grad` does that in autograd.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

# -- losses ------------------------------------------------------------------------------------------------


def gram_matrix(feat: torch.Tensor) -> torch.Tensor:
    """``(N, C, H, W)`` -> ``(N, C, C)``: ``F F^T / (C*H*W)`` per image."""
    n, c, h, w = feat.shape
    f = feat.reshape(n, c, h * w)
    return torch.bmm(f, f.transpose(1, 2)) / (c * h * w)


class _NormalizeGrad(torch.autograd.Function):
    """Identity forward; backward: the incoming gradient ``g = weight * g0`` becomes ``weight * g0 / (|g0|_1 + 1e-8)``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: float) -> torch.Tensor:  # type: ignore[override]
        ctx.weight = weight
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        w = ctx.weight
        if w == 0:
            return g, None
        g0 = g / w
        return w * g0 / (g0.abs().sum() + 1e-8), None


def normalized_grad(x: torch.Tensor, weight: float) -> torch.Tensor:
    """``x`` whose gradient, coming from a loss scaled by ``weight``, is L1-normalised before the weight."""
    return _NormalizeGrad.apply(x, float(weight))


def content_loss(feat: torch.Tensor, target: torch.Tensor, weight: float, normalize: bool = False) -> torch.Tensor:
    if normalize:
        feat = normalized_grad(feat, weight)
    return weight * F.mse_loss(feat, target)


def style_loss(feat: torch.Tensor, target_gram: torch.Tensor, weight: float, normalize: bool = False) -> torch.Tensor:
    if normalize:
        feat = normalized_grad(feat, weight)
    return weight * F.mse_loss(gram_matrix(feat), target_gram.expand(feat.shape[0], -1, -1))


def tv_loss(x: torch.Tensor, weight: float) -> torch.Tensor:
    """neural-style's total variation (see the module docstring), summed over the batch."""
    base = x[..., :-1, :-1]
    dx = base - x[..., :-1, 1:]
    dy = base - x[..., 1:, :-1]
    return weight * 0.5 * (dx.pow(2).sum() + dy.pow(2).sum())


# -- the loss network -----------------------------------------------------------------------------------------


def vgg_features(vgg: nn.Module, x01: torch.Tensor, taps: Iterable[str], pool: str | None = None) -> dict[str, torch.Tensor]:
    """Named features of RGB ``x01`` in [0, 1] through either VGG layout (each applies its own preprocessing:
    ImageNet mean/std for torchvision weights, the folded Caffe transform for ``vgg_normalised``)."""
    from styleengine.nn.vgg import NormalisedVGG

    if isinstance(vgg, NormalisedVGG):
        return vgg.encode_with_taps(x01, list(taps), pool=pool)
    return vgg(x01, list(taps), pool=pool)


def init_random_vgg_(vgg: nn.Module) -> nn.Module:
    """Seeded-random loss network that keeps activations in a sane range: He-normal convolutions, zero biases
    (the caller seeds the RNG).  Results on it are textures of the style image's low-level statistics only."""
    for m in vgg.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return vgg.requires_grad_(False)


# -- the fast network (Johnson et al.; pytorch/examples fast_neural_style/transformer_net.py) -------------------


class ConvLayer(nn.Module):
    """Reflection pad (kernel // 2), then an unpadded convolution."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.reflection_pad = nn.ReflectionPad2d(kernel_size // 2)
        self.conv2d = nn.Conv2d(in_ch, out_ch, kernel_size, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2d(self.reflection_pad(x))


class ResidualBlock(nn.Module):
    """conv-IN-ReLU-conv-IN plus the input (He et al.'s block without the final ReLU, as the reference)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, kernel_size=3, stride=1)
        self.in1 = nn.InstanceNorm2d(channels, affine=True)
        self.conv2 = ConvLayer(channels, channels, kernel_size=3, stride=1)
        self.in2 = nn.InstanceNorm2d(channels, affine=True)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.in1(self.conv1(x)))
        return self.in2(self.conv2(out)) + x


class UpsampleConvLayer(nn.Module):
    """Nearest-neighbour upsampling by ``upsample``, then :class:`ConvLayer` (no transposed convolution)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int, upsample: int | None = None) -> None:
        super().__init__()
        self.upsample = upsample
        self.reflection_pad = nn.ReflectionPad2d(kernel_size // 2)
        self.conv2d = nn.Conv2d(in_ch, out_ch, kernel_size, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, mode="nearest", scale_factor=self.upsample)
        return self.conv2d(self.reflection_pad(x))


class TransformerNet(nn.Module):
    """The reference image transformation network: 0-255 RGB in, 0-255 RGB out (unclamped), any size whose
    sides are multiples of 4 come back at the same size.  1,679,235 parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = ConvLayer(3, 32, kernel_size=9, stride=1)
        self.in1 = nn.InstanceNorm2d(32, affine=True)
        self.conv2 = ConvLayer(32, 64, kernel_size=3, stride=2)
        self.in2 = nn.InstanceNorm2d(64, affine=True)
        self.conv3 = ConvLayer(64, 128, kernel_size=3, stride=2)
        self.in3 = nn.InstanceNorm2d(128, affine=True)
        self.res1 = ResidualBlock(128)
        self.res2 = ResidualBlock(128)
        self.res3 = ResidualBlock(128)
        self.res4 = ResidualBlock(128)
        self.res5 = ResidualBlock(128)
        self.deconv1 = UpsampleConvLayer(128, 64, kernel_size=3, stride=1, upsample=2)
        self.in4 = nn.InstanceNorm2d(64, affine=True)
        self.deconv2 = UpsampleConvLayer(64, 32, kernel_size=3, stride=1, upsample=2)
        self.in5 = nn.InstanceNorm2d(32, affine=True)
        self.deconv3 = ConvLayer(32, 3, kernel_size=9, stride=1)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.in1(self.conv1(x)))
        y = self.relu(self.in2(self.conv2(y)))
        y = self.relu(self.in3(self.conv3(y)))
        for block in (self.res1, self.res2, self.res3, self.res4, self.res5):
            y = block(y)
        y = self.relu(self.in4(self.deconv1(y)))
        y = self.relu(self.in5(self.deconv2(y)))
        return self.deconv3(y)


class TransformerGraph(nn.Module):
    """The exported graph ``transformer``: RGB in [0, 1] -> the reference's 0-255 network -> RGB in [0, 1]
    (clamped, as the reference clamps before saving)."""

    def __init__(self, net: TransformerNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return (self.net(image * 255.0) / 255.0).clamp(0.0, 1.0)


def normalize_batch(x255: torch.Tensor) -> torch.Tensor:
    """fast_neural_style's ``normalize_batch``: 0-255 RGB -> ImageNet-normalised (not in place)."""
    mean = x255.new_tensor([0.485, 0.456, 0.406]).view(-1, 1, 1)
    std = x255.new_tensor([0.229, 0.224, 0.225]).view(-1, 1, 1)
    return (x255 / 255.0 - mean) / std


def fast_losses(vgg16: nn.Module, x255: torch.Tensor, y255: torch.Tensor, style_grams: Mapping[str, torch.Tensor],
                content_layer: str, content_weight: float, style_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """fast_neural_style's training losses for content batch ``x255`` and its stylisation ``y255``:
    ``(content_weight * mse(relu2_2), style_weight * sum_l mse(G_l(y), G_l(style)))``."""
    taps = list(style_grams)
    fy = vgg16(normalize_batch(y255), list(dict.fromkeys([*taps, content_layer])), normalize=False)
    with torch.no_grad():
        fx = vgg16(normalize_batch(x255), [content_layer], normalize=False)
    c = content_weight * F.mse_loss(fy[content_layer], fx[content_layer])
    s = sum(F.mse_loss(gram_matrix(fy[t]), style_grams[t].expand(y255.shape[0], -1, -1)) for t in taps)
    return c, style_weight * s

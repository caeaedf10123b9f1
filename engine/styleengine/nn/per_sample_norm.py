"""Batch-independent ("reference") inference for the pix2pix generators.

The reference pix2pix test script never calls ``model.eval()`` unless ``--eval`` is passed: it runs the
generator in *train* mode with batch size 1.  So every BatchNorm normalises with the statistics of the
single test image, and every Dropout(0.5) stays active (the pix2pix paper uses dropout as the
generator's noise source, at test time too).  Two consequences for a batched server:

* Stacking images in a batch would make train-mode BatchNorm mix their statistics.
  :class:`PerSampleBatchNorm2d` normalises every sample over its own H x W, which is exactly what
  train-mode ``BatchNorm2d`` computes for a batch of one, so a batch of N equals N single runs.
* Dropout drawn from a global RNG is neither reproducible nor the same across runtimes.
  :class:`MaskDropout` takes the keep/scale mask as an explicit tensor, and
  :func:`make_dropout_masks` draws those masks from one ``torch.Generator`` per image seed, so image
  *i* depends only on its own seed, whatever the batch and whatever the runtime (torch, ONNX Runtime,
  TensorRT: the masks are ordinary graph inputs).  The masks cannot reproduce the reference's draws
  (those came from the global CUDA/CPU RNG state of the training process); they reproduce the
  *distribution*: Bernoulli(1 - p) keep, scaled by 1 / (1 - p), as ``nn.Dropout`` in train mode.

Small spatial maps: train-mode BatchNorm on a 1 x 1 map with batch 1 raises in torch ("Expected more
than 1 value per channel").  The reference U-Nets never reach it at their native sizes: the innermost
block of ``unet_256`` (input 256) / ``unet_128`` (input 128) sees a 2 x 2 map, downsamples it to the
1 x 1 bottleneck *without* a norm (the reference gives the innermost block no down-norm) and
normalises only after upsampling back to 2 x 2.  ``F.instance_norm`` raises on a 1 x 1 map in the same
way, so :class:`PerSampleBatchNorm2d` fails where the reference fails instead of silently returning the
bias (a 1 x 1 map has zero variance, so "normalising" it would erase the signal).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "MaskDropout",
    "PerSampleBatchNorm2d",
    "convert_batchnorm_to_per_sample",
    "dropout_mask_shapes",
    "make_dropout_masks",
    "unet_dropout_mask_shapes",
    "resnet_dropout_mask_shapes",
]

Shape = tuple[int, int, int, int]


def _tracing() -> bool:
    """True while torch.jit tracing or torch.export/dynamo is capturing a graph."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling()


class PerSampleBatchNorm2d(nn.BatchNorm2d):
    """``BatchNorm2d`` that always normalises each sample with its own statistics.

    Same parameters, buffers and state-dict keys as ``nn.BatchNorm2d`` (it *is* one), so reference
    checkpoints load unchanged.  The forward ignores the running statistics (and never updates them),
    in train and eval mode alike: per sample and channel it subtracts the mean over H x W, divides by
    ``sqrt(biased variance + eps)`` (biased, as train-mode BN uses) and applies the BN's affine
    weight/bias.  For a batch of one this is exactly train-mode ``BatchNorm2d``.

    Implemented with ``F.instance_norm`` (torch computes it by running batch norm over a
    ``(1, N*C, H, W)`` view, hence bit-identical to train-mode BN at batch 1); both ONNX exporters
    lower it to ``InstanceNormalization``.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(input)
        return F.instance_norm(
            input,
            running_mean=None,
            running_var=None,
            weight=self.weight,
            bias=self.bias,
            use_input_stats=True,
            momentum=0.0,
            eps=self.eps,
        )

    @classmethod
    def from_batchnorm(cls, bn: nn.BatchNorm2d) -> PerSampleBatchNorm2d:
        """Build a per-sample norm that *shares* ``bn``'s parameters and buffers (no copy)."""
        new = cls.__new__(cls)
        nn.Module.__init__(new)
        for attr in ("num_features", "eps", "momentum", "affine", "track_running_stats"):
            setattr(new, attr, getattr(bn, attr))
        for name, param in bn._parameters.items():
            new._parameters[name] = param
        for name, buf in bn._buffers.items():
            new._buffers[name] = buf
        new._non_persistent_buffers_set = set(bn._non_persistent_buffers_set)
        new.train(bn.training)
        return new


def convert_batchnorm_to_per_sample(module: nn.Module) -> nn.Module:
    """Swap every ``nn.BatchNorm2d`` in ``module`` for a :class:`PerSampleBatchNorm2d`, in place.

    The new layers share the old ones' parameters and buffers, so weights (and state-dict keys) are
    kept.  Returns ``module`` (or the replacement, if ``module`` itself is a ``BatchNorm2d``).
    """
    if isinstance(module, nn.BatchNorm2d) and not isinstance(module, PerSampleBatchNorm2d):
        return PerSampleBatchNorm2d.from_batchnorm(module)
    for name, child in list(module.named_children()):
        new_child = convert_batchnorm_to_per_sample(child)
        if new_child is not child:
            setattr(module, name, new_child)
    return module


class MaskDropout(nn.Dropout):
    """``nn.Dropout`` that can take its mask as an explicit input.

    ``forward(x)`` is plain ``nn.Dropout`` (active in train mode, identity in eval mode), so training
    and state-dict keys are unchanged (dropout has no parameters).  ``forward(x, mask)`` returns
    ``x * mask`` whatever the mode; ``mask`` has ``x``'s shape and values in ``{0, 1 / (1 - p)}``
    (see :func:`make_dropout_masks`).  Plain tensor ops, so it exports to ONNX with the mask as a graph
    input.
    """

    def forward(self, input: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is None:
            return super().forward(input)
        if not _tracing() and mask.shape != input.shape:
            raise ValueError(
                f"dropout mask has shape {tuple(mask.shape)}, expected {tuple(input.shape)}"
            )
        return input * mask


def unet_dropout_mask_shapes(
    num_downs: int, ngf: int, batch: int, height: int, width: int
) -> list[Shape]:
    """Mask shapes of a reference U-Net with dropout, in module (= execution) order: innermost first.

    The dropout blocks are the ``num_downs - 5`` ``ngf*8 -> ngf*8`` blocks around the innermost one;
    block at depth ``d`` (outermost block = depth 0) sees a map of ``H / 2**d`` and its output (before
    the skip concatenation) has ``ngf * 8`` channels.  Depths 4 .. num_downs - 2 carry dropout; a
    block's own dropout runs after the blocks nested in it, hence the deepest mask comes first.
    """
    factor = 2**num_downs
    if height % factor or width % factor:
        raise ValueError(
            f"a U-Net with {num_downs} downsamplings needs height and width divisible by {factor}, "
            f"got {height}x{width}"
        )
    return [
        (batch, ngf * 8, height >> depth, width >> depth) for depth in range(num_downs - 2, 3, -1)
    ]


def resnet_dropout_mask_shapes(
    n_blocks: int, ngf: int, batch: int, height: int, width: int
) -> list[Shape]:
    """Mask shapes of a reference ResNet generator with dropout, one per residual block, in order.

    The blocks run at ``ngf * 4`` channels after two stride-2 3x3 convolutions (padding 1), i.e. at
    ``ceil(ceil(H / 2) / 2)``.
    """
    h, w = height, width
    for _ in range(2):
        h, w = (h + 1) // 2, (w + 1) // 2
    return [(batch, ngf * 4, h, w) for _ in range(n_blocks)]


_NAMED_GENERATORS: dict[str, tuple[str, int]] = {
    "unet_256": ("unet", 8),
    "unet_128": ("unet", 7),
    "resnet_9blocks": ("resnet", 9),
    "resnet_6blocks": ("resnet", 6),
}


def dropout_mask_shapes(
    netG: nn.Module | str,
    batch: int,
    height: int,
    width: int,
    *,
    ngf: int = 64,
    use_dropout: bool = True,
) -> list[Shape]:
    """Shapes ``(B, C, h, w)`` of the dropout masks a generator takes, in forward-argument order.

    That order is the order of the ``MaskDropout`` layers in ``netG.modules()``, which is also the
    order in which they run (for a U-Net: innermost, smallest map first).

    ``netG`` is either a generator module (``UnetGenerator`` / ``ResnetGenerator``: its own ``ngf``
    and dropout setting are used) or a reference name (``unet_256``, ``unet_128``,
    ``resnet_9blocks``, ``resnet_6blocks``) together with ``ngf`` / ``use_dropout``.  An empty list
    means the generator has no dropout.
    """
    if isinstance(netG, nn.Module):
        method = getattr(netG, "dropout_mask_shapes", None)
        if method is None:
            raise TypeError(f"{type(netG).__name__} does not declare dropout mask shapes")
        return method(batch, height, width)
    if netG not in _NAMED_GENERATORS:
        raise ValueError(
            f"unknown generator {netG!r}; valid choices: {', '.join(_NAMED_GENERATORS)}"
        )
    if not use_dropout:
        return []
    family, depth = _NAMED_GENERATORS[netG]
    if family == "unet":
        return unet_dropout_mask_shapes(depth, ngf, batch, height, width)
    return resnet_dropout_mask_shapes(depth, ngf, batch, height, width)


def make_dropout_masks(
    shapes: Sequence[Sequence[int]],
    seeds: Sequence[int],
    p: float = 0.5,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> list[torch.Tensor]:
    """Draw dropout masks, one ``torch.Generator`` per image.

    ``shapes`` are batch shapes ``(B, C, h, w)`` (from :func:`dropout_mask_shapes`); ``seeds`` has one
    seed per image (``len(seeds) == B``).  Image ``i``'s masks are drawn, layer after layer, from a
    CPU generator seeded with ``seeds[i]`` alone, so they do not depend on the batch they are in.
    Values: 0 (dropped, probability ``p``) or ``1 / (1 - p)`` (kept), as ``nn.Dropout`` scales.
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    batch = len(seeds)
    if batch == 0:
        raise ValueError("make_dropout_masks needs at least one seed")
    for shape in shapes:
        if len(shape) != 4 or shape[0] != batch:
            raise ValueError(f"mask shape {tuple(shape)} does not match {batch} seed(s)")
    scale = 1.0 / (1.0 - p)
    per_layer: list[list[torch.Tensor]] = [[] for _ in shapes]
    for seed in seeds:
        gen = torch.Generator(device="cpu")
        gen.manual_seed(int(seed))
        for layer, shape in enumerate(shapes):
            keep = torch.rand(tuple(shape[1:]), generator=gen) < (1.0 - p)
            per_layer[layer].append(keep.to(dtype) * scale)
    return [torch.stack(masks).to(device=device) for masks in per_layer]

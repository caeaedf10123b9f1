"""The exported graphs: ``generator(image, z) -> output`` and ``encoder(image) -> (mu, logvar)``.

The networks themselves are :mod:`styleengine.nn`'s (``G_Unet_add_all`` / ``G_Unet_add_input``,
``E_ResNet`` / ``E_NLayers``, laid out as the reference so its checkpoints load); this module only wraps them
with named inputs and outputs and declares their shapes.

* ``generator``: ``image`` (batch, input_nc, H, W) in [-1, 1] and ``z`` (batch, nz), one latent code per row;
  H and W are multiples of 256 (unet_256) or 128 (unet_128).  z is drawn on the host by the pipeline (seeded
  ``torch.randn``), so every runtime computes the same image for the same seed.  Instance norm (the default)
  normalises each row alone and inference has no dropout, so rows are independent: a batch equals its rows.
* ``encoder``: ``image`` (batch, output_nc, S, S) with S *fixed* (256 for resnet_256 / conv_256, 128 for
  the *_128 encoders): the reference ends the encoder in ``AvgPool2d(8)`` and a linear layer on the flattened
  map, which only has the right length at that size.  The pipeline resizes example images to S x S.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from styleengine.spec import Dim, GraphSpec, TensorSpec, Tolerance, image_tensor

#: ONNX Runtime (fp32, CPU) against torch eager for the generator: tanh output in [-1, 1].  Measured on the default
#: unet_256 (ngf 64, instance norm) at 1x256², 1x256², 2x512²: with the reference's xavier(0.02) initialisation
#: max |err| 2.3e-7 (benchmarks); with Kaiming-initialised weights, whose activations grow to full scale through the
#: un-normalised outermost / innermost levels (a harder case than trained weights), 3.8e-5 / 116 dB (plugin README).
#: atol 3e-4 leaves 8x headroom over that for other kernels; the PSNR floor catches a systematically wrong graph.
GENERATOR_TOLERANCE = Tolerance(atol=3e-4, rtol=0.0, psnr=80.0)
#: mu and logvar are unbounded linear outputs (|mu| ~ 1): absolute plus relative tolerance, no PSNR.
ENCODER_TOLERANCE = Tolerance(atol=1e-4, rtol=1e-3, psnr=None)
#: The range validation draws z from (N(0, 1) clipped): what the generator sees in training.
Z_RANGE = (-3.0, 3.0)


class GeneratorGraph(nn.Module):
    """``forward(image, z) -> output`` (ONNX input names follow the parameter names)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.net(image, z)


class EncoderGraph(nn.Module):
    """``forward(image) -> (mu, logvar)``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.net(image)
        return mu, logvar


def _generator_example(shapes: Mapping[str, tuple[int, ...]], rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "image": rng.uniform(-1.0, 1.0, size=shapes["image"]).astype(np.float32),
        "z": np.clip(rng.standard_normal(size=shapes["z"]), *Z_RANGE).astype(np.float32),
    }


def generator_spec(module: nn.Module | None, *, input_nc: int, output_nc: int, nz: int, batch: Dim, height: Dim, width: Dim) -> GraphSpec:
    return GraphSpec(
        "generator",
        inputs=(
            image_tensor("image", channels=input_nc, batch=batch, height=height, width=width),
            TensorSpec("z", (batch, nz), value_range=Z_RANGE, description="latent code, one row per output image"),
        ),
        outputs=(image_tensor("output", channels=output_nc, batch=batch, height=height, width=width),),
        tolerance=GENERATOR_TOLERANCE,
        module=module,
        example=_generator_example,
        # As pix2pix's U-Net: at the opt point (256 x 256 for unet_256) the bottleneck is 1 x 1 and torch.export's
        # 0/1 specialisation narrows the dims; the TorchScript tracer exports exactly the declared dynamic axes.
        exporter="torchscript",
        description="BicycleGAN generator G(A, z)",
    )


def encoder_spec(module: nn.Module | None, *, output_nc: int, nz: int, side: int, batch: Dim) -> GraphSpec:
    return GraphSpec(
        "encoder",
        inputs=(image_tensor("image", channels=output_nc, batch=batch, height=side, width=side),),
        outputs=(TensorSpec("mu", (batch, nz)), TensorSpec("logvar", (batch, nz))),
        tolerance=ENCODER_TOLERANCE,
        module=module,
        exporter="torchscript",
        description=f"BicycleGAN encoder E(B) -> (mu, logvar); accepts {side} x {side} images only",
    )

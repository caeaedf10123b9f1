"""The exported ``generator`` graph: the generator with its dropout masks as named inputs.

``eval`` variant: ``image -> output``; BatchNorm uses its running statistics and dropout is off, so
the graph is deterministic and batch-independent with no extra inputs (BN folds into the convs).

``reference`` variant: BatchNorm layers are :class:`~styleengine.nn.PerSampleBatchNorm2d` (each image
normalised with its own statistics, exactly train-mode BN at batch 1) and every dropout layer takes
its keep/scale mask as an input ``dropout_<i>`` (innermost block first), shaped as a ``Derived`` axis
of height and width.  The pipeline draws the masks from each request's seed, so all runtimes compute
the same function and a batch equals its single runs.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from styleengine.nn import dropout_mask_shapes, make_dropout_masks
from styleengine.spec import Derived, Dim, GraphSpec, TensorSpec, Tolerance, image_tensor

#: Values a dropout mask holds: 0 (dropped) or 1 / (1 - p) = 2 (kept), p = 0.5 as in the reference.
MASK_RANGE = (0.0, 2.0)

#: Parity of ONNX Runtime (fp32, CPU) against torch eager.  Measured at min / opt / max (up to 8 x 1024²) on
#: unet_256 and resnet_9blocks with ngf 64 and on a trained unet_128, both variants: worst max |err| 6.7e-6
#: on the tanh output in [-1, 1], PSNR >= 124 dB (table in the plugin README).  atol 1e-4 leaves > 10x
#: headroom for other CPUs' / GPUs' kernels; rtol 0 because outputs near 0 are as exact as any other; the
#: PSNR floor of 80 dB catches a systematically wrong graph that stays under atol.
TOLERANCE = Tolerance(atol=1e-4, rtol=0.0, psnr=80.0)


def mask_names(count: int) -> list[str]:
    return [f"dropout_{i}" for i in range(count)]


class GeneratorGraph(nn.Module):
    """Export wrapper around a generator: named inputs ``image`` (+ ``dropout_<i>``), output ``output``.

    Subclasses differ only in ``forward``'s signature (one parameter per mask), because the ONNX
    exporters name graph inputs after it.
    """

    num_masks = 0

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def run(self, image: torch.Tensor, masks: list[torch.Tensor]) -> torch.Tensor:
        return self.net(image, masks if masks else None)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.run(image, [])


class _Graph2(GeneratorGraph):  # unet_128
    num_masks = 2

    def forward(self, image: torch.Tensor, dropout_0: torch.Tensor, dropout_1: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.run(image, [dropout_0, dropout_1])


class _Graph3(GeneratorGraph):  # unet_256
    num_masks = 3

    def forward(self, image: torch.Tensor, dropout_0: torch.Tensor, dropout_1: torch.Tensor, dropout_2: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.run(image, [dropout_0, dropout_1, dropout_2])


class _Graph6(GeneratorGraph):  # resnet_6blocks
    num_masks = 6

    def forward(  # type: ignore[override]
        self, image: torch.Tensor, dropout_0: torch.Tensor, dropout_1: torch.Tensor, dropout_2: torch.Tensor,
        dropout_3: torch.Tensor, dropout_4: torch.Tensor, dropout_5: torch.Tensor,
    ) -> torch.Tensor:
        return self.run(image, [dropout_0, dropout_1, dropout_2, dropout_3, dropout_4, dropout_5])


class _Graph9(GeneratorGraph):  # resnet_9blocks
    num_masks = 9

    def forward(  # type: ignore[override]
        self, image: torch.Tensor, dropout_0: torch.Tensor, dropout_1: torch.Tensor, dropout_2: torch.Tensor,
        dropout_3: torch.Tensor, dropout_4: torch.Tensor, dropout_5: torch.Tensor, dropout_6: torch.Tensor,
        dropout_7: torch.Tensor, dropout_8: torch.Tensor,
    ) -> torch.Tensor:
        return self.run(image, [dropout_0, dropout_1, dropout_2, dropout_3, dropout_4, dropout_5, dropout_6, dropout_7, dropout_8])


_GRAPHS: dict[int, type[GeneratorGraph]] = {0: GeneratorGraph, 2: _Graph2, 3: _Graph3, 6: _Graph6, 9: _Graph9}


def wrap(net: nn.Module, num_masks: int) -> GeneratorGraph:
    if num_masks not in _GRAPHS:
        raise ValueError(f"no graph wrapper for {num_masks} dropout masks")
    return _GRAPHS[num_masks](net)


def mask_specs(netG: str, ngf: int, batch: Dim, height: Dim, width: Dim) -> list[TensorSpec]:
    """One input per dropout layer; its spatial axes are height / width divided by the layer's stride."""
    m = height.multiple_of
    shapes = dropout_mask_shapes(netG, 1, m, m, ngf=ngf)
    specs = []
    for name, (_, channels, h, w) in zip(mask_names(len(shapes)), shapes, strict=True):
        specs.append(
            TensorSpec(
                name,
                (batch, channels, Derived(height, div=m // h), Derived(width, div=width.multiple_of // w)),
                value_range=MASK_RANGE,
                description="dropout keep mask (0 or 2) drawn from the request's seed",
            )
        )
    return specs


def example_factory(input_names: list[str]):  # noqa: ANN201 - returns an ExampleFactory
    """Validation inputs: an image uniform in [-1, 1] and real dropout masks (0 / 2) from random seeds."""

    def example(shapes: Mapping[str, tuple[int, ...]], rng: np.random.Generator) -> dict[str, np.ndarray]:
        image_shape = shapes["image"]
        out = {"image": rng.uniform(-1.0, 1.0, size=image_shape).astype(np.float32)}
        masks = [n for n in input_names if n != "image"]
        if masks:
            seeds = [int(s) for s in rng.integers(0, 2**31 - 1, size=image_shape[0])]
            drawn = make_dropout_masks([shapes[n] for n in masks], seeds)
            out.update({n: t.numpy() for n, t in zip(masks, drawn, strict=True)})
        return out

    return example


def generator_spec(
    module: GeneratorGraph | None,
    *,
    netG: str,
    ngf: int,
    input_nc: int,
    output_nc: int,
    batch: Dim,
    height: Dim,
    width: Dim,
    with_masks: bool,
) -> GraphSpec:
    inputs = [image_tensor("image", channels=input_nc, batch=batch, height=height, width=width)]
    if with_masks:
        inputs += mask_specs(netG, ngf, batch, height, width)
    names = [t.name for t in inputs]
    return GraphSpec(
        "generator",
        inputs=tuple(inputs),
        outputs=(image_tensor("output", channels=output_nc, batch=batch, height=height, width=width),),
        tolerance=TOLERANCE,
        module=module,
        example=example_factory(names),
        # torch.export specialises sizes of 1 (its "0/1 specialisation"): at the natural opt point
        # (batch 1; 256 x 256 for unet_256, where the bottleneck is 1 x 1) the dynamo exporter either fails
        # or narrows the dims it was given.  The TorchScript tracer exports the same plain conv / norm /
        # mul graph with exactly the declared dynamic axes (and ~10x faster), so this graph uses it.
        exporter="torchscript",
        description="pix2pix generator" + (" with per-request dropout masks" if with_masks else ""),
    )

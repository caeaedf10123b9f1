"""The ``sketch`` Style: declarations, the one graph, and ``infer`` (which calls the pipeline)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from styleengine.spec import Dim, GraphSpec, Tolerance, image_tensor
from styleengine.style import Capability, ImageField, InputContract, Style, StyleRequest, StyleResult

from .config import Config, ModelConfig

if TYPE_CHECKING:
    from torch import nn


class Sketch(Style):
    name = "sketch"
    aliases = ("pencil-sketch",)
    description = "photo -> pencil sketch: the grey image colour-dodged by its blurred negative (no weights)"
    capabilities = frozenset({Capability.INFER, Capability.EXPORT})
    Config = Config
    ModelConfig = ModelConfig
    #: Any size runs; sides outside the graph's range are resized into it and the output resized back.
    inputs = InputContract(
        images=(ImageField("image", "the photograph to turn into a pencil sketch"),),
        value_range=(0.0, 1.0),
        size_multiple=1,
        size_policy="resize",
        max_side=8192,
    )
    needs_weights = False
    weights_hint = "the sketch filter has no weights"

    #: The graph's default range (export profiles may widen it); larger images are resized into it.
    batch = Dim("batch", 1, 1, 8)
    height = Dim("height", 16, 256, 1024)
    width = Dim("width", 16, 256, 1024)

    def build(self) -> dict[str, nn.Module]:
        from .nets import SketchFilter

        return {"filter": SketchFilter(self.model_config.sigma, self.model_config.truncate)}

    def graphs(self) -> list[GraphSpec]:
        img = {"batch": self.batch, "height": self.height, "width": self.width, "value_range": (0.0, 1.0)}
        return [
            GraphSpec(
                "filter",
                inputs=(image_tensor("image", **img),),
                outputs=(image_tensor("dodge", **img),),
                tolerance=Tolerance(atol=1e-4, rtol=1e-3, psnr=60.0),
                module=self.modules["filter"],
                description="luma, Gaussian-blurred negative, colour dodge (clipped)",
            )
        ]

    def infer(self, sessions: Mapping[str, Any], batch: Sequence[StyleRequest], cfg: Config) -> list[StyleResult]:
        from .pipeline import run

        return run(sessions["filter"], batch, self.parse_config(cfg), self.inputs, self.batch, self.height, self.width)  # type: ignore[arg-type]

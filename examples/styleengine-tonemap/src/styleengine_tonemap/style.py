"""The ``tonemap`` Style: declarations, ``build``, ``graphs`` and ``infer`` (which calls the pipeline)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from styleengine import Capability, Dim, GraphSpec, ImageField, InputContract, Style, StyleRequest, StyleResult, Tolerance, image_tensor

from .config import Config, ModelConfig, TrainConfig

if TYPE_CHECKING:
    from torch import nn


class Tonemap(Style):
    name = "tonemap"
    aliases = ("tone-map",)
    description = "learnable colour / tone mapping: a per-pixel colour network with a local-context branch"
    capabilities = frozenset({Capability.INFER, Capability.EXPORT, Capability.TRAIN})
    Config = Config
    ModelConfig = ModelConfig
    TrainConfig = TrainConfig
    #: One image in [0, 1]; sides padded (replicate) up to a multiple of 16 and the output cropped back.
    #: 16 is a multiple of every ``context`` factor ModelConfig allows (0, 1, 2, 4, 8, 16).
    inputs = InputContract(
        images=(ImageField("image", "the photograph to grade"),),
        value_range=(0.0, 1.0),
        size_multiple=16,
        size_policy="pad",
        max_side=4096,
    )
    weights_hint = "train weights with `engine train tonemap --data DIR` (DIR/input and DIR/target, paired by name)"

    #: The graph's range (an export profile may change it); an image padded past the max is refused.
    batch = Dim("batch", 1, 2, 8)
    height = Dim("height", 16, 256, 1024, multiple_of=16)
    width = Dim("width", 16, 256, 1024, multiple_of=16)

    def build(self) -> dict[str, nn.Module]:
        from .nets import ToneMapNet

        return {"net": ToneMapNet(self.model_config.hidden, self.model_config.context)}

    def graphs(self) -> list[GraphSpec]:
        img = {"batch": self.batch, "height": self.height, "width": self.width, "value_range": (0.0, 1.0)}
        return [
            GraphSpec(
                "net",
                inputs=(image_tensor("image", **img),),
                outputs=(image_tensor("graded", **img),),
                tolerance=Tolerance(atol=1e-4, rtol=1e-3, psnr=60.0),
                module=self.modules["net"],
                description="per-pixel colour network + local context, clipped to [0, 1]",
            )
        ]

    def infer(self, sessions: Mapping[str, Any], batch: Sequence[StyleRequest], cfg: Config) -> list[StyleResult]:
        from .pipeline import run

        dims = {"batch": self.batch, "height": self.height, "width": self.width}
        return run(sessions["net"], batch, self.parse_config(cfg), self.inputs, dims)  # type: ignore[arg-type]

    def train(self, cfg: TrainConfig, ctx: Any) -> Any:
        from .train import train

        return train(self, cfg, ctx)

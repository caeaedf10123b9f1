"""``test-style``: a two-layer conv net with one graph, written exactly as a third-party plugin would.

It exercises every layer of the engine (registry, export, validation, runtimes, training glue,
serving) in milliseconds.  Its "stylisation" is a learned colour/texture filter with a residual
``strength`` parameter; training fits it to invert colours, so a few steps visibly reduce the loss.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

import styleengine
from styleengine.preprocess import fit, from_tensor, restore
from styleengine.spec import Dim, GraphSpec, Tolerance, image_tensor
from styleengine.style import Capability, InputContract, Style, StyleConfig, StyleRequest, StyleResult


class TinyNet(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, 3, 3, padding=1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.conv2(torch.relu(self.conv1(image))))


class ModelConfig(StyleConfig):
    channels: int = Field(8, ge=1, le=256, description="hidden channels")


class Config(StyleConfig):
    strength: float = Field(1.0, ge=0.0, le=1.0, description="blend between input (0) and filtered output (1)")


class TrainConfig(StyleConfig):
    model: ModelConfig = ModelConfig()
    lr: float = Field(1e-2, gt=0, le=1.0)
    batch_size: int = Field(2, ge=1, le=64)
    size: int = Field(32, ge=8, le=512, multiple_of=8)
    steps: int = Field(20, ge=1, le=1_000_000)
    preflight: Literal["full", "header"] = "full"


class TestStyle(Style):
    name = "test-style"
    aliases = ("teststyle",)
    description = "two-layer conv filter for testing the engine"
    capabilities = frozenset({Capability.INFER, Capability.EXPORT, Capability.TRAIN})
    Config = Config
    ModelConfig = ModelConfig
    TrainConfig = TrainConfig
    inputs = InputContract(size_multiple=8, size_policy="pad", max_side=2048)
    weights_hint = "train weights with `engine train test-style --data DIR`"

    height = Dim("height", 8, 32, 64, multiple_of=8)
    width = Dim("width", 8, 32, 64, multiple_of=8)
    batch = Dim("batch", 1, 2, 4)

    def build(self) -> dict[str, nn.Module]:
        return {"net": TinyNet(self.model_config.channels)}

    def graphs(self) -> list[GraphSpec]:
        img = dict(batch=self.batch, height=self.height, width=self.width)
        return [
            GraphSpec(
                "net",
                inputs=(image_tensor("image", **img),),
                outputs=(image_tensor("output", **img),),
                tolerance=Tolerance(atol=1e-4, rtol=1e-3, psnr=60.0),
                module=self.modules["net"],
            )
        ]

    def infer(self, sessions: Mapping[str, Any], batch: Sequence[StyleRequest], cfg: Config) -> list[StyleResult]:
        results = []
        for req in batch:
            f = fit(req.image(), self.inputs, self.height.replace(max=self.inputs.max_side), self.width.replace(max=self.inputs.max_side))
            out = sessions["net"].run({"image": f.tensor})["output"]
            out = cfg.strength * out + (1 - cfg.strength) * f.tensor
            results.append(StyleResult(from_tensor(restore(out, f)), seed=req.seed))
        return results

    def train(self, cfg: TrainConfig, ctx: Any) -> Any:
        from styleengine_test_style.train import train

        return train(self, cfg, ctx)


@styleengine.hookimpl
def register_styles(register: Any) -> None:
    register(TestStyle)

"""The three configs of the style: per request, architecture, training.

Each derives from :class:`styleengine.StyleConfig`: unknown keys and NaN/inf are refused, and every number has
two bounds, so the server can publish the form as-is and bad values get a 422 naming the field.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from styleengine import StyleConfig


class Config(StyleConfig):
    """Per request (``--set key=value`` on the CLI, form fields over HTTP)."""

    strength: float = Field(1.0, ge=0.0, le=1.0, description="blend between the input (0) and the graded image (1)")
    exposure: float = Field(0.0, ge=-3.0, le=3.0, description="exposure change in stops, applied before the network")


class ModelConfig(StyleConfig):
    """The architecture: saved beside the weights, so a checkpoint rebuilds its own network."""

    hidden: int = Field(16, ge=1, le=256, description="channels of the per-pixel colour network")
    context: Literal[0, 1, 2, 4, 8, 16] = Field(4, description="downscale factor of the local-context branch (0: per-pixel only)")


class TrainConfig(StyleConfig):
    """``engine train tonemap --data DIR``: DIR/input/*.png and DIR/target/*.png, paired by name."""

    model: ModelConfig = ModelConfig()
    lr: float = Field(5e-3, gt=0.0, le=1.0, description="Adam learning rate")
    batch_size: int = Field(4, ge=1, le=256)
    crop: int = Field(64, ge=8, le=1024, multiple_of=8, description="side of the random square crops trained on")
    steps: int = Field(500, ge=1, le=10_000_000)
    loss: Literal["l1", "l2"] = "l1"

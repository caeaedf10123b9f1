"""AdaIN configuration: per-request parameters (``Config``, the references' test options), the (empty)
architecture (``ModelConfig``) and the training options (``TrainConfig``, naoto0804/pytorch-AdaIN ``train.py``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from styleengine.style import StyleConfig

#: Encoder/decoder sides must be multiples of this (three 2x poolings / upsamplings).
MULTIPLE = 8

# Training defaults of the reference ``train.py`` (current version; early versions used style weight 1.0
# and 100k iterations).  The loss is ``CONTENT_WEIGHT * loss_c + STYLE_WEIGHT * loss_s``.
CONTENT_WEIGHT: float = 1.0
STYLE_WEIGHT: float = 10.0
LEARNING_RATE: float = 1e-4
LR_DECAY: float = 5e-5
BATCH_SIZE: int = 8
MAX_ITER: int = 160_000


class ModelConfig(StyleConfig):
    """AdaIN has no architecture options: the encoder is ``vgg_normalised`` up to relu4_1, the decoder its mirror."""


class Config(StyleConfig):
    """Per-request parameters (the references' test options)."""

    alpha: float = Field(1.0, ge=0.0, le=1.0, description="degree of stylisation: 0 = the content's reconstruction, 1 = full style")
    style_weights: tuple[Annotated[float, Field(ge=0.0, le=1e6)], ...] | None = Field(
        None, min_length=1, max_length=16,
        description="interpolation weights, one per style image (divided by their sum); default: equal weights",
    )
    preserve_color: bool = Field(False, description="keep the content's colours (CORAL on the style image, as the references)")
    content_size: int = Field(512, ge=0, le=4096, description="short side the content is processed at (0 = keep its size)")
    style_size: int = Field(512, ge=0, le=4096, description="short side the style image(s) are encoded at (0 = keep)")
    crop: bool = Field(False, description="centre-crop the style image(s) to a square first (the references' --crop)")

    @field_validator("style_weights")
    @classmethod
    def _positive_sum(cls, v: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if v is not None and sum(v) <= 0:
            raise ValueError("style_weights must have a positive sum")
        return v


class TrainConfig(StyleConfig):
    """Training options (naoto0804/pytorch-AdaIN ``train.py`` defaults)."""

    model: ModelConfig = ModelConfig()
    vgg: str | None = Field(None, description="vgg_normalised.pth (or an AdaIN checkpoint) for the frozen encoder")
    allow_random_encoder: bool = Field(False, description="train against a random encoder (tests only: the result cannot stylise)")
    lr: float = Field(LEARNING_RATE, gt=0.0, le=1.0)
    lr_decay: float = Field(LR_DECAY, ge=0.0, le=1.0)
    max_iter: int = Field(MAX_ITER, ge=1, le=100_000_000)
    batch_size: int = Field(BATCH_SIZE, ge=1, le=512)
    content_weight: float = Field(CONTENT_WEIGHT, ge=0.0, le=1e6)
    style_weight: float = Field(STYLE_WEIGHT, ge=0.0, le=1e6)
    load_size: int = Field(512, ge=8, le=4096, description="images are resized to load_size x load_size ...")
    crop_size: int = Field(256, ge=8, le=4096, multiple_of=8, description="... then a random crop_size square is taken")
    num_workers: int = Field(4, ge=0, le=64, description="threads decoding the next batch while the current one trains")
    preflight: Literal["full", "header"] = "full"
    samples: int = Field(4, ge=1, le=16, description="rows (content | style | output) in each sample grid")

    @model_validator(mode="after")
    def _crop_fits(self) -> TrainConfig:
        if self.crop_size > self.load_size:
            raise ValueError(f"crop_size {self.crop_size} is larger than load_size {self.load_size}")
        return self

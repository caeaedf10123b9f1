"""Gatys configuration: per-request options (``Config``: jcjohnson/neural-style's flags and defaults, plus the
``tutorial`` preset), the architecture (``ModelConfig``: which loss network, which TransformerNet) and the training
options of the fast network (``TrainConfig``: pytorch/examples ``fast_neural_style`` defaults).

neural-style's ``-seed`` is the request's seed (``engine infer --seed``, the ``seed`` form field), as for every
seeded style: without one a fresh seed is drawn and returned (neural-style's ``-seed -1``).

Option names follow neural-style's flags (``-content_weight`` is ``content_weight``); where the engine adds
something (multi-scale, clamping, the pixel scale of the optimised image) the README says so.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from styleengine.style import StyleConfig

#: Layers neural-style reads by default (``-content_layers relu4_2``, ``-style_layers relu1_1,...,relu5_1``).
CONTENT_LAYERS: tuple[str, ...] = ("relu4_2",)
STYLE_LAYERS: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")

#: Named presets: values a request gets unless it sets them itself (``--set preset=tutorial``).
#: ``neural-style`` is jcjohnson/neural-style's defaults (also the Config's own defaults).  ``tutorial`` is what
#: the project this engine grew from ran, after the PyTorch neural-style tutorial: Adam for 1000 steps,
#: content:style 1:100, no TV term, the image optimised in [0, 1] from the content image, clamped to [0, 1]
#: after every step (the tutorial's ImageNet normalisation and Gram / (a*b*c*d) are the loss network's and the
#: Gram's behaviour in every preset).  The tutorial itself names no Adam learning rate (it uses L-BFGS with lr 1);
#: 0.02 in [0, 1] units is what the project used and moves pixels about as far per step as neural-style's
#: lr 10 in 0-255 units does after its first steps.
PRESETS: dict[str, dict[str, Any]] = {
    "neural-style": {},
    "tutorial": {
        "optimizer": "adam",
        "num_iterations": 1000,
        "learning_rate": 0.02,
        "content_weight": 1.0,
        "style_weight": 100.0,
        "tv_weight": 0.0,
        "init": "image",
        "pixel_scale": 1,
        "clamp": "every_step",
    },
}

_TAP = r"^(conv|relu)[1-5]_[1-4]$"


class ModelConfig(StyleConfig):
    """Architecture: the optimisation's loss network (VGG-19, as both references) and nothing to choose for the
    fast network (the reference TransformerNet)."""

    network: Literal["vgg19", "vgg16"] = Field("vgg19", description="loss network of the optimisation (neural-style and the tutorial: VGG-19)")
    layout: Literal["torchvision", "normalised"] = Field(
        "torchvision",
        description="weights layout: torchvision (features.N.*, ImageNet mean/std) or AdaIN's vgg_normalised (Caffe preprocessing folded in); "
        "set automatically when weights are imported",
    )


class Config(StyleConfig):
    """Per-request options of the optimisation (variant ``default``); the ``fast`` variant reads none of them."""

    preset: Literal["neural-style", "tutorial"] = Field("neural-style", description="named defaults: neural-style or tutorial (see README)")
    image_size: int = Field(512, ge=0, le=4096, description="long side of the result (0 = the content's size); neural-style -image_size")
    content_weight: float = Field(5.0, ge=0.0, le=1e12, description="weight of the content loss (neural-style -content_weight)")
    style_weight: float = Field(100.0, ge=0.0, le=1e12, description="weight of the style loss (neural-style -style_weight)")
    tv_weight: float = Field(1e-3, ge=0.0, le=1e6, description="total-variation weight (0 disables)")
    num_iterations: int = Field(1000, ge=1, le=100_000, description="iterations at every scale")
    optimizer: Literal["lbfgs", "adam"] = "lbfgs"
    learning_rate: float = Field(10.0, gt=0.0, le=1e4, description="Adam's learning rate (L-BFGS steps with 1, as neural-style)")
    lbfgs_num_correction: int = Field(0, ge=0, le=1000, description="L-BFGS history size (0 = the default, 100)")
    content_layers: tuple[Annotated[str, Field(pattern=_TAP)], ...] = Field(CONTENT_LAYERS, min_length=1, max_length=16)
    style_layers: tuple[Annotated[str, Field(pattern=_TAP)], ...] = Field(STYLE_LAYERS, min_length=1, max_length=16)
    style_scale: float = Field(1.0, gt=0.0, le=8.0, description="style images are scaled to ceil(style_scale * size) on their long side")
    style_blend_weights: tuple[Annotated[float, Field(ge=0.0, le=1e6)], ...] | None = Field(
        None, min_length=1, max_length=16, description="one weight per style image (normalised to sum 1); default equal"
    )
    original_colors: bool = Field(False, description="keep the content's colours: result luminance, content chroma (YUV)")
    pooling: Literal["max", "avg"] = "max"
    init: Literal["random", "image"] = Field("random", description="start from noise or from the content image (or init_image, if given)")
    normalize_gradients: bool = Field(False, description="L1-normalise each loss's gradient (neural-style -normalize_gradients)")
    print_iter: int = Field(50, ge=0, le=100_000, description="report progress (losses) every N iterations (0: only at the end)")
    save_every: int = Field(0, ge=0, le=100_000, description="intermediate image every N iterations (0: none); neural-style -save_iter is 100")
    scales: int = Field(1, ge=1, le=6, description="multi-scale: optimise at this many sizes, coarse to fine, each scale_factor apart")
    scale_factor: float = Field(2.0, ge=1.0, le=4.0, description="size ratio between successive scales of the multi-scale optimisation")
    clamp: Literal["end", "every_step", "none"] = Field("end", description="clamp to the pixel range at the end (neural-style), after every step (tutorial), or not")
    pixel_scale: Literal[1, 255] = Field(255, description="the optimised image's range: 0-255 (neural-style's units for lr and TV) or 0-1 (tutorial)")

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("preset") is not None:
            name = data["preset"]
            if name not in PRESETS:
                raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
            data = {**PRESETS[name], **data}
        return data

    @field_validator("style_blend_weights")
    @classmethod
    def _positive_sum(cls, v: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if v is not None and sum(v) <= 0:
            raise ValueError("style_blend_weights must have a positive sum")
        return v


# fast_neural_style training defaults (pytorch/examples neural_style.py ``train`` sub-command).
FAST_CONTENT_WEIGHT = 1e5
FAST_STYLE_WEIGHT = 1e10
FAST_LR = 1e-3
FAST_IMAGE_SIZE = 256
FAST_BATCH_SIZE = 4
FAST_EPOCHS = 2
#: VGG-16 taps of the fast network's loss (the reference's four slices) and its content tap.
FAST_STYLE_LAYERS: tuple[str, ...] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
FAST_CONTENT_LAYER = "relu2_2"


class TrainConfig(StyleConfig):
    """``engine train gatys --style IMAGE --data CONTENT_DIR``: the fast network (fast_neural_style defaults)."""

    model: ModelConfig = ModelConfig()
    style_image: str | None = Field(None, description="the style image (or --style on the command line)")
    vgg: str | None = Field(None, description="torchvision vgg16 .pth / safetensors for the loss network")
    allow_random_vgg: bool = Field(False, description="train against a random VGG-16 (tests only: the result learns no style)")
    epochs: int = Field(FAST_EPOCHS, ge=1, le=1000)
    batch_size: int = Field(FAST_BATCH_SIZE, ge=1, le=256)
    image_size: int = Field(FAST_IMAGE_SIZE, ge=16, le=2048, description="content images: resize short side, centre crop")
    style_size: int | None = Field(None, ge=16, le=4096, description="style image resized to style_size x style_size, as the reference (None: its own size)")
    lr: float = Field(FAST_LR, gt=0.0, le=1.0)
    content_weight: float = Field(FAST_CONTENT_WEIGHT, ge=0.0, le=1e15)
    style_weight: float = Field(FAST_STYLE_WEIGHT, ge=0.0, le=1e15)
    num_workers: int = Field(0, ge=0, le=64)
    preflight: Literal["full", "header"] = "full"
    samples: int = Field(4, ge=1, le=16, description="rows (content | output) in each sample grid")

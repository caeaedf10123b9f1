"""pix2pix configuration: the architecture (``ModelConfig``), per-request parameters (``Config``) and
training hyper-parameters (``TrainConfig``), with the defaults of the reference implementation
(junyanz/pytorch-CycleGAN-and-pix2pix: ``options/base_options.py``, ``options/train_options.py`` and
``Pix2PixModel.modify_commandline_options``: ``--netG unet_256 --norm batch --gan_mode vanilla
--lambda_L1 100 --pool_size 0``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from styleengine.style import StyleConfig

NetG = Literal["unet_256", "unet_128", "resnet_9blocks", "resnet_6blocks"]

#: Side multiple each generator needs: a U-Net halves the map ``num_downs`` times down to 1 x 1; the
#: ResNet generator downsamples twice (stride 2) and upsamples twice, so any multiple of 4 round-trips.
SIZE_MULTIPLE: dict[str, int] = {"unet_256": 256, "unet_128": 128, "resnet_9blocks": 4, "resnet_6blocks": 4}

#: Seed of the ``reference`` variant's dropout masks when a request brings none: results stay
#: reproducible (and equal across runtimes) by default; pass a seed per request for other draws.
DEFAULT_SEED = 0


class ModelConfig(StyleConfig):
    """The generator's architecture; saved beside the weights so a checkpoint rebuilds its network."""

    netG: NetG = Field("unet_256", description="generator: U-Net with 8 / 7 downsamplings or ResNet with 9 / 6 blocks")
    ngf: int = Field(64, ge=1, le=512, description="generator filters in the last conv layer")
    norm: Literal["batch", "instance"] = Field("batch", description="normalisation layers")
    no_dropout: bool = Field(False, description="no dropout in the generator (pix2pix uses dropout 0.5)")
    input_nc: Literal[1, 3] = Field(3, description="input channels (1: the RGB input is converted to luma)")
    output_nc: Literal[1, 3] = Field(3, description="output channels (1: grey output, replicated to RGB)")
    direction: Literal["AtoB", "BtoA"] = Field(
        "AtoB", description="which side of the training pairs is the input (recorded with the weights)"
    )

    @property
    def size_multiple(self) -> int:
        return SIZE_MULTIPLE[self.netG]


class Config(StyleConfig):
    """Per-request parameters.  The dropout seed of the ``reference`` variant comes on the request."""

    size: int | None = Field(
        None,
        ge=4,
        le=4096,
        description=(
            "process at size x size, as the reference's test.py does (load_size = crop_size = 256, aspect "
            "ratio not kept), rounded to the generator's multiple; default: the nearest accepted size that "
            "keeps the aspect ratio"
        ),
    )


class TrainConfig(ModelConfig):
    """``engine train pix2pix`` options (``--set key=value`` or ``--config FILE``); reference defaults.

    Flat, like the reference's command line: the architecture fields of :class:`ModelConfig`
    (``netG``, ``ngf``, ``norm``, ``no_dropout``, ``input_nc``, ``output_nc``, ``direction``) sit beside
    the training ones, so ``--set netG=unet_128 --set direction=BtoA`` works.  A YAML config may also
    nest them under ``model:``.
    """

    # networks (generator: the ModelConfig fields)
    netD: Literal["basic", "n_layers", "pixel"] = Field("basic", description="discriminator: 70x70 PatchGAN, n-layer PatchGAN, 1x1 PixelGAN")
    ndf: int = Field(64, ge=1, le=512, description="discriminator filters in the first conv layer")
    n_layers_D: int = Field(3, ge=1, le=8, description="PatchGAN layers (netD=n_layers)")
    init_type: Literal["normal", "xavier", "kaiming", "orthogonal"] = "normal"
    init_gain: float = Field(0.02, gt=0, le=1)
    # objective and optimiser
    gan_mode: Literal["vanilla", "lsgan", "wgangp"] = Field("vanilla", description="GAN objective (pix2pix: vanilla)")
    lambda_L1: float = Field(100.0, ge=0, le=1e4, description="weight of the L1 loss")
    lr: float = Field(2e-4, gt=0, le=1, description="Adam learning rate (G and D)")
    beta1: float = Field(0.5, ge=0, lt=1, description="Adam beta1")
    n_epochs: int = Field(100, ge=0, le=100_000, description="epochs at the initial learning rate")
    n_epochs_decay: int = Field(100, ge=0, le=100_000, description="epochs of linear decay to zero")
    batch_size: int = Field(1, ge=1, le=512)
    # data
    preprocess: Literal["resize_and_crop", "crop", "none"] = Field(
        "resize_and_crop", description="resize to load_size then random crop_size crop / crop only / none"
    )
    load_size: int = Field(286, ge=4, le=8192)
    crop_size: int = Field(256, ge=4, le=8192)
    no_flip: bool = Field(False, description="no random horizontal flips")
    phase: str = Field("train", pattern=r"^[\w.-]+$", description="subfolder of --data with the training pairs")
    max_dataset_size: int | None = Field(None, ge=1, description="use at most this many pairs")
    num_workers: int = Field(0, ge=0, le=64, description="DataLoader worker processes")
    preflight: Literal["full", "header"] = Field("full", description="decode every image before training, or read headers only")
    sample_rows: int = Field(4, ge=1, le=16, description="rows (input | output | target) in sample grids")

    @model_validator(mode="before")
    @classmethod
    def _flatten_model(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("model"), dict):
            data = dict(data)
            nested = data.pop("model")
            both = sorted(k for k in nested if k in data and data[k] != nested[k])
            if both:
                raise ValueError(f"{both} given both at the top level and under model: with different values")
            data = {**nested, **data}
        return data

    @model_validator(mode="after")
    def _sizes_fit(self) -> TrainConfig:
        check_crop(self, self.model)
        if self.n_epochs + self.n_epochs_decay < 1:
            raise ValueError("n_epochs + n_epochs_decay must be at least 1")
        return self

    @property
    def model(self) -> ModelConfig:
        """The generator architecture (only the fields given explicitly count as set)."""
        return ModelConfig(**{k: getattr(self, k) for k in ModelConfig.model_fields if k in self.model_fields_set})


def check_crop(cfg: TrainConfig, model: ModelConfig) -> None:
    m = model.size_multiple
    if cfg.preprocess == "resize_and_crop" and cfg.crop_size > cfg.load_size:
        raise ValueError(f"crop_size {cfg.crop_size} is larger than load_size {cfg.load_size}")
    if cfg.preprocess != "none" and cfg.crop_size % m:
        raise ValueError(f"crop_size {cfg.crop_size} must be a multiple of {m} for netG={model.netG} (set crop_size)")

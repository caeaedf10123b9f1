"""BicycleGAN configuration: the architecture (``ModelConfig``), per-request parameters (``Config``) and
training hyper-parameters (``TrainConfig``), with the defaults of the reference implementation
(junyanz/BicycleGAN: ``options/base_options.py``, ``options/train_options.py``, ``options/test_options.py``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from styleengine.style import StyleConfig

NetG = Literal["unet_256", "unet_128"]
NetE = Literal["resnet_256", "resnet_128", "conv_256", "conv_128"]
NetD = Literal["basic_256_multi", "basic_128_multi", "basic_256", "basic_128"]

#: Side multiple each generator needs: the U-Net halves the map 8 (unet_256) / 7 (unet_128) times down to 1 x 1.
SIZE_MULTIPLE: dict[str, int] = {"unet_256": 256, "unet_128": 128}
#: The one side each encoder accepts (its final AvgPool2d(8) + linear layer are sized for it).
ENCODER_SIZE: dict[str, int] = {"resnet_256": 256, "resnet_128": 128, "conv_256": 256, "conv_128": 128}

#: Seed of the random z when a request brings none: results stay reproducible by default.
DEFAULT_SEED = 0

#: Bound on one latent value an explicit ``z`` may hold (z ~ N(0, 1) in training: |z| > 10 is never seen).
Z_BOUND = 10.0
ZValue = Annotated[float, Field(ge=-Z_BOUND, le=Z_BOUND)]


class ModelConfig(StyleConfig):
    """The generator's and encoder's architecture; saved beside the weights so a checkpoint rebuilds its networks.

    Defaults are the reference's ``base_options.py`` ones.  ``use_dropout`` leaves no trace in the weights and
    inference runs in eval mode (the reference's ``test.py`` calls ``model.eval()``), so it matters for training only.
    """

    netG: NetG = Field("unet_256", description="generator: U-Net with 8 / 7 downsamplings (sides multiple of 256 / 128)")
    where_add: Literal["all", "input"] = Field("all", description="where z enters G: every down-conv (G_Unet_add_all) or the input only")
    nz: int = Field(8, ge=1, le=256, description="length of the latent code z")
    ngf: int = Field(64, ge=1, le=512, description="generator filters in the last conv layer")
    nef: int = Field(64, ge=1, le=512, description="encoder filters in the first conv layer")
    netE: NetE = Field("resnet_256", description="encoder: E_ResNet with 5 / 4 blocks or E_NLayers with 5 / 4 layers (fixed input side 256 / 128)")
    norm: Literal["instance", "batch", "none"] = Field("instance", description="normalisation layers of G, E and the Ds")
    nl: Literal["relu", "lrelu", "elu"] = Field("relu", description="non-linearity of G's up path (E and D always use LeakyReLU 0.2)")
    upsample: Literal["basic", "bilinear"] = Field("basic", description="G's x2 up-sampling: 4x4 transposed conv, or bilinear + reflect pad + 3x3 conv")
    use_dropout: bool = Field(False, description="dropout 0.5 in G's 8 ngf levels (training only; reference default off, its train scripts turn it on)")
    input_nc: Literal[1, 3] = Field(3, description="input channels (1: the RGB input is converted to luma; edges2shoes / edges2handbags)")
    output_nc: Literal[1, 3] = Field(3, description="output channels (1: grey output, replicated to RGB); the encoder's input channels")
    direction: Literal["AtoB", "BtoA"] = Field("AtoB", description="which side of the training pairs is the input (recorded with the weights)")

    @property
    def size_multiple(self) -> int:
        return SIZE_MULTIPLE[self.netG]

    @property
    def encoder_size(self) -> int:
        return ENCODER_SIZE[self.netE]


class Config(StyleConfig):
    """Per-request parameters.  The seed of the random z comes on the request (``--seed``; default 0).

    Where z comes from, first match wins: an explicit ``z``; the ``style`` example image (z = the encoder's
    mean); else ``n_samples`` draws from N(0, 1) seeded by the request's seed (or ``sync_seed`` with ``sync``).
    With ``frames`` the outputs are an interpolation strip between two z instead.
    """

    n_samples: int = Field(5, ge=1, le=64, description="random samples per input (reference test.py --n_samples 5)")
    sync: bool = Field(False, description="the same z for every input (reference --sync): drawn from sync_seed, not the request's seed")
    sync_seed: int = Field(DEFAULT_SEED, ge=0, le=2**63 - 1, description="seed of the shared z with sync")
    z: list[ZValue] | list[list[ZValue]] | None = Field(
        None, max_length=64, description="explicit latent code(s): one vector of nz values, or a list of them (one output each)"
    )
    frames: int | None = Field(
        None, ge=2, le=64,
        description="interpolation strip of this many outputs from z0 to z1 (two seeded draws, or the two vectors of z) (reference video.py)",
    )
    interp: Literal["slerp", "linear"] = Field("slerp", description="interpolation path for frames (video.py uses slerp)")
    grid: bool = Field(False, description="answer with one grid image (rows of grid_cols) instead of one image per sample")
    grid_cols: int | None = Field(None, ge=1, le=64, description="samples per grid row (default: all in one row)")
    size: int | None = Field(
        None, ge=4, le=4096,
        description=(
            "process at size x size, as the reference's test scripts do (load_size = crop_size = 256), rounded to the "
            "generator's multiple; default: the nearest accepted size that keeps the aspect ratio"
        ),
    )

    @model_validator(mode="after")
    def _z_shape(self) -> Config:
        z = self.z
        if z is not None:
            if not z:
                raise ValueError("z is empty: give nz values, or a list of such vectors")
            if isinstance(z[0], list) and any(len(v) != len(z[0]) for v in z):  # type: ignore[arg-type]
                raise ValueError("the z vectors have different lengths")
            if self.frames is not None and len(self.vectors()) != 2:
                raise ValueError(f"frames interpolates between two z vectors; z holds {len(self.vectors())}")
        return self

    def vectors(self) -> list[list[float]]:
        """``z`` as a list of vectors (empty when not given)."""
        if self.z is None:
            return []
        return [list(v) for v in self.z] if isinstance(self.z[0], list) else [list(self.z)]  # type: ignore[arg-type]


class TrainConfig(ModelConfig):
    """``engine train bicyclegan`` options (``--set key=value`` or ``--config FILE``); reference defaults.

    Flat, like the reference's command line: the architecture fields of :class:`ModelConfig` sit beside the
    training ones (a YAML config may also nest them under ``model:``).  Defaults are ``base_options.py`` /
    ``train_options.py``; ``use_dropout`` defaults to on here, as every training script of the reference passes
    ``--use_dropout``.
    """

    use_dropout: bool = Field(True, description="dropout 0.5 in G (the reference's train_*.sh pass --use_dropout)")
    # discriminators
    netD: NetD = Field("basic_256_multi", description="D for the cVAE-GAN path (encoded z)")
    netD2: NetD = Field("basic_256_multi", description="D2 for the cLR-GAN path (random z)")
    num_Ds: int = Field(2, ge=1, le=4, description="scales of a *_multi discriminator")
    ndf: int = Field(64, ge=1, le=512, description="discriminator filters in the first conv layer")
    conditional_D: bool = Field(False, description="D sees (A, B) pairs instead of B alone")
    use_same_D: bool = Field(False, description="one D for both paths")
    init_type: Literal["normal", "xavier", "kaiming", "orthogonal"] = "xavier"
    init_gain: float = Field(0.02, gt=0, le=1)
    # objective
    gan_mode: Literal["lsgan", "vanilla", "wgangp"] = Field("lsgan", description="GAN objective")
    lambda_L1: float = Field(10.0, ge=0, le=1e4, description="weight of |B - G(A, E(B))|")
    lambda_GAN: float = Field(1.0, ge=0, le=1e4, description="weight of D(G(A, E(B)))")
    lambda_GAN2: float = Field(1.0, ge=0, le=1e4, description="weight of D2(G(A, z_random))")
    lambda_z: float = Field(0.5, ge=0, le=1e4, description="weight of |E(G(A, z_random)) - z_random|")
    lambda_kl: float = Field(0.01, ge=0, le=1e4, description="weight of the KL loss")
    update_order: Literal["reference", "D_first"] = Field(
        "reference", description="reference: G and E (then G alone), then the Ds, as optimize_parameters; D_first: the Ds first"
    )
    # optimiser and schedule
    lr: float = Field(2e-4, gt=0, le=1, description="Adam learning rate (G, E, Ds)")
    beta1: float = Field(0.5, ge=0, lt=1, description="Adam beta1")
    niter: int = Field(100, ge=0, le=100_000, description="epochs at the initial learning rate")
    niter_decay: int = Field(100, ge=0, le=100_000, description="epochs of linear decay to zero")
    batch_size: int = Field(2, ge=2, le=512, description="even: half the batch takes the encoded z, half a random z")
    # data
    preprocess: Literal["resize_and_crop", "crop", "none"] = Field("resize_and_crop", description="resize to load_size then random crop_size crop / crop only / none")
    load_size: int = Field(286, ge=4, le=8192)
    crop_size: int = Field(256, ge=4, le=8192)
    no_flip: bool = Field(False, description="no random horizontal flips")
    phase: str = Field("train", pattern=r"^[\w.-]+$", description="subfolder of --data with the training pairs")
    max_dataset_size: int | None = Field(None, ge=1, description="use at most this many pairs")
    num_workers: int = Field(0, ge=0, le=64, description="DataLoader worker processes")
    preflight: Literal["full", "header"] = Field("full", description="decode every image before training, or read headers only")
    sample_rows: int = Field(4, ge=1, le=16, description="inputs (rows) in sample grids")
    sample_z: int = Field(4, ge=1, le=16, description="random z per input in sample grids")

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
    def _check(self) -> TrainConfig:
        if self.batch_size % 2:
            raise ValueError(
                f"batch_size must be even, got {self.batch_size}: BicycleGAN trains half of each batch with the encoded z "
                "(cVAE-GAN) and half with a random z (cLR-GAN)"
            )
        check_sizes(self, self.model)
        if self.niter + self.niter_decay < 1:
            raise ValueError("niter + niter_decay must be at least 1")
        return self

    @property
    def model(self) -> ModelConfig:
        """The architecture (only the fields given explicitly count as set; ``use_dropout`` always)."""
        fields = {k for k in ModelConfig.model_fields if k in self.model_fields_set} | {"use_dropout"}
        return ModelConfig(**{k: getattr(self, k) for k in fields})


def check_sizes(cfg: TrainConfig, model: ModelConfig) -> None:
    """The training crop must fit both networks: G's multiple and E's one accepted side."""
    m = model.size_multiple
    if cfg.preprocess == "resize_and_crop" and cfg.crop_size > cfg.load_size:
        raise ValueError(f"crop_size {cfg.crop_size} is larger than load_size {cfg.load_size}")
    if cfg.preprocess != "none" and cfg.crop_size % m:
        raise ValueError(f"crop_size {cfg.crop_size} must be a multiple of {m} for netG={model.netG} (set crop_size)")
    if cfg.preprocess != "none" and cfg.crop_size != model.encoder_size:
        raise ValueError(
            f"crop_size {cfg.crop_size} does not fit netE={model.netE}, which takes {model.encoder_size} x {model.encoder_size} "
            "images only (its final average pool); set crop_size or netE"
        )

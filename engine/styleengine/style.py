"""The Style base class: what a plugin declares once, and the request/result types around it.

A style declares, on its class:

* ``name``, ``aliases``, ``description``, ``api_version`` and ``capabilities``;
* ``Config``: the per-request parameters (pydantic, ``extra="forbid"``, finite, bounded) — the serving
  layer turns it into the HTTP form and OpenAPI schema, the CLI into ``--set key=value``;
* ``ModelConfig``: the architecture (saved beside the weights, so a checkpoint rebuilds its network);
* ``TrainConfig``: the training hyper-parameters (only for styles with the ``train`` capability);
* ``inputs``: an :class:`InputContract` (which images and texts a request carries, value range, size
  multiple, and how other sizes are handled);
* ``variants``: named export variants (e.g. pix2pix ``eval`` / ``reference`` normalisation).

and implements ``build`` (create the torch modules), ``graphs`` (GraphSpecs over those modules),
``infer`` (the pipeline over Sessions), and optionally ``train`` and ``import_weights``.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

from . import API_VERSION

if TYPE_CHECKING:
    import torch

    from .runtime.base import Session
    from .spec import GraphSpec
    from .training import TrainContext, TrainResult

log = logging.getLogger(__name__)


class Capability(str, enum.Enum):
    """What a style can do.  Declare only what is implemented: ``engine plugins --check`` and the conformance
    suite refuse a declared capability whose method is missing.

    ``INFER``: :meth:`Style.infer`; ``EXPORT``: :meth:`Style.graphs` returns exportable GraphSpecs;
    ``TRAIN``: :meth:`Style.train` and a ``TrainConfig``."""

    TRAIN = "train"
    EXPORT = "export"
    INFER = "infer"


class StyleConfig(BaseModel):
    """Base for a style's pydantic configs: unknown keys, non-finite numbers and booleans given for
    numbers (pydantic's lax mode reads ``true`` as 1.0) are refused."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True, protected_namespaces=())

    @field_validator("*", mode="before")
    @classmethod
    def _no_bools_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        if isinstance(value, bool) and field is not None and _numeric_only(field.annotation):
            raise ValueError(f"expected a number, got {str(value).lower()}")
        return value


def _numeric_only(annotation: Any) -> bool:
    """int / float, optionally with None (``float | None``): the annotations where a bool is a mistake."""
    import types
    import typing

    if annotation in (int, float):
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return bool(args) and all(a in (int, float) for a in args)
    return False


class EmptyConfig(StyleConfig):
    pass


class RequestError(ValueError):
    """A request a style refuses for what it asks (e.g. an adapter name that is not loaded): the service answers
    400 ``invalid_request`` with the message (so name the valid choices in it), and re-runs a batch holding such a
    request one request at a time, so only the offending request is refused."""


class WeightsRequiredError(RuntimeError):
    """A style would run with random weights; the message says how to get or train weights."""


@dataclass(frozen=True)
class ImageField:
    """One image a request carries (``content``, ``style`` ...)."""

    name: str = "image"
    description: str = "input image"
    required: bool = True
    #: Several images may be given under this name (e.g. AdaIN style interpolation).
    multiple: bool = False


@dataclass(frozen=True)
class TextField:
    name: str
    description: str = ""
    required: bool = True
    max_length: int = 1000


@dataclass(frozen=True)
class InputContract:
    """What a request carries and how images are brought to a size the graphs accept.

    ``resize``: the image is resized to the nearest accepted size and the output resized back;
    ``pad``: reflect-padded up to the next multiple and the output cropped back;
    ``fixed``: resized to ``fixed_size`` × ``fixed_size`` and back;
    ``none``: sizes that do not fit are refused.
    """

    images: tuple[ImageField, ...] = (ImageField(),)
    texts: tuple[TextField, ...] = ()
    value_range: tuple[float, float] = (-1.0, 1.0)
    size_multiple: int = 1
    size_policy: Literal["resize", "pad", "fixed", "none"] = "resize"
    fixed_size: int | None = None
    min_side: int = 1
    max_side: int = 4096
    seeded: bool = False


@dataclass
class StyleRequest:
    """One request: decoded images (float32 HxWx3 RGB in [0, 1]), texts, and a seed."""

    images: Mapping[str, np.ndarray | list[np.ndarray]]
    texts: Mapping[str, str] = field(default_factory=dict)
    seed: int | None = None
    id: str = ""

    def image(self, name: str = "image") -> np.ndarray:
        img = self.images[name]
        return img[0] if isinstance(img, list) else img


@dataclass
class StyleResult:
    image: np.ndarray  # float32 HxWx3 RGB in [0, 1]; for several outputs, the one to show (e.g. a grid)
    seed: int | None = None
    #: Several outputs of one request (BicycleGAN samples, txt2img images): each float32 HxWx3 in [0, 1].
    #: ``image`` then holds what a single-image answer shows (a grid of them, or the first).
    images: list[np.ndarray] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


class Style:
    """Base class of every style.  Subclass it in a plugin and register the class."""

    #: The name commands and requests use (lower case, digits, ``-``, ``_``); unique across plugins.
    name: ClassVar[str]
    #: Other names that resolve to this style (``engine infer tone-map ...``); unique across plugins too.
    aliases: ClassVar[tuple[str, ...]] = ()
    #: One line shown by ``engine styles`` and in the service's docs.
    description: ClassVar[str] = ""
    #: The plugin API version the style was written for; refused at registration unless it is the engine's.
    api_version: ClassVar[int] = API_VERSION
    #: What the style implements (see :class:`Capability`); default: infer and export.
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.INFER, Capability.EXPORT})
    #: Per-request parameters (``--set``, HTTP form fields): a :class:`StyleConfig` subclass.
    Config: ClassVar[type[StyleConfig]] = EmptyConfig
    #: Architecture options (``--model-set``); saved beside the weights so a checkpoint rebuilds its network.
    ModelConfig: ClassVar[type[StyleConfig]] = EmptyConfig
    #: Training hyper-parameters (``engine train --set``); required with ``Capability.TRAIN``.
    TrainConfig: ClassVar[type[StyleConfig] | None] = None
    #: What a request carries and how its images are sized (see :class:`InputContract`).
    inputs: ClassVar[InputContract] = InputContract()
    #: Named export variants (e.g. pix2pix ``eval`` / ``reference`` normalisation); the first is the default.
    variants: ClassVar[tuple[str, ...]] = ("default",)
    #: Data folders ``engine train`` takes (``--data`` or, for several, ``--content DIR --style DIR``).
    train_data: ClassVar[tuple[str, ...]] = ("data",)
    #: Published weights ``engine pull STYLE:NAME`` can fetch (name → styleengine.pull.Pretrained).
    pretrained: ClassVar[Mapping[str, Any]] = {}
    #: Shown when a command would run without weights: how to get or train them.
    weights_hint: ClassVar[str] = "train weights with `engine train STYLE` or pass --weights PATH"
    #: False for styles that run without trained weights (a fixed filter, a colour grade, an
    #: optimisation whose only network is a loss network it loads itself): never asked for weights.
    #: A style whose variants differ overrides it with a property.
    needs_weights: ClassVar[bool] = True
    #: True when ``infer`` is long work (optimisation, many steps): the server offers it as a task
    #: (submit / status / get / cancel) besides the synchronous endpoint, and it reports progress
    #: through :func:`styleengine.cancel.progress` and stops at :func:`styleengine.cancel.check`.
    long_running: ClassVar[bool] = False
    #: The smallest model configuration (``ModelConfig`` values, as ``--model-set`` takes them) with the
    #: architecture's real structure: what tests, the CPU demo and CPU benchmarks serve.  Every style is
    #: servable in it on a CPU within a minute (tests/serving/test_every_style.py checks all installed styles).
    tiny_model_set: ClassVar[Mapping[str, Any]] = {}
    #: Request parameters that keep one request of the tiny configuration quick on a CPU (``--param``),
    #: e.g. a diffusion style's steps and working resolution.
    tiny_params: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, model_config: StyleConfig | Mapping[str, Any] | None = None, variant: str | None = None):
        if model_config is None:
            model_config = self.ModelConfig()
        elif isinstance(model_config, Mapping):
            model_config = self.ModelConfig(**model_config)
        self.model_config = model_config
        self.variant = self.check_variant(variant)
        #: Where the weights came from (None = random initialisation), and their sha256.
        self.weights_path: Path | None = None
        self.weights_sha256: str | None = None
        self._modules: dict[str, torch.nn.Module] | None = None

    # -- identity ------------------------------------------------------------------------------
    @classmethod
    def check_variant(cls, variant: str | None) -> str:
        variant = variant or cls.variants[0]
        if variant not in cls.variants:
            raise ValueError(f"style {cls.name}: unknown variant {variant!r}; choose one of {', '.join(cls.variants)}")
        return variant

    @classmethod
    def has(cls, cap: Capability | str) -> bool:
        return Capability(cap) in cls.capabilities

    # -- modules and weights -------------------------------------------------------------------
    def build(self) -> dict[str, torch.nn.Module]:
        """Create this style's torch modules (randomly initialised) from ``self.model_config``."""
        raise NotImplementedError

    #: Random initialisation is seeded, so random-weight artifacts can be re-validated later.
    init_seed: ClassVar[int] = 0

    @property
    def modules(self) -> dict[str, torch.nn.Module]:
        if self._modules is None:
            import torch

            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.init_seed)
                self._modules = self.build()
            for m in self._modules.values():
                m.eval()
        return self._modules

    def load_weights(self, path: str | Path) -> None:
        """Load weights: the engine's checkpoint format, else the style's reference importers."""
        from .weights import is_engine_checkpoint, load_checkpoint, sha256_path

        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"weights not found: {path}")
        if is_engine_checkpoint(path):
            ckpt = load_checkpoint(path)
            if ckpt.style not in (None, self.name):
                raise ValueError(f"{path} holds weights of style {ckpt.style!r}, not {self.name!r}")
            if ckpt.model_config:
                self.model_config = self.ModelConfig(**ckpt.model_config)
                self._modules = None
            self.load_state_dict(ckpt.tensors, source=str(path))
        else:
            self.import_weights(path)
        self.weights_path = path
        self.weights_sha256 = sha256_path(path)

    def import_weights(self, path: Path) -> None:
        """Import a reference implementation's checkpoint.  Styles with importers override this."""
        raise ValueError(
            f"style {self.name}: {path} is not an engine checkpoint (a .safetensors file or a folder with "
            "model.safetensors + config.json) and this style has no importer for other formats"
        )

    def state_dict(self) -> dict[str, torch.Tensor]:
        """All modules' tensors, keys prefixed with the module name (``generator.model.0.weight``)."""
        return {f"{m}.{k}": v for m, mod in self.modules.items() for k, v in mod.state_dict().items()}

    def load_state_dict(self, tensors: Mapping[str, torch.Tensor], source: str = "state dict") -> None:
        by_module: dict[str, dict[str, torch.Tensor]] = {m: {} for m in self.modules}
        unknown = []
        for key, value in tensors.items():
            mod, _, rest = key.partition(".")
            if mod in by_module:
                by_module[mod][rest] = value
            else:
                unknown.append(key)
        if unknown:
            raise ValueError(f"{source}: keys for unknown modules {unknown[:5]} (modules: {list(self.modules)})")
        for mod, sd in by_module.items():
            missing, unexpected = self.modules[mod].load_state_dict(sd, strict=False)
            if missing or unexpected:
                raise ValueError(
                    f"{source}: module {mod!r} does not match: missing {list(missing)[:8]}, unexpected {list(unexpected)[:8]}"
                )

    def require_weights(self, allow_random: bool) -> None:
        if self.weights_path is None and self.needs_weights and not allow_random:
            raise WeightsRequiredError(
                f"style {self.name} has no weights loaded. {self.weights_hint}. "
                "Pass --allow-random-weights to run with random weights (latency work and tests only)."
            )

    @classmethod
    def text_choices(cls, model_config: Mapping[str, Any]) -> dict[str, list[str]]:
        """Known values of text fields for a deployment's model config (``--model-set`` values), e.g. the names of
        the adapters a server loads: the playground offers them, and the server's warm-up uses the first (a field
        listed with no values is left out of warm-up requests).  Torch-free; the default is none."""
        return {}

    @classmethod
    def serving_defaults(cls, specs: Sequence[GraphSpec]) -> dict[str, Any]:
        """Request-parameter defaults a server should use with graphs of these ``specs`` (exported dims).

        The default is none.  A style whose Config picks a working size (a diffusion style's
        ``resolution``) returns one inside the exported dims, so a server on small artifacts answers
        requests that leave the parameter out and warms up at a size its graphs take.  Torch-free: it
        sees the manifest's specs (``specs`` is empty for the torch runtime)."""
        return {}

    # -- the three verbs -----------------------------------------------------------------------
    def graphs(self) -> list[GraphSpec]:
        """The graphs of the current variant, over ``self.modules``: what the torch runtime runs, and (unless
        :meth:`export_graphs` says otherwise) what ``engine export`` exports."""
        return []

    def export_graphs(self) -> list[GraphSpec]:
        """The graphs ``engine export`` exports: :meth:`graphs` unless a style exports other modules than it
        runs in torch (e.g. LoRA adapters fused into copies of the weights, export-only attention kernels).
        Same names, inputs and outputs as :meth:`graphs`, so torch and exported sessions are interchangeable."""
        return self.graphs()

    def export_metadata(self) -> dict[str, Any]:
        """Extra top-level fields for an export's ``manifest.json`` (JSON-safe; e.g. which adapters were fused
        into the exported weights).  Must not reuse the manifest's own field names."""
        return {}

    def infer(self, sessions: Mapping[str, Session], batch: Sequence[StyleRequest], cfg: StyleConfig) -> list[StyleResult]:
        """Run the pipeline on ``batch`` and return one :class:`StyleResult` per request, in order.

        ``sessions`` maps each graph name of :meth:`graphs` to a Session (torch, ONNX Runtime or TensorRT:
        ``session.run({input_name: NCHW torch tensor})`` returns ``{output_name: tensor}``), so the same code runs
        on every runtime.  Each request holds decoded images (float32 HxWx3 RGB in [0, 1], under the names of
        ``inputs.images``; a list for ``multiple`` fields), texts (``inputs.texts``) and a seed.  ``cfg`` is this
        style's ``Config``, shared by the batch (the server groups requests by parameters and image size).

        Bring each image to a size the graphs take with :func:`styleengine.preprocess.fit` and the output back
        with :func:`~styleengine.preprocess.restore`, convert with ``to_tensor`` / ``from_tensor``; return images
        at the request's size, float32 in [0, 1].  A request's result must not depend on the others in the batch,
        and randomness comes from generators seeded by ``req.seed``.  Long work calls
        :func:`styleengine.cancel.check` between steps so a timed-out request stops."""
        raise NotImplementedError

    def train(self, cfg: StyleConfig, ctx: TrainContext) -> TrainResult:
        """Train ``self.modules`` with ``cfg`` (a ``TrainConfig``); ``ctx`` (:class:`styleengine.training.TrainContext`)
        gives the data folders, the accelerate Accelerator, progress, checkpoints (``ctx.save``) and resume
        (``ctx.resume_into``).  Return a :class:`~styleengine.training.TrainResult` naming the last checkpoint."""
        raise NotImplementedError(f"style {self.name} cannot be trained")

    # -- helpers for pipelines ------------------------------------------------------------------
    def parse_config(self, values: Mapping[str, Any] | StyleConfig | None) -> StyleConfig:
        """``values`` (a dict, a Config or None for the defaults) as this style's validated ``Config``."""
        if isinstance(values, StyleConfig):
            return values
        return self.Config(**(values or {}))

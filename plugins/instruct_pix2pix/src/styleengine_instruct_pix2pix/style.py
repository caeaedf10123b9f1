"""The ``instruct_pix2pix`` style: edit an image by a written instruction (Brooks, Holynski & Efros, CVPR 2023).

Four graphs from the shared diffusion core (:func:`styleengine.diffusion.diffusion_graphs` with
``guidance_multiplicity=3``): ``text_encoder``, ``unet`` (8 input channels; batch axis ``unet_batch`` = 3 × the
request batch: text+image, image only, unconditional), ``vae_encoder`` and ``vae_decoder`` (fp32 only).  The
pipeline (:func:`styleengine_instruct_pix2pix.pipeline.edit`) runs over Sessions, so each graph may run on torch,
ONNX Runtime or TensorRT.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field

from styleengine.diffusion.components import SCHEDULERS
from styleengine.diffusion.sessions import loop_device
from styleengine.diffusion.sources import source_identity
from styleengine.preprocess import SizeError, from_tensor, to_tensor
from styleengine.pull import Pretrained
from styleengine.spec import GraphSpec
from styleengine.style import (
    Capability,
    ImageField,
    InputContract,
    Style,
    StyleConfig,
    StyleRequest,
    StyleResult,
    TextField,
)

from .models import (
    MODULES,
    LoraSpec,
    ModelConfig,
    apply_lora,
    build_components,
    components_from_meta,
    meta_tensors,
    pipeline_parts,
    split_tensors,
    weights_kind,
)
from .pipeline import (
    DEFAULT_GUIDANCE_SCALE,
    DEFAULT_IMAGE_GUIDANCE_SCALE,
    DEFAULT_RESOLUTION,
    DEFAULT_STEPS,
    edit,
    fit,
    resize_to,
    resolve_size,
)

log = logging.getLogger(__name__)

#: The published model (diffusers layout).  Revision pinned to a commit of the Hub repository as recorded by
#: projects that pin it (not re-checked here: this machine has no network); ``engine pull`` verifies nothing
#: more than the revision, so a wrong pin fails loudly rather than fetching something else.
HUB_REPO = "timbrooks/instruct-pix2pix"
HUB_REVISION = "31519b5cb02a7fd89b906d88731cd4d6a7bbf88d"
HUB_REF = f"hf://{HUB_REPO}@{HUB_REVISION}"

SchedulerName = Literal[tuple(SCHEDULERS)]  # type: ignore[valid-type]


class Config(StyleConfig):
    """Per-request parameters (defaults: the reference's ``edit_cli.py``)."""

    steps: int = Field(DEFAULT_STEPS, ge=1, le=500, description="denoising steps")
    guidance_scale: float = Field(
        DEFAULT_GUIDANCE_SCALE, ge=0.0, le=50.0,
        description="text guidance s_T: how strongly to follow the instruction (<= 1 switches guidance off)",
    )
    image_guidance_scale: float = Field(
        DEFAULT_IMAGE_GUIDANCE_SCALE, ge=0.0, le=20.0,
        description="image guidance s_I: how closely to stay with the input image (< 1 switches guidance off)",
    )
    scheduler: SchedulerName = Field("euler_ancestral", description="sampler (the reference: Euler ancestral)")
    resolution: int = Field(
        DEFAULT_RESOLUTION, ge=64, le=1024,
        description="working size: the long side is scaled to about this, both sides to multiples of 64 (edit_cli.py's rule)",
    )
    output_size: Literal["input", "working"] = Field(
        "input", description="return the edit at the request's size (resized back) or at the working size"
    )


class TrainConfig(StyleConfig):
    """Training options (diffusers' ``train_instruct_pix2pix.py`` / the reference's ``configs/train.yaml``)."""

    model: ModelConfig = ModelConfig()
    method: Literal["full", "lora"] = Field("full", description="fine-tune the whole UNet, or a LoRA adapter of it")
    learning_rate: float | None = Field(None, gt=0.0, le=1.0, description="default 5e-5 (full), 1e-4 (LoRA)")
    lora_rank: int = Field(4, ge=1, le=1024)
    lora_alpha: float | None = Field(None, gt=0.0, le=4096.0, description="default: the rank (scale 1)")
    lora_targets: tuple[str, ...] = Field(("to_k", "to_q", "to_v", "to_out.0"), min_length=1, max_length=32)
    resolution: int = Field(256, ge=64, le=1024, multiple_of=64, description="square training size (reference: 256)")
    random_flip: bool = Field(True, description="flip input and edited image together, p = 0.5")
    batch_size: int = Field(4, ge=1, le=512)
    gradient_accumulation_steps: int = Field(1, ge=1, le=1024)
    max_train_steps: int = Field(15000, ge=1, le=100_000_000, description="optimiser updates")
    conditioning_dropout_prob: float = Field(
        0.05, ge=0.0, le=1 / 3, description="p: drop the text (2p), the image (2p), both (p) -- section 3.2.1"
    )
    adam_beta1: float = Field(0.9, ge=0.0, lt=1.0)
    adam_beta2: float = Field(0.999, ge=0.0, lt=1.0)
    adam_weight_decay: float = Field(1e-2, ge=0.0, le=1.0)
    adam_epsilon: float = Field(1e-8, gt=0.0, le=1.0)
    max_grad_norm: float = Field(1.0, gt=0.0, le=1e6)
    lr_scheduler: Literal["constant", "constant_with_warmup", "linear", "cosine"] = "constant"
    lr_warmup_steps: int = Field(0, ge=0, le=10_000_000)
    use_ema: bool = Field(False, description="keep an EMA of the trained weights (diffusers' EMAModel); saved weights use it")
    ema_decay: float = Field(0.9999, gt=0.0, lt=1.0)
    gradient_checkpointing: bool = False
    split: Literal["all", "train", "val", "test"] = Field(
        "all", description="seeds.json layout: use the reference's 90/5/5 split (or everything)"
    )
    validation_images: int = Field(2, ge=0, le=16, description="dataset triplets edited in each sample grid")
    validation_steps: int = Field(20, ge=1, le=500, description="denoising steps of the sample edits")
    num_workers: int = Field(2, ge=0, le=64, description="threads decoding images")
    preflight: Literal["full", "header"] = "full"
    eval_loss: bool = Field(True, description="report a fixed-noise loss on the first batch before and after training")
    allow_random_init: bool = Field(
        False, description="train SD 1.5-shaped random weights (no base model; tests and plumbing only)"
    )


class InstructPix2PixStyle(Style):
    name = "instruct_pix2pix"
    aliases = ("instruct-pix2pix", "ip2p")
    description = "edit an image by a written instruction (InstructPix2Pix, Brooks et al., CVPR 2023)"
    capabilities = frozenset({Capability.INFER, Capability.EXPORT, Capability.TRAIN})
    Config = Config
    ModelConfig = ModelConfig
    TrainConfig = TrainConfig
    inputs = InputContract(
        images=(ImageField("image", "the photograph to edit"),),
        texts=(
            TextField("instruction", "the edit to make, e.g. 'make it snowy'", required=True, max_length=500),
            TextField("negative_prompt", "what the edit should avoid (optional)", required=False, max_length=500),
        ),
        value_range=(-1.0, 1.0),
        size_multiple=64,
        size_policy="resize",
        min_side=8,
        max_side=8192,
        seeded=True,
    )
    train_data = ("data",)
    tiny_model_set = {"size": "tiny"}
    tiny_params = {"steps": 2, "resolution": 64}
    pretrained = {
        "timbrooks": Pretrained(
            url=HUB_REF,
            description="timbrooks/instruct-pix2pix (diffusers layout: UNet, VAE, CLIP text encoder, tokenizer)",
            model_config={"source": HUB_REF},
        )
    }
    weights_hint = (
        f"use the published model: --model-set source={HUB_REF} (or `engine pull instruct_pix2pix`, or "
        "--weights with a diffusers folder / instruct-pix2pix-00-22000.ckpt), or train with `engine train instruct_pix2pix`"
    )

    #: Graph ranges: requests per call and latent sides (pixels / 8; multiples of 8 = 64 px, the resolve_size
    #: grid).  64-1024 px covers every working size edit_cli.py's rule gives up to resolution 1024 (almost).
    batch_range: ClassVar[dict[str, tuple[int, int, int]]] = {"sd15": (1, 1, 4), "tiny": (1, 2, 4)}
    latent_range: ClassVar[dict[str, tuple[int, int, int]]] = {"sd15": (8, 64, 128), "tiny": (8, 16, 32)}

    def __init__(self, model_config: Any = None, variant: str | None = None) -> None:
        super().__init__(model_config, variant)
        self._components: Any = None
        self._parts: tuple[Any, dict[str, Any], float] | None = None
        self._schedulers: dict[str, Any] = {}

    # -- components and weights -----------------------------------------------------------------------
    @property
    def model_config_(self) -> ModelConfig:
        mc = self.model_config
        assert isinstance(mc, ModelConfig)
        return mc

    def _arch(self) -> str:
        """``sd15`` or ``tiny``: which graph ranges apply (a source is SD 1.x-sized)."""
        mc = self.model_config_
        return "tiny" if mc.source is None and mc.size == "tiny" else "sd15"

    def build(self) -> dict[str, torch.nn.Module]:
        mc = self.model_config_
        self._components = build_components(mc, seed=self.init_seed)
        self._reset_derived()
        if mc.source is not None and self.weights_path is None:
            self.weights_path, self.weights_sha256 = source_identity(mc.source, self._components.revision)
        return {m: getattr(self._components, m) for m in MODULES}

    def require_weights(self, allow_random: bool) -> None:
        if self.model_config_.source is None:
            super().require_weights(allow_random)

    @property
    def components(self) -> Any:
        """The :class:`~styleengine.diffusion.Components` (built on first use)."""
        _ = self.modules
        return self._components

    def _reset_derived(self) -> None:
        self._parts = None
        self._schedulers = {}

    def _set_model_config(self, mc: ModelConfig) -> None:
        self.model_config = mc
        self._modules = None
        self._components = None
        self.weights_path = self.weights_sha256 = None
        self._reset_derived()

    def load_weights(self, path: str | Path) -> None:
        """A diffusers folder, the original single file, ``hf://...``, or an engine checkpoint (full / UNet / LoRA)."""
        from styleengine.weights import load_checkpoint, sha256_path

        if not str(path).startswith("hf://") and not Path(path).exists():
            raise FileNotFoundError(f"weights not found: {path}")
        if str(path).startswith("hf://") or weights_kind(path) != "engine":
            self.import_weights(path)  # identity (path, sha256) set when the source is loaded
            return
        path = Path(path)
        ckpt = load_checkpoint(path)
        if ckpt.style not in (None, self.name):
            raise ValueError(f"{path} holds weights of style {ckpt.style!r}, not {self.name!r}")
        self._set_model_config(ModelConfig(**ckpt.model_config) if ckpt.model_config else self.model_config_)
        self.load_state_dict(ckpt.tensors, source=str(path))
        base = self.weights_sha256  # set when a partial checkpoint's base was loaded from its source
        self.weights_path = path
        own = sha256_path(path)
        self.weights_sha256 = hashlib.sha256(f"{base}+{own}".encode()).hexdigest() if base else own

    def import_weights(self, path: str | Path) -> None:
        """The published formats: a diffusers folder, the original ``.ckpt`` / ``.safetensors``, ``hf://...``."""
        text = str(path)
        if not text.startswith("hf://") and not Path(text).exists():
            raise FileNotFoundError(f"weights not found: {text}")
        self._set_model_config(self.model_config_.model_copy(update={"source": text, "lora": None}))
        _ = self.modules  # load now, so a bad path fails here and not at the first request

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Every module's weights plus ``meta.*`` (configs + tokenizer): a self-contained full checkpoint."""
        return {**super().state_dict(), **meta_tensors(self.components)}

    def load_state_dict(self, tensors: Mapping[str, torch.Tensor], source: str = "state dict") -> None:
        groups, meta = split_tensors(tensors)
        if meta and set(groups) >= set(MODULES):
            comps = components_from_meta(meta, groups)
            self._components = comps
            self._modules = {m: getattr(comps, m).eval() for m in MODULES}
            self._reset_derived()
            return
        lora = groups.pop("lora", None)
        modules = self.modules  # the base: from the model config's source (or random of its size)
        for name, sd in groups.items():
            missing, unexpected = modules[name].load_state_dict(sd, strict=False)
            if missing or unexpected:
                raise ValueError(
                    f"{source}: module {name!r} does not match: missing {list(missing)[:8]}, unexpected {list(unexpected)[:8]}"
                )
        if lora:
            spec = self.model_config_.lora or LoraSpec()
            apply_lora(modules["unet"], spec, lora)
            modules["unet"].eval()
        self._reset_derived()

    # -- training ---------------------------------------------------------------------------------------
    def train(self, cfg: StyleConfig, ctx: Any) -> Any:
        from .train import train

        return train(self, cfg, ctx)

    # -- graphs -----------------------------------------------------------------------------------------
    @classmethod
    def serving_defaults(cls, specs: Any) -> dict[str, Any]:
        """Artifacts exported for small sizes (the tiny test profile: latents 8..32) cannot run the reference's
        512 working resolution: serve at the largest resolution the UNet's latent dims take, at most 512."""
        for s in specs:
            d = s.dims.get("latent_height")
            if d is not None and not d.min * 8 <= DEFAULT_RESOLUTION <= d.max * 8:
                return {"resolution": max(64, min(DEFAULT_RESOLUTION, d.max * 8) // 64 * 64)}
        return {}

    def graphs(self) -> list[GraphSpec]:
        from styleengine.diffusion import diffusion_graphs

        arch = self._arch()
        return diffusion_graphs(
            self.components, guidance_multiplicity=3, batch_range=self.batch_range[arch],
            latent_range=self.latent_range[arch], latent_multiple=8,
            include=("text_encoder", "unet", "vae_encoder", "vae_decoder"),
        )

    # -- inference -------------------------------------------------------------------------------------
    def pipeline_parts(self) -> tuple[Any, dict[str, Any], float]:
        """(tokenizer, scheduler config, VAE scaling factor), without loading weights when none are loaded."""
        if self._parts is None:
            if self._modules is not None and self._components is not None:
                c = self._components
                self._parts = (c.tokenizer, dict(c.scheduler.config), c.scaling_factor)
            else:
                self._parts = pipeline_parts(self.model_config_)
        return self._parts

    def scheduler(self, name: str) -> Any:
        from styleengine.diffusion import make_scheduler

        if name not in self._schedulers:
            self._schedulers[name] = make_scheduler(name, self.pipeline_parts()[1])
        return self._schedulers[name]

    def infer(self, sessions: Mapping[str, Any], batch: Sequence[StyleRequest], cfg: StyleConfig) -> list[StyleResult]:
        from styleengine import cancel

        cfg = self.parse_config(cfg)
        assert isinstance(cfg, Config)
        tokenizer, _, scaling = self.pipeline_parts()
        scheduler = self.scheduler(cfg.scheduler)
        arch = self._arch()
        lat_lo, _, lat_hi = self.latent_range[arch]
        chunk = self.batch_range[arch][2]
        device = loop_device(sessions)
        guided = cfg.guidance_scale > 1.0 and cfg.image_guidance_scale >= 1.0
        # Guidance off (diffusers: s_T <= 1 or s_I < 1) = the conditional prediction alone: one UNet row per
        # request where the UNet runs in torch; exported UNets take 3 rows per request, so there the 3-way
        # formula runs with s_T = s_I = 1, which is the same prediction.
        if guided:
            m, g, gi = 3, cfg.guidance_scale, cfg.image_guidance_scale
        else:
            m = 1 if getattr(sessions.get("unet"), "runtime", None) == "torch" else 3
            g = gi = 1.0

        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        prepared: list[dict[str, Any]] = []
        for i, req in enumerate(batch):
            instruction = (req.texts.get("instruction") or "").strip()
            if not instruction:
                raise ValueError("instruct_pix2pix needs a non-empty 'instruction' text")
            img = req.image("image")
            h, w = int(img.shape[0]), int(img.shape[1])
            size = resolve_size(h, w, cfg.resolution)
            lh, lw = size[0] // 8, size[1] // 8
            if not (lat_lo <= lh <= lat_hi and lat_lo <= lw <= lat_hi):
                raise SizeError(
                    f"a {w}x{h} image is edited at {size[1]}x{size[0]} (resolution {cfg.resolution}); this model's graphs "
                    f"take {lat_lo * 8}-{lat_hi * 8} px per side: lower the resolution or crop the image"
                )
            seed = int(req.seed) if req.seed is not None else secrets.randbits(31)
            prepared.append({"image": img, "hw": (h, w), "size": size, "instruction": instruction,
                             "negative": (req.texts.get("negative_prompt") or "").strip(), "seed": seed})
            groups[size].append(i)

        results: list[StyleResult | None] = [None] * len(batch)
        callback = cancel.step_callback()
        for size, idx in groups.items():
            for k in range(0, len(idx), chunk):
                part = idx[k:k + chunk]
                cancel.check()
                t0 = time.perf_counter()
                images = torch.cat([fit(to_tensor(prepared[j]["image"], (-1.0, 1.0)), size) for j in part]).to(device)
                negatives = [prepared[j]["negative"] for j in part]
                try:
                    out = edit(
                        sessions, tokenizer, scheduler, images, [prepared[j]["instruction"] for j in part],
                        seeds=[prepared[j]["seed"] for j in part], steps=cfg.steps, guidance_scale=g,
                        image_guidance_scale=gi, negative_prompts=negatives if any(negatives) else None,
                        callback=callback, guidance_multiplicity=m, scaling_factor=scaling,
                    )
                except Exception as exc:
                    from styleengine.diffusion import Cancelled as LoopCancelled

                    if isinstance(exc, LoopCancelled):
                        cancel.check()  # raises cancel.Cancelled with the token's reason
                        raise cancel.Cancelled(str(exc)) from exc
                    raise
                elapsed = (time.perf_counter() - t0) * 1e3
                for row, j in enumerate(part):
                    o = out[row:row + 1].float().cpu()
                    if cfg.output_size == "input":
                        o = resize_to(o, prepared[j]["hw"])
                    results[j] = StyleResult(
                        image=from_tensor(o, (-1.0, 1.0)), seed=prepared[j]["seed"],
                        timings={"edit_ms": elapsed / len(part)},
                        info={"working_size": list(size), "steps": cfg.steps, "scheduler": cfg.scheduler,
                              "batch": len(part), "guidance": "3-way" if guided else "off"},
                    )
        return [r for r in results if r is not None]

"""The ``dreambooth`` style: a Stable Diffusion model fine-tuned on a few images of a subject or a style
(Ruiz et al., "DreamBooth", CVPR 2023), used for text-to-image with the learned identifier ("a photo of sks dog")
and image-to-image stylisation of a content image (``strength``).

Four graphs from the shared diffusion core (:func:`styleengine.diffusion.diffusion_graphs`, text CFG:
``unet_batch`` = 2 x requests): ``text_encoder``, ``unet``, ``vae_encoder``, ``vae_decoder``.  The torch runtime
keeps one base model with every configured LoRA loaded as a PEFT adapter and activates per batch the LoRAs its
requests name (requests are grouped so one UNet call never mixes LoRA states); exported graphs carry the LoRA
fused into the weights (``export_lora``), one artifact per LoRA.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch

from styleengine.diffusion.sessions import loop_device
from styleengine.diffusion.sources import source_identity
from styleengine.preprocess import SizeError, from_tensor, to_tensor
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

from .config import Config, ModelConfig, TrainConfig
from .importer import MODULES, build_components, lora_run_config, pipeline_parts, weights_kind
from .pipeline import UnknownLoraError, generate, parse_lora, resize, working_size

log = logging.getLogger(__name__)


def _inner(session: Any, attr: str) -> Any:
    """The diffusers / transformers module a torch Session runs (None for other runtimes)."""
    return getattr(getattr(session, "module", None), attr, None)


class DreamBoothStyle(Style):
    name = "dreambooth"
    aliases = ("db",)
    description = "generate or stylise with a subject or style learned from a few images (DreamBooth, Ruiz et al., CVPR 2023)"
    capabilities = frozenset({Capability.INFER, Capability.EXPORT, Capability.TRAIN})
    Config = Config
    ModelConfig = ModelConfig
    TrainConfig = TrainConfig
    inputs = InputContract(
        images=(ImageField("image", "content image for image-to-image (optional: without one, text-to-image)", required=False),),
        texts=(
            TextField("prompt", "what to generate, with the learned identifier, e.g. 'a photo of sks dog'", required=True, max_length=500),
            TextField("negative_prompt", "what to avoid (optional)", required=False, max_length=500),
            TextField("lora", "loaded LoRA(s) to apply: 'name', 'name:0.7' or 'a:0.8,b:0.5' (optional)", required=False, max_length=500),
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
    weights_hint = (
        "train a LoRA with `engine train dreambooth --data DIR --set instance_prompt='a photo of sks dog' "
        "--set model={source: SD15_FOLDER}` and pass --weights RUN/weights, or --model-set source=<SD 1.x model>"
    )

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
        if self.model_config_.source is None:  # LoRAs alone on a random base are still random weights
            super().require_weights(allow_random)

    @property
    def components(self) -> Any:
        _ = self.modules
        return self._components

    @property
    def loras(self) -> list[str]:
        """Names of the LoRAs loaded for per-request switching."""
        return list(self.model_config_.loras)

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
        """A LoRA (fused into the base of the run's model config), a diffusers folder / single file / ``hf://``
        (the base model), or an engine checkpoint (full fine-tune)."""
        from styleengine.weights import load_checkpoint, sha256_path

        text = str(path)
        if text.startswith("hf://"):
            self.import_weights(text)
            return
        p = Path(text)
        if not p.exists():
            raise FileNotFoundError(f"weights not found: {p}")
        kind = weights_kind(p)
        if kind in ("diffusers", "single_file"):
            self.import_weights(p)
            return
        if kind == "lora":
            base = lora_run_config(p)
            mc = ModelConfig(**base) if base is not None else self.model_config_
            self._set_model_config(mc.model_copy(update={"fused_lora": str(p)}))
            _ = self.modules
            self.weights_path, self.weights_sha256 = p, sha256_path(p)
            return
        ckpt = load_checkpoint(p)
        if ckpt.style not in (None, self.name):
            raise ValueError(f"{p} holds weights of style {ckpt.style!r}, not {self.name!r}")
        self._set_model_config(ModelConfig(**ckpt.model_config) if ckpt.model_config else self.model_config_)
        self.load_state_dict(ckpt.tensors, source=str(p))
        self.weights_path = p
        base_sha = self.weights_sha256
        own = sha256_path(p)
        self.weights_sha256 = hashlib.sha256(f"{base_sha}+{own}".encode()).hexdigest() if base_sha else own

    def import_weights(self, path: str | Path) -> None:
        """A base SD 1.x model: diffusers folder, single file or ``hf://``."""
        text = str(path)
        if not text.startswith("hf://") and not Path(text).exists():
            raise FileNotFoundError(f"weights not found: {text}")
        self._set_model_config(self.model_config_.model_copy(update={"source": text}))
        _ = self.modules

    def load_state_dict(self, tensors: Mapping[str, torch.Tensor], source: str = "state dict") -> None:
        groups: dict[str, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            mod, _, rest = key.partition(".")
            if mod not in MODULES or not rest:
                raise ValueError(f"{source}: key {key!r} is not under {', '.join(MODULES)}")
            groups.setdefault(mod, {})[rest] = value
        modules = self.modules
        for name, sd in groups.items():
            missing, unexpected = modules[name].load_state_dict(sd, strict=False)
            unexpected = [k for k in unexpected if "lora_" not in k]
            if unexpected or (missing and len(groups) == len(MODULES)):
                raise ValueError(f"{source}: module {name!r} does not match: missing {list(missing)[:8]}, "
                                 f"unexpected {list(unexpected)[:8]}")
        self._reset_derived()

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Base weights only (PEFT adapter layers are the LoRA files', not the checkpoint's)."""
        out: dict[str, torch.Tensor] = {}
        for name, mod in self.modules.items():
            for k, v in mod.state_dict().items():
                if "lora_" in k:
                    continue
                out[f"{name}.{k.replace('.base_layer.', '.')}"] = v
        return out

    @classmethod
    def text_choices(cls, model_config: Mapping[str, Any]) -> dict[str, list[str]]:
        """The playground offers the LoRAs a server loads (``--model-set loras={...}``)."""
        loras = model_config.get("loras") or {}
        return {"lora": sorted(loras) if isinstance(loras, Mapping) else []}

    # -- training ---------------------------------------------------------------------------------------
    def train(self, cfg: StyleConfig, ctx: Any) -> Any:
        from .train import train

        return train(self, cfg, ctx)

    # -- graphs -----------------------------------------------------------------------------------------
    @classmethod
    def serving_defaults(cls, specs: Any) -> dict[str, Any]:
        """Small exported artifacts cannot run the 512 default: serve at the largest resolution they take."""
        for s in specs:
            d = s.dims.get("latent_height")
            if d is not None and not d.min * 8 <= 512 <= d.max * 8:
                return {"resolution": max(64, min(512, d.max * 8) // 64 * 64)}
        return {}

    def graphs(self) -> list[GraphSpec]:
        from styleengine.diffusion import diffusion_graphs

        arch = self._arch()
        return diffusion_graphs(
            self.components, guidance_multiplicity=2, batch_range=self.batch_range[arch],
            latent_range=self.latent_range[arch], latent_multiple=8,
            include=("text_encoder", "unet", "vae_encoder", "vae_decoder", "controlnet"),
        )

    def export_graphs(self) -> list[GraphSpec]:
        """The graphs with ``export_lora`` fused into copies of the UNet / text encoder (the base when None)."""
        import copy

        from styleengine.diffusion import diffusion_graphs, fuse_lora

        comps = self.components
        name = self.model_config_.export_lora
        if name is not None and name not in self.loras:
            have = ", ".join(self.loras) or "none (--model-set loras={NAME: FILE})"
            raise UnknownLoraError(f"export_lora {name!r} is not loaded; available: {have}")
        if not self.loras:
            return self.graphs()
        fused = copy.copy(comps)
        fused.unet, fused.text_encoder = copy.deepcopy(comps.unet), copy.deepcopy(comps.text_encoder)
        fused.lora_scales = dict(comps.lora_scales)
        fuse_lora(fused, {name: 1.0} if name else {})
        arch = self._arch()
        return diffusion_graphs(fused, guidance_multiplicity=2, batch_range=self.batch_range[arch],
                                latent_range=self.latent_range[arch], latent_multiple=8,
                                include=("text_encoder", "unet", "vae_encoder", "vae_decoder", "controlnet"))

    def export_metadata(self) -> dict[str, Any]:
        from styleengine.weights import sha256_path

        from .importer import lora_file

        mc = self.model_config_
        out: dict[str, Any] = {"lora": None}
        if mc.export_lora is not None:
            f = lora_file(mc.loras[mc.export_lora])
            out["lora"] = {"name": mc.export_lora, "file": str(f), "sha256": sha256_path(f)}
        if mc.fused_lora is not None:  # --weights LORA: fused into the base before anything else
            f = lora_file(mc.fused_lora)
            out["fused_lora"] = {"file": str(f), "sha256": sha256_path(f)}
        return out

    # -- inference -------------------------------------------------------------------------------------
    @staticmethod
    def _control(cfg: Config, mode: str, size: tuple[int, int], images: list[Any]) -> Any:
        """The ControlNet conditioning of a group: canny edges of each content image at the working size (white on
        black, [0, 1]); requests without an image get a black image at weight 0 (the UNet graph then takes zero
        residuals: the plain model)."""
        import numpy as np

        from styleengine.diffusion import Control
        from styleengine.diffusion.control import canny

        scale = cfg.controlnet_scale if cfg.controlnet_scale is not None else (0.8 if mode == "img2img" else 1.0)
        if any(img is None for img in images):
            if not all(img is None for img in images):
                raise ValueError("a ControlNet group mixes requests with and without images")
            return Control(torch.zeros(len(images), 3, *size), scale=0.0)
        edges = []
        for img in images:
            work = resize(to_tensor(img, (0.0, 1.0)) * 2 - 1, size)[0].permute(1, 2, 0).numpy() * 0.5 + 0.5
            edges.append(torch.from_numpy(canny(np.clip(work, 0.0, 1.0), cfg.canny_low, cfg.canny_high)).permute(2, 0, 1))
        return Control(torch.stack(edges), scale=scale, start=cfg.control_guidance_start, end=cfg.control_guidance_end)

    def pipeline_parts(self) -> tuple[Any, dict[str, Any], float]:
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
        from styleengine.diffusion import Cancelled as LoopCancelled
        from styleengine.diffusion import lora as _lora

        cfg = self.parse_config(cfg)
        assert isinstance(cfg, Config)
        tokenizer, _, scaling = self.pipeline_parts()
        scheduler = self.scheduler(cfg.scheduler)
        arch = self._arch()
        lat_lo, _, lat_hi = self.latent_range[arch]
        chunk = self.batch_range[arch][2]
        device = loop_device(sessions)
        unet_mod = _inner(sessions.get("unet"), "unet")
        text_mod = _inner(sessions.get("text_encoder"), "text_encoder")
        switchable = sorted(set(_lora.adapters_of(unet_mod)) | set(_lora.adapters_of(text_mod))) if unet_mod is not None else []
        guided = cfg.guidance_scale > 1.0
        torch_unet = getattr(sessions.get("unet"), "runtime", None) == "torch"
        m = 2 if (guided or not torch_unet) else 1  # exported UNets take 2 rows per request: CFG at scale 1 = off
        g = cfg.guidance_scale if guided else 1.0

        groups: dict[tuple[Any, ...], list[int]] = defaultdict(list)
        prepared: list[dict[str, Any]] = []
        for i, req in enumerate(batch):
            prompt = (req.texts.get("prompt") or "").strip()
            if not prompt:
                raise ValueError("dreambooth needs a non-empty 'prompt' text")
            wanted = (req.texts.get("lora") or "").strip()
            if wanted and not torch_unet:
                raise UnknownLoraError(
                    f"lora {wanted!r}: exported graphs carry their LoRA fused (see the manifest's 'lora'); serve one "
                    "artifact per LoRA (engine export dreambooth --model-set export_lora=NAME) or the torch runtime")
            loras = parse_lora(wanted, switchable, cfg.lora_scale) if wanted else ()
            has_image = "image" in req.images and req.images["image"] is not None
            mode = cfg.mode if cfg.mode != "auto" else ("img2img" if has_image else "txt2img")
            if mode == "img2img" and not has_image:
                raise ValueError("mode=img2img needs an 'image'")
            if mode == "img2img":
                img = req.image("image")
                hw = (int(img.shape[0]), int(img.shape[1]))
                size = working_size(*hw, cfg.resolution)
            else:  # an image given in txt2img mode only feeds the ControlNet (when one is configured)
                img, hw = (req.image("image") if has_image else None), None
                size = (cfg.height or cfg.resolution, cfg.width or cfg.resolution)
            lh, lw = size[0] // 8, size[1] // 8
            if not (lat_lo <= lh <= lat_hi and lat_lo <= lw <= lat_hi):
                raise SizeError(f"working size {size[1]}x{size[0]} is outside this model's graphs "
                                f"({lat_lo * 8}-{lat_hi * 8} px per side): lower the resolution")
            seed = int(req.seed) if req.seed is not None else secrets.randbits(31)
            prepared.append({"image": img, "hw": hw, "size": size, "prompt": prompt, "mode": mode, "loras": loras,
                             "negative": (req.texts.get("negative_prompt") or "").strip(), "seed": seed})
            groups[(mode, size, loras, img is not None)].append(i)

        controlled = self.model_config_.controlnet is not None or "controlnet" in sessions
        results: list[StyleResult | None] = [None] * len(batch)
        callback = cancel.step_callback()
        for (mode, size, loras, _), idx in groups.items():
            if unet_mod is not None and switchable:
                _lora.activate([unet_mod, text_mod], dict(loras))  # one LoRA state per group: never mixed
            for k in range(0, len(idx), chunk):
                part = idx[k:k + chunk]
                cancel.check()
                t0 = time.perf_counter()
                images = None
                if mode == "img2img":
                    images = torch.cat([resize(to_tensor(prepared[j]["image"], (-1.0, 1.0)), size) for j in part])
                negatives = [prepared[j]["negative"] for j in part]
                control = ()
                if controlled:
                    control = (self._control(cfg, mode, size, [prepared[j]["image"] for j in part]),)
                try:
                    out = generate(
                        sessions, tokenizer, scheduler, [prepared[j]["prompt"] for j in part],
                        seeds=[prepared[j]["seed"] for j in part], images=images, strength=cfg.strength,
                        negative_prompts=negatives if any(negatives) else None, steps=cfg.steps, guidance_scale=g,
                        height=size[0], width=size[1], eta=cfg.eta, guidance_multiplicity=m, scaling_factor=scaling,
                        callback=callback, device=device, control=control,
                    )
                except LoopCancelled as exc:
                    cancel.check()
                    raise cancel.Cancelled(str(exc)) from exc
                elapsed = (time.perf_counter() - t0) * 1e3
                for row, j in enumerate(part):
                    o = out[row:row + 1].float().cpu()
                    if mode == "img2img" and cfg.output_size == "input":
                        o = resize(o, prepared[j]["hw"])
                    results[j] = StyleResult(
                        image=from_tensor(o, (-1.0, 1.0)), seed=prepared[j]["seed"],
                        timings={"generate_ms": elapsed / len(part)},
                        info={"mode": mode, "working_size": list(size), "steps": cfg.steps, "scheduler": cfg.scheduler,
                              "batch": len(part), "lora": dict(loras), "guidance": "cfg" if guided else "off",
                              "controlnet": bool(control) and control[0].scale > 0},
                    )
        return [r for r in results if r is not None]

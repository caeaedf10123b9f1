"""Stable Diffusion components: loading (diffusers folder, single file, ``hf://``), schedulers, LoRA.

Everything here goes through diffusers / transformers / peft / huggingface_hub rather than re-implementing
them; this module only decides *where* weights come from and refuses unsafe or ambiguous sources:

* a diffusers folder (``model_index.json``) → each component's ``from_pretrained`` (``local_files_only``);
* a single-file SD 1.x checkpoint (``.safetensors``, or legacy ``.ckpt`` read with
  ``torch.load(weights_only=True)``, never unpickling modules) → diffusers' single-file key conversion
  (``from_single_file`` with the state dict), configured from a local diffusers config folder or from the
  SD 1.5 configurations in :mod:`styleengine.diffusion.tiny`; the CLIP tokenizer files must be local;
* ``hf://org/repo@revision`` → ``huggingface_hub.snapshot_download(revision=...)`` (offline: the cache only).
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..weights import WeightsUnavailableError, safe_torch_load  # the error type is shared by every weights source

log = logging.getLogger(__name__)


# -- schedulers ---------------------------------------------------------------------------------------

#: name → (diffusers class name, config overrides).  ``dpmpp`` is DPM-Solver++(2M), the usual "DPM++ 2M".
SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "ddim": ("DDIMScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_ancestral": ("EulerAncestralDiscreteScheduler", {}),
    "dpmpp": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    "pndm": ("PNDMScheduler", {}),
    "ddpm": ("DDPMScheduler", {}),
}
SCHEDULER_ALIASES = {"euler_a": "euler_ancestral", "dpm++": "dpmpp", "dpmsolver++": "dpmpp", "plms": "pndm"}


def scheduler_name(name: str) -> str:
    key = name.strip().lower().replace("-", "_")
    key = SCHEDULER_ALIASES.get(key, key)
    if key not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}; valid choices: {', '.join(SCHEDULERS)}")
    return key


def make_scheduler(name: str, config: Any, **overrides: Any) -> Any:
    """A diffusers scheduler by short name, configured from another scheduler's ``config`` (or a dict).

    The noise schedule (betas, ``num_train_timesteps``, ``prediction_type``, ``steps_offset``) carries over
    from ``config``, as with diffusers' ``Scheduler.from_config(pipe.scheduler.config)`` idiom.
    """
    import diffusers

    cls_name, fixed = SCHEDULERS[scheduler_name(name)]
    cfg = dict(getattr(config, "config", config))
    cfg.pop("_class_name", None)
    cfg.pop("_diffusers_version", None)
    return getattr(diffusers, cls_name).from_config({**cfg, **fixed, **overrides})


# -- components ---------------------------------------------------------------------------------------


@dataclass
class Components:
    """The torch modules of one Stable Diffusion model family, plus where they came from."""

    text_encoder: Any
    tokenizer: Any
    unet: Any
    vae: Any
    scheduler: Any
    controlnets: list[Any] = field(default_factory=list)
    source: str = ""
    revision: str | None = None
    #: LoRA adapters attached (not yet fused): adapter name → weight.
    lora_scales: dict[str, float] = field(default_factory=dict)

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.latent_channels)

    @property
    def scaling_factor(self) -> float:
        return float(self.vae.config.scaling_factor)

    @property
    def max_length(self) -> int:
        return int(self.tokenizer.model_max_length)

    def with_scheduler(self, name: str, **overrides: Any) -> Components:
        return replace(self, scheduler=make_scheduler(name, self.scheduler.config, **overrides))

    def to(self, device: Any = None, dtype: Any = None) -> Components:
        for m in [self.text_encoder, self.unet, self.vae, *self.controlnets]:
            m.to(device=device, dtype=dtype)
        return self


def _torch_dtype(dtype: Any) -> Any:
    import torch

    if isinstance(dtype, str):
        return {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16,
                "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}[dtype]
    return dtype if dtype is not None else torch.float32


_HF_REF = re.compile(r"^hf://(?P<repo>[\w.\-]+/[\w.\-]+)(?:@(?P<rev>[\w.\-/]+))?$")


def load_components(
    ref: str | os.PathLike[str],
    *,
    unet_in_channels: int | None = None,
    scheduler: str | None = None,
    dtype: Any = None,
    device: str = "cpu",
    controlnets: list[str | os.PathLike[str]] | None = None,
    config: str | os.PathLike[str] | None = None,
    original_config: str | os.PathLike[str] | None = None,
    tokenizer: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Components:
    """Load SD components from a diffusers folder, a single-file checkpoint or ``hf://org/repo@revision``.

    ``unet_in_channels`` checks (folder / hf) or sets (single file) the UNet's input channels: 4 for text-to-
    image, 8 for InstructPix2Pix.  ``scheduler`` swaps the model's scheduler for a named one (see
    :data:`SCHEDULERS`), keeping its noise schedule.  ``controlnets`` are further refs (folders or ``hf://``).
    ``config`` / ``original_config`` / ``tokenizer`` only matter for single files (see
    :func:`load_single_file`); ``cache_dir`` only for ``hf://``.
    """
    torch_dtype = _torch_dtype(dtype)
    text = str(ref)
    revision = None
    if text.startswith("hf://"):
        folder, revision = resolve_hf(text, cache_dir=cache_dir)
        comps = load_folder(folder, torch_dtype=torch_dtype)
    else:
        path = Path(text).expanduser()
        if path.is_dir():
            comps = load_folder(path, torch_dtype=torch_dtype)
        elif path.is_file() and path.suffix in (".safetensors", ".ckpt"):
            comps = load_single_file(
                path, unet_in_channels=unet_in_channels, torch_dtype=torch_dtype,
                config=config, original_config=original_config, tokenizer=tokenizer,
            )
        elif path.exists():
            raise ValueError(f"{path}: expected a diffusers folder (model_index.json), a .safetensors or a .ckpt file")
        else:
            raise WeightsUnavailableError(f"{path}: no such file or folder")
    comps.source, comps.revision = text, revision
    if unet_in_channels is not None and comps.unet.config.in_channels != unet_in_channels:
        raise ValueError(
            f"{text}: the UNet has {comps.unet.config.in_channels} input channels, {unet_in_channels} expected "
            "(4: text-to-image, 8: InstructPix2Pix)"
        )
    for cn in controlnets or []:
        comps.controlnets.append(load_controlnet(cn, torch_dtype=torch_dtype, cache_dir=cache_dir))
    if scheduler is not None:
        comps.scheduler = make_scheduler(scheduler, comps.scheduler.config)
    return comps.to(device=device)


def load_folder(folder: str | os.PathLike[str], *, torch_dtype: Any = None) -> Components:
    """Load a diffusers-format folder (``model_index.json`` with unet/vae/text_encoder/tokenizer/scheduler)."""
    import diffusers
    import transformers

    folder = Path(folder)
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        raise WeightsUnavailableError(f"{folder}: not a diffusers folder (no model_index.json)")
    index = json.loads(index_path.read_text())
    loaded: dict[str, Any] = {}
    for name in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        entry = index.get(name)
        if not entry or entry[0] is None:
            raise WeightsUnavailableError(f"{folder}: model_index.json has no {name!r} component")
        library, cls_name = entry
        cls = getattr(diffusers if library == "diffusers" else transformers, cls_name)
        kwargs: dict[str, Any] = {"subfolder": name}
        if name in ("unet", "vae", "text_encoder"):
            kwargs["torch_dtype"] = torch_dtype
        if name != "scheduler":
            kwargs["local_files_only"] = True
        if not (folder / name).is_dir():
            raise WeightsUnavailableError(f"{folder}: component folder {name}/ is missing")
        loaded[name] = cls.from_pretrained(str(folder), **kwargs)
    for name in ("unet", "vae", "text_encoder"):
        loaded[name].eval()
    return Components(
        text_encoder=loaded["text_encoder"], tokenizer=loaded["tokenizer"], unet=loaded["unet"],
        vae=loaded["vae"], scheduler=loaded["scheduler"], source=str(folder),
    )


def load_controlnet(ref: str | os.PathLike[str], *, torch_dtype: Any = None, cache_dir: Any = None) -> Any:
    from diffusers import ControlNetModel

    text = str(ref)
    if text.startswith("hf://"):
        folder, _ = resolve_hf(text, cache_dir=cache_dir)
    else:
        folder = Path(text)
    if not (Path(folder) / "config.json").is_file():
        raise WeightsUnavailableError(f"{text}: not a diffusers ControlNet folder (no config.json)")
    return ControlNetModel.from_pretrained(str(folder), torch_dtype=torch_dtype, local_files_only=True).eval()


# -- hf:// --------------------------------------------------------------------------------------------


def parse_hf_ref(ref: str) -> tuple[str, str | None]:
    m = _HF_REF.match(ref)
    if not m:
        raise ValueError(f"{ref!r} is not of the form hf://org/repo@revision")
    return m["repo"], m["rev"]


#: What ``hf://`` fetches: a diffusers layout's configs, tokenizer files and safetensors weights in component
#: subfolders.  Not the multi-GB single-file checkpoints many repos also keep at the root, not pickled
#: ``.bin`` / ``.ckpt`` files, not fp16 / non-EMA variants.  (huggingface_hub matches with fnmatch, where
#: ``*`` also matches ``/``.)
_HF_ALLOW = ["model_index.json", "config.json", "*/*.json", "*/*.txt", "*/*.safetensors", "diffusion_pytorch_model.safetensors"]
_HF_IGNORE = ["*.fp16.*", "*fp16*.safetensors", "*non_ema*", "*.ckpt", "*.bin"]


def resolve_hf(ref: str, *, cache_dir: str | os.PathLike[str] | None = None) -> tuple[Path, str | None]:
    """``hf://org/repo@revision`` → (local snapshot folder, resolved commit sha), via ``snapshot_download``.

    Pin a revision (a commit sha, ideally): without one the moving ``main`` branch is used, with a warning.
    Offline (``HF_HUB_OFFLINE=1``) only the local cache is consulted; a miss raises
    :class:`WeightsUnavailableError` with the command that fills the cache.
    """
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    repo, rev = parse_hf_ref(ref)
    if rev is None:
        warnings.warn(
            f"{ref}: no revision pinned; using the moving 'main' branch. Pin one: hf://{repo}@<commit sha>",
            stacklevel=3,
        )
    offline = bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "") in ("1", "true", "TRUE", "yes")
    try:
        folder = snapshot_download(
            repo, revision=rev, cache_dir=cache_dir, local_files_only=offline,
            allow_patterns=_HF_ALLOW, ignore_patterns=_HF_IGNORE,
        )
    except LocalEntryNotFoundError as e:
        where = f" --cache-dir {cache_dir}" if cache_dir else ""
        raise WeightsUnavailableError(
            f"{ref}: not in the local Hugging Face cache and downloads are disabled "
            f"({'HF_HUB_OFFLINE=1' if offline else 'the Hub cannot be reached'}). On a machine with network access "
            f"run:  hf download {repo}{' --revision ' + rev if rev else ''}{where}  (then copy the cache, or set "
            "HF_HUB_OFFLINE=0 here)"
        ) from e
    # The snapshot folder is named after the commit it holds: record that, not a moving branch name.
    resolved = Path(folder).name
    return Path(folder), resolved if re.fullmatch(r"[0-9a-f]{40}", resolved) else rev


# -- single-file checkpoints --------------------------------------------------------------------------


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A flat tensor state dict from ``.safetensors`` or ``.ckpt`` (``torch.load(weights_only=True)``).

    A ``.ckpt`` that needs arbitrary unpickling (pickled modules, custom classes) is refused: the error
    from ``weights_only`` loading is re-raised with advice to convert the file to safetensors elsewhere.
    """
    import torch

    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        sd: Any = load_file(str(path))
    elif path.suffix == ".ckpt":
        sd = safe_torch_load(path)
    else:
        raise ValueError(f"{path}: expected .safetensors or .ckpt")
    while isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise ValueError(f"{path}: expected a state dict, found {type(sd).__name__}")
    return {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}


_LDM_UNET_IN = "model.diffusion_model.input_blocks.0.0.weight"
_TOKENIZER_FILES = ("vocab.json", "merges.txt")


def _sd15_config_folder(root: Path, unet_in_channels: int) -> Path:
    from .tiny import sd15_configs

    cfg = sd15_configs()
    (root / "unet").mkdir(parents=True)
    (root / "unet" / "config.json").write_text(
        json.dumps({"_class_name": "UNet2DConditionModel", **cfg["unet"], "in_channels": unet_in_channels})
    )
    (root / "vae").mkdir()
    (root / "vae" / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL", **cfg["vae"]}))
    (root / "text_encoder").mkdir()
    (root / "text_encoder" / "config.json").write_text(json.dumps(cfg["text_encoder"]))
    (root / "scheduler").mkdir()
    (root / "scheduler" / "scheduler_config.json").write_text(json.dumps(cfg["scheduler"]))
    return root


def _find_tokenizer(config: Path | None, tokenizer: str | os.PathLike[str] | None) -> Path:
    candidates = []
    if tokenizer is not None:
        candidates.append(Path(tokenizer))
    if config is not None:
        candidates.append(config / "tokenizer")
    for c in candidates:
        if all((c / f).is_file() for f in _TOKENIZER_FILES) or (c / "tokenizer.json").is_file():
            return c
    try:  # the CLIP tokenizer SD 1.x uses, if it is already in the local Hugging Face cache
        from huggingface_hub import snapshot_download

        cached = Path(snapshot_download("openai/clip-vit-large-patch14", local_files_only=True,
                                        allow_patterns=list(_TOKENIZER_FILES)))
        if all((cached / f).is_file() for f in _TOKENIZER_FILES):
            return cached
    except Exception:  # noqa: BLE001 - any miss means "not cached"
        pass
    looked = ", ".join(str(c) for c in candidates) or "no folder given"
    raise WeightsUnavailableError(
        "single-file SD checkpoints carry no tokenizer: the CLIP tokenizer files vocab.json and merges.txt (or a "
        "tokenizer.json) are "
        f"needed locally (looked in: {looked}; and the Hugging Face cache for openai/clip-vit-large-patch14). "
        "Pass tokenizer=<folder with them> (or config=<diffusers folder with tokenizer/>), "
        "or on a machine with network access run:  hf download openai/clip-vit-large-patch14 vocab.json merges.txt"
    )


def load_single_file(
    path: str | os.PathLike[str],
    *,
    unet_in_channels: int | None = None,
    torch_dtype: Any = None,
    config: str | os.PathLike[str] | None = None,
    original_config: str | os.PathLike[str] | None = None,
    tokenizer: str | os.PathLike[str] | None = None,
) -> Components:
    """An original-format (CompVis/LDM) SD 1.x checkpoint through diffusers' single-file conversion.

    Component configs come from ``config`` (a local diffusers-format folder: unet/, vae/, text_encoder/,
    scheduler/, optionally tokenizer/), else from ``original_config`` (the LDM ``v1-inference.yaml``, for
    UNet and VAE), else from the built-in SD 1.5 configs.  The UNet's input channels are read from the
    checkpoint (8 for InstructPix2Pix) unless ``unet_in_channels`` says otherwise.
    """
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import create_diffusers_clip_model_from_ldm
    from transformers import CLIPTextModel, CLIPTokenizer

    checkpoint = read_checkpoint(path)
    if _LDM_UNET_IN not in checkpoint:
        raise ValueError(f"{path}: not an original-format SD 1.x checkpoint (no {_LDM_UNET_IN})")
    in_channels = unet_in_channels or int(checkpoint[_LDM_UNET_IN].shape[1])
    cfg_dir = Path(config) if config is not None else None
    if cfg_dir is not None and not (cfg_dir / "unet" / "config.json").is_file():
        raise WeightsUnavailableError(f"config={cfg_dir}: not a diffusers config folder (no unet/config.json)")
    tok_dir = _find_tokenizer(cfg_dir, tokenizer)
    orig = None
    if original_config is not None:
        if not Path(original_config).is_file():
            raise WeightsUnavailableError(f"original_config={original_config}: no such file (the LDM .yaml)")
        orig = str(original_config)

    with tempfile.TemporaryDirectory(prefix="styleengine-sd15-") as tmp:
        cfg_root = cfg_dir or _sd15_config_folder(Path(tmp) / "cfg", in_channels)
        common = {"torch_dtype": torch_dtype, "local_files_only": True}
        if orig is not None:
            unet = UNet2DConditionModel.from_single_file(checkpoint, original_config=orig, **common)
            vae = AutoencoderKL.from_single_file(checkpoint, original_config=orig, **common)
        else:
            unet = UNet2DConditionModel.from_single_file(
                checkpoint, config=str(cfg_root), subfolder="unet", in_channels=in_channels, **common
            )
            vae = AutoencoderKL.from_single_file(checkpoint, config=str(cfg_root), subfolder="vae", **common)
        text_encoder = create_diffusers_clip_model_from_ldm(
            CLIPTextModel, checkpoint=checkpoint, config=str(cfg_root), subfolder="text_encoder", **common
        )
        scheduler = PNDMScheduler.from_pretrained(str(cfg_root), subfolder="scheduler")
    tok = CLIPTokenizer.from_pretrained(str(tok_dir))
    return Components(
        text_encoder=text_encoder.eval(), tokenizer=tok, unet=unet.eval(), vae=vae.eval(),
        scheduler=scheduler, source=str(path),
    )


# -- LoRA ---------------------------------------------------------------------------------------------


def _pipeline(components: Components) -> Any:
    """A throw-away diffusers pipeline around the components, to use diffusers' LoRA loader unchanged."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=components.vae, text_encoder=components.text_encoder, tokenizer=components.tokenizer,
        unet=components.unet, scheduler=components.scheduler, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def load_lora(components: Components, path: str | os.PathLike[str] | dict[str, Any], scale: float = 1.0,
              *, adapter_name: str | None = None) -> str:
    """Attach a LoRA (diffusers / kohya / PEFT formats, as diffusers' ``load_lora_weights`` reads them).

    The adapter stays separate (PEFT layers) with weight ``scale``; :func:`fuse_lora` folds it into the base
    weights for export.  Returns the adapter name.
    """
    pipe = _pipeline(components)
    src = str(path) if not isinstance(path, dict) else path
    name = adapter_name or f"lora_{len(pipe.get_list_adapters().get('unet', []))}"
    if isinstance(src, str) and Path(src).is_file():
        pipe.load_lora_weights(str(Path(src).parent), weight_name=Path(src).name, adapter_name=name)
    else:
        pipe.load_lora_weights(src, adapter_name=name)
    adapters = pipe.get_list_adapters()
    names = sorted({n for ns in adapters.values() for n in ns})
    components.lora_scales[name] = float(scale)
    pipe.set_adapters(names, adapter_weights=[components.lora_scales.get(n, 1.0) for n in names])
    from . import lora as _lora

    for module in (components.unet, components.text_encoder):
        _lora.forget(module)  # activation changed outside lora.activate
    return name


def fuse_lora(components: Components, adapters: Mapping[str, float] | None = None) -> Components:
    """Fold loaded LoRAs into the UNet / text-encoder weights and drop the PEFT layers.

    ``adapters`` None folds every active adapter at its current weight; a mapping (name → weight) folds exactly
    those, each module the ones it has (a LoRA without text-encoder weights leaves the text encoder as it is);
    an empty mapping folds none (the base weights, adapters removed).  The result is plain diffusers /
    transformers modules again, which export like the base model.
    """
    from . import lora as _lora

    pipe = _pipeline(components)
    if not any(pipe.get_list_adapters().values()):
        return components
    if adapters is None:
        pipe.fuse_lora(components=["unet", "text_encoder"], lora_scale=1.0)
    elif adapters:
        for module in (components.unet, components.text_encoder):
            mine = {n: float(w) for n, w in adapters.items() if n in _lora.adapters_of(module)}
            if mine:
                _lora.activate([module], mine)
        pipe.fuse_lora(components=["unet", "text_encoder"], lora_scale=1.0, adapter_names=list(adapters))
    pipe.unload_lora_weights()
    for module in (components.unet, components.text_encoder):
        _lora.forget(module)
    components.lora_scales.clear()
    return components

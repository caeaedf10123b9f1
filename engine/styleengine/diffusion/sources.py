"""Where a diffusion style's parts come from when they are not a full diffusers folder.

* the CLIP tokenizer: a given folder, else ``openai/clip-vit-large-patch14`` in the local Hugging Face cache,
  else (where allowed) the tiny test vocabulary of :mod:`.tiny`;
* :func:`random_sd15_components`: the SD 1.5 architecture with random weights (latency work, plumbing tests);
* :func:`pipeline_parts`: the tokenizer, scheduler config and VAE scaling factor of a source *without loading
  any weights*: serving exported graphs needs nothing else;
* :func:`source_identity`: the (path, sha256) recorded for weights loaded from a source.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any

from ..weights import WeightsUnavailableError

_TOKENIZER_FILES = ("vocab.json", "merges.txt")
_tiny_lock = threading.Lock()
_tiny_dir: Path | None = None


def tiny_tokenizer_dir() -> Path:
    """One folder per process with the tiny CLIP vocabulary (written on first use)."""
    global _tiny_dir
    from .tiny import write_tiny_tokenizer_files

    with _tiny_lock:
        if _tiny_dir is None or not (_tiny_dir / "vocab.json").is_file():
            _tiny_dir = write_tiny_tokenizer_files(Path(tempfile.mkdtemp(prefix="styleengine-tok-")))
        return _tiny_dir


def has_tokenizer(folder: Path) -> bool:
    return all((folder / f).is_file() for f in _TOKENIZER_FILES) or (folder / "tokenizer.json").is_file()


def find_tokenizer(tokenizer: str | Path | None, *, required: bool) -> Path | None:
    """The CLIP tokenizer folder: ``tokenizer`` (or its ``tokenizer/``), else openai/clip-vit-large-patch14 in the
    local HF cache.  ``required=False`` returns None when neither exists (callers may fall back to the tiny one)."""
    if tokenizer is not None:
        p = Path(tokenizer).expanduser()
        for cand in (p, p / "tokenizer"):
            if has_tokenizer(cand):
                return cand
        raise WeightsUnavailableError(f"tokenizer={p}: no vocab.json + merges.txt (or tokenizer.json) there")
    try:
        from huggingface_hub import snapshot_download

        cached = Path(snapshot_download("openai/clip-vit-large-patch14", local_files_only=True,
                                        allow_patterns=list(_TOKENIZER_FILES)))
        if has_tokenizer(cached):
            return cached
    except Exception:  # noqa: BLE001 - any miss means "not cached"
        pass
    if required:
        raise WeightsUnavailableError(
            "the CLIP tokenizer (vocab.json + merges.txt) is needed and is neither given (--model-set tokenizer=DIR) "
            "nor in the local Hugging Face cache; on a machine with network access run:  "
            "hf download openai/clip-vit-large-patch14 vocab.json merges.txt"
        )
    return None


def load_tokenizer(folder: str | Path) -> Any:
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(folder), model_max_length=77)


def resolve_source(source: str) -> Path:
    """A local path for ``source`` (``hf://`` through the diffusers layout's allow-list, pinned by revision)."""
    if source.startswith("hf://"):
        from .components import resolve_hf

        folder, _ = resolve_hf(source)
        return folder
    p = Path(source).expanduser()
    if not p.exists():
        raise WeightsUnavailableError(f"source {p}: no such file or folder")
    return p


def source_identity(source: str, revision: str | None) -> tuple[Path | None, str]:
    """(path, sha256) recorded for weights loaded from a source: content hash for local files and folders;
    for ``hf://`` the hash of the repository at its resolved commit (content-addressed by git)."""
    from ..weights import sha256_path

    if source.startswith("hf://"):
        from .components import parse_hf_ref

        repo, rev = parse_hf_ref(source)
        return resolve_source(source), hashlib.sha256(f"hf://{repo}@{revision or rev or 'main'}".encode()).hexdigest()
    p = Path(source).expanduser()
    return p, sha256_path(p)


def random_sd15_components(*, seed: int = 0, unet_in_channels: int = 4, scheduler: str = "pndm",
                           tokenizer: str | Path | None = None, controlnet: bool = False) -> Any:
    """SD 1.5-shaped :class:`~styleengine.diffusion.Components` with random weights: latency work only.

    The tokenizer is the real CLIP one where it is local, else the tiny test vocabulary (with a warning:
    text conditioning is then meaningless, shapes and cost are not).  ``controlnet=True`` adds an SD 1.5
    ControlNet (``ControlNetModel.from_unet``: its shapes, random weights)."""
    import torch
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from .components import Components, make_scheduler
    from .tiny import sd15_configs

    cfg = sd15_configs()
    tok_dir = find_tokenizer(tokenizer, required=False)
    if tok_dir is None:
        warnings.warn("random SD 1.5 components with the tiny test vocabulary (no CLIP tokenizer found locally): "
                      "fine for latency work, meaningless text conditioning", stacklevel=3)
        tok_dir = tiny_tokenizer_dir()
    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_config({**cfg["unet"], "in_channels": unet_in_channels})
    vae = AutoencoderKL.from_config(cfg["vae"])
    text = CLIPTextModel(CLIPTextConfig(**cfg["text_encoder"]))
    nets = [ControlNetModel.from_unet(unet).eval()] if controlnet else []
    return Components(
        text_encoder=text.eval(), tokenizer=load_tokenizer(tok_dir), unet=unet.eval(), vae=vae.eval(),
        scheduler=make_scheduler(scheduler, cfg["scheduler"]), controlnets=nets, source="random:sd15",
    )


def pipeline_parts(source: str | None, *, tiny: bool = False, tokenizer: str | Path | None = None,
                   config: str | Path | None = None) -> tuple[Any, dict[str, Any], float]:
    """(tokenizer, scheduler config, VAE scaling factor) of a source without loading any weights.

    ``source=None``: random components (``tiny``: the test vocabulary; else the CLIP tokenizer where local).
    A diffusers folder (or ``hf://``): its ``tokenizer/``, ``scheduler/`` and ``vae/config.json``.  A single file:
    the SD 1.5 scheduler and ``tokenizer`` (or ``config``'s ``tokenizer/``)."""
    from .tiny import sd15_configs

    sched = dict(sd15_configs()["scheduler"])
    if source is None:
        if tiny:
            return load_tokenizer(tiny_tokenizer_dir()), sched, 0.18215
        return load_tokenizer(find_tokenizer(tokenizer, required=False) or tiny_tokenizer_dir()), sched, 0.18215
    path = resolve_source(source)
    if path.is_dir():
        if not (path / "tokenizer").is_dir():
            raise WeightsUnavailableError(f"{path}: no tokenizer/ folder (not a diffusers layout)")
        sched_file = path / "scheduler" / "scheduler_config.json"
        if sched_file.is_file():
            sched = json.loads(sched_file.read_text())
        scaling = 0.18215
        vae_cfg = path / "vae" / "config.json"
        if vae_cfg.is_file():
            scaling = float(json.loads(vae_cfg.read_text()).get("scaling_factor", scaling))
        return load_tokenizer(path / "tokenizer"), sched, scaling
    cfg_tok = Path(config) / "tokenizer" if config is not None else None
    tok = cfg_tok if cfg_tok is not None and tokenizer is None and has_tokenizer(cfg_tok) else find_tokenizer(tokenizer, required=True)
    return load_tokenizer(tok), sched, 0.18215

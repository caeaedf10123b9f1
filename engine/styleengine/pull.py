"""``engine pull STYLE[:NAME]``: fetch a style's published weights and convert them to safetensors.

A style lists what it can pull in ``Style.pretrained``: name → :class:`Pretrained` (a release URL
with its sha256 where known, or an ``hf://`` reference pinned by revision).  The download goes into
the cache, the style's reference importer reads it (``torch.load(weights_only=True)``), and the
result is saved as an engine checkpoint (safetensors + config) that ``--weights`` accepts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .weights import cache_dir, download_checked, resolve, save_checkpoint


@dataclass(frozen=True)
class Pretrained:
    url: str  # https release URL or hf://org/repo@rev/file
    sha256: str | None = None
    description: str = ""
    #: Model config the weights need (e.g. {"netG": "unet_256", "norm": "batch"}).
    model_config: dict[str, Any] | None = None
    filename: str | None = None
    #: Further files the weights need (e.g. AdaIN's decoder and its VGG encoder).  When given, every file
    #: is downloaded into one folder (``downloads/STYLE/NAME/``) and the importer gets that folder.
    companions: tuple[Pretrained, ...] = ()


def pull_weights(cls: Any, which: str | None, *, out: Path | None = None, say: Callable[[str], None] = print) -> Path:
    table: dict[str, Pretrained] = dict(getattr(cls, "pretrained", {}) or {})
    if not table:
        raise ValueError(f"style {cls.name} publishes no weights to pull; {cls.weights_hint}")
    if which is None:
        if len(table) > 1:
            raise ValueError(f"style {cls.name}: say which weights to pull: {', '.join(f'{cls.name}:{k}' for k in table)}")
        which = next(iter(table))
    if which not in table:
        raise ValueError(f"style {cls.name} has no published weights {which!r}; available: {', '.join(sorted(table))}")
    item = table[which]
    if item.companions:
        raw = cache_dir() / "downloads" / cls.name / which
        for part in (item, *item.companions):
            dest = raw / (part.filename or part.url.rsplit("/", 1)[-1])
            if not dest.is_file():
                say(f"downloading {part.url}")
                download_checked(part.url, dest, part.sha256)
    elif item.url.startswith("hf://"):
        say(f"fetching {item.url}")
        raw = resolve(item.url)
    else:
        raw = cache_dir() / "downloads" / cls.name / (item.filename or item.url.rsplit("/", 1)[-1])
        if not raw.is_file():
            say(f"downloading {item.url}")
            download_checked(item.url, raw, item.sha256)
    style = cls(item.model_config)
    style.import_weights(raw)
    dest = out or cache_dir() / "weights" / cls.name / which
    save_checkpoint(dest, style.state_dict(), style=cls.name, model_config=style.model_config.model_dump(mode="json"), meta={"source": item.url, "sha256": item.sha256})
    say(f"saved {dest}")
    return dest

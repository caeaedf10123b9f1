"""Paired training data for image-to-image GANs (pix2pix, BicycleGAN): folder layouts, preflight, and the
reference's augmentation (``data/aligned_dataset.py`` / ``data/base_dataset.py``, the same in
junyanz/pytorch-CycleGAN-and-pix2pix and junyanz/BicycleGAN).

The options are read from any object with the reference's option names (a style's ``TrainConfig``, see
:class:`PairOptions`).

Layouts (``--data DIR``; ``phase`` defaults to ``train``), tried in this order:

1. ``DIR/<phase>/A/`` + ``DIR/<phase>/B/``   separate folders, matched by name
2. ``DIR/A/<phase>/`` + ``DIR/B/<phase>/``   the layout the reference's ``combine_A_and_B.py`` reads
3. ``DIR/A/`` + ``DIR/B/``                   separate folders, matched by name
4. ``DIR/<phase>/``                          the reference's aligned format: each image is A | B side by side
5. ``DIR/``                                  aligned images directly in DIR

Separate folders pair by relative path without suffix (``A/0001.png`` with ``B/0001.jpg``,
:func:`styleengine.data.match_pairs`).  Before the first step every file is checked with the engine's
decoder (:func:`styleengine.data.preflight_images`); unreadable images and unmatched or ambiguous files are
reported together, by path, and ``--on-bad-file fail`` (default) stops while ``skip`` drops the affected
pairs and goes on.

Augmentation follows ``data/base_dataset.py`` of the reference: ``resize_and_crop`` (bicubic resize to
``load_size`` x ``load_size``, then a random ``crop_size`` crop), ``crop`` (random crop only) or
``none`` (sizes rounded to the generator's multiple; the reference rounds to 4, which the U-Nets cannot
take), then a random horizontal flip; A and B always get the same crop and flip.  The random draws come
from a generator seeded by (seed, epoch, index), never from global state, so a resumed run sees exactly
the batches an uninterrupted one would have seen.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image

from . import BadFile, DatasetError, find_images, match_pairs, preflight_images, probe_image, read_image, to_uint8
from .preflight import PreflightReport

log = logging.getLogger(__name__)

__all__ = [
    "Pair", "PairDataset", "PairOptions", "PairedData", "discover", "epoch_batches", "get_params", "prepare", "steps_per_epoch", "transform",
]


class PairOptions(Protocol):
    """The reference's data options this module reads (a style's ``TrainConfig`` has them)."""

    phase: str
    max_dataset_size: int | None
    preflight: str  # "full" | "header"
    preprocess: str  # "resize_and_crop" | "crop" | "none"
    load_size: int
    crop_size: int
    no_flip: bool
    direction: str  # "AtoB" | "BtoA"


@dataclass(frozen=True)
class Pair:
    a: Path
    b: Path | None  # None: aligned, ``a`` holds A | B side by side

    @property
    def paths(self) -> tuple[Path, ...]:
        return (self.a,) if self.b is None else (self.a, self.b)


@dataclass
class PairedData:
    pairs: list[Pair]
    layout: str
    root: Path


def discover(data_dir: Path, phase: str = "train") -> tuple[list[Pair], list[BadFile], str]:
    """Find the pairs under ``data_dir`` (see the module docstring); returns (pairs, problems, layout)."""
    d = Path(data_dir)
    for a, b, label in (
        (d / phase / "A", d / phase / "B", f"{phase}/A + {phase}/B"),
        (d / "A" / phase, d / "B" / phase, f"A/{phase} + B/{phase}"),
        (d / "A", d / "B", "A + B"),
    ):
        if a.is_dir() and b.is_dir():
            pairs, problems = match_pairs(a, b)
            return [Pair(x, y) for x, y in pairs], problems, f"separate folders {label}"
    for root, label in ((d / phase, f"aligned A|B images in {phase}/"), (d, "aligned A|B images")):
        if root.is_dir():
            images = find_images(root, recursive=root != d)
            if images:
                return [Pair(p, None) for p in images], [], label
    raise DatasetError(
        f"no training pairs found in {d}: expected aligned A|B images in {d / phase} (or {d}), or separate "
        f"folders {d / phase / 'A'} + {d / phase / 'B'}, {d / 'A' / phase} + {d / 'B' / phase}, or {d / 'A'} + {d / 'B'}"
    )


def prepare(data_dir: Path, cfg: PairOptions, on_bad_file: str, progress: bool = False) -> PairedData:
    """Discover the pairs, check every file, apply the bad-file policy (raises :class:`DatasetError`)."""
    pairs, problems, layout = discover(data_dir, cfg.phase)
    pairs = sorted(pairs, key=lambda p: p.a)
    if cfg.max_dataset_size is not None:
        pairs = pairs[: cfg.max_dataset_size]
    report = preflight_images([p for pair in pairs for p in pair.paths], full_decode=cfg.preflight == "full", progress=progress)
    bad = {b.path for b in report.bad}
    narrow = [
        BadFile(pair.a, "too narrow to hold A | B side by side", "unpaired")
        for pair in pairs
        if pair.b is None and pair.a not in bad and probe_image(pair.a).width < 2
    ]
    bad |= {b.path for b in narrow}
    good = [p for p in pairs if not any(x in bad for x in p.paths)]
    # One report of every problem, by path: unreadable images, unmatched or ambiguous names.
    summary = PreflightReport(ok=[p.a for p in good], bad=[*report.bad, *narrow, *problems])
    summary.apply(on_bad_file)  # type: ignore[arg-type]
    log.info("%d training pairs (%s) from %s", len(good), layout, data_dir)
    return PairedData(good, layout, Path(data_dir))


# -- the reference's transforms (data/base_dataset.py: get_params / get_transform) ------------------
def get_params(cfg: PairOptions, size: tuple[int, int], rng: random.Random) -> dict[str, Any]:
    w, h = size
    new_w, new_h = (cfg.load_size, cfg.load_size) if cfg.preprocess == "resize_and_crop" else (w, h)
    x = rng.randint(0, max(0, new_w - cfg.crop_size))
    y = rng.randint(0, max(0, new_h - cfg.crop_size))
    flip = rng.random() > 0.5
    return {"crop_pos": (x, y), "flip": flip}


def transform(img: Image.Image, cfg: PairOptions, params: dict[str, Any], multiple: int, grayscale: bool) -> torch.Tensor:
    if grayscale:
        img = img.convert("L")
    if cfg.preprocess == "resize_and_crop":
        img = img.resize((cfg.load_size, cfg.load_size), Image.BICUBIC)
    if "crop" in cfg.preprocess:
        ow, oh = img.size
        x, y = params["crop_pos"]
        if ow > cfg.crop_size or oh > cfg.crop_size:
            img = img.crop((x, y, x + cfg.crop_size, y + cfg.crop_size))
    if cfg.preprocess == "none":
        ow, oh = img.size
        w, h = max(multiple, round(ow / multiple) * multiple), max(multiple, round(oh / multiple) * multiple)
        if (w, h) != (ow, oh):
            img = img.resize((w, h), Image.BICUBIC)
    if not cfg.no_flip and params["flip"]:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    a = np.asarray(img, dtype=np.float32) / 255.0
    t = torch.from_numpy(a[None] if a.ndim == 2 else a.transpose(2, 0, 1).copy())
    return (t - 0.5) / 0.5


class PairDataset(torch.utils.data.Dataset):
    """Items are ``(epoch, index)`` keys; returns ``(input, target)`` tensors in [-1, 1].

    ``salt`` (the style's name) keeps one style's augmentation draws independent of another's."""

    def __init__(
        self, data: PairedData, cfg: PairOptions, *, multiple: int, input_nc: int, output_nc: int, seed: int, salt: str = "pix2pix"
    ) -> None:
        self.pairs = data.pairs
        self.cfg = cfg
        self.multiple = multiple
        self.input_nc, self.output_nc = input_nc, output_nc
        self.seed = seed
        self.salt = salt

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, pair: Pair) -> tuple[Image.Image, Image.Image]:
        a = Image.fromarray(to_uint8(read_image(pair.a).array))
        if pair.b is not None:
            return a, Image.fromarray(to_uint8(read_image(pair.b).array))
        w, h = a.size
        w2 = int(w / 2)
        return a.crop((0, 0, w2, h)), a.crop((w2, 0, w, h))

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, index = key
        a, b = self.load(self.pairs[index])
        if self.cfg.direction == "BtoA":
            a, b = b, a
        rng = random.Random(f"{self.salt}/{self.seed}/{epoch}/{index}")  # str seeds hash with sha512: stable
        params = get_params(self.cfg, a.size, rng)
        x = transform(a, self.cfg, params, self.multiple, grayscale=self.input_nc == 1)
        y = transform(b, self.cfg, params, self.multiple, grayscale=self.output_nc == 1)
        return x, y


def epoch_batches(
    n: int, batch_size: int, seed: int, epoch: int, rank: int = 0, world: int = 1, drop_last: bool = False
) -> list[list[tuple[int, int]]]:
    """This process's batches of one epoch: a seeded shuffle, global batches of ``batch_size * world``
    (the last one may be smaller, as the reference's DataLoader keeps it, unless ``drop_last``: BicycleGAN's
    reference skips a batch that is not full), each process taking its slice."""
    order = np.random.default_rng([seed, epoch]).permutation(n).tolist()
    step = batch_size * world
    batches = []
    for start in range(0, n, step):
        chunk = order[start : start + step]
        if drop_last and len(chunk) < step:
            break
        mine = chunk[rank::world] or chunk[:1]  # every process runs every step (DDP needs it)
        batches.append([(epoch, i) for i in mine])
    return batches


def steps_per_epoch(n: int, batch_size: int, world: int = 1, drop_last: bool = False) -> int:
    return n // (batch_size * world) if drop_last else math.ceil(n / (batch_size * world))

"""Fixtures for the pix2pix plugin's tests: tiny models, generated paired datasets, the CLI in-process.

Everything is offline and small (unet_128 / ngf 4, 128 x 128 crops) so the folder runs in well under two
minutes on two CPU cores.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("STYLEENGINE_OFFLINE", "1")

#: The smallest sensible model: every code path of the big ones, a few thousand parameters.
TINY = {"netG": "unet_128", "ngf": 4}
#: Training options for TINY: 128 x 128 crops from images resized to 136.
TINY_TRAIN = {**TINY, "ndf": 4, "load_size": 136, "crop_size": 128, "batch_size": 2, "n_epochs": 1, "n_epochs_decay": 1}


@pytest.fixture
def tiny() -> dict:
    return dict(TINY)


@pytest.fixture
def tiny_train() -> dict:
    return dict(TINY_TRAIN)


def _image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    # smooth colour gradients plus noise: cheap, and not constant (BN statistics stay finite)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([x, y, 1 - x * y], -1) * 200 + rng.random((h, w, 3)) * 55
    return base.astype(np.uint8)


@pytest.fixture
def make_aligned() -> Callable[..., Path]:
    """``make_aligned(root, n=4, size=32, phases=("train",))``: the reference's A|B side-by-side format,
    B = colour-inverted A."""

    def make(root: Path, n: int = 4, size: int = 32, phases: tuple[str, ...] = ("train",)) -> Path:
        rng = np.random.default_rng(0)
        for phase in phases:
            d = root / phase
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                a = _image(rng, size, size)
                Image.fromarray(np.concatenate([a, 255 - a], 1)).save(d / f"{i:03d}.png")
        return root

    return make


@pytest.fixture
def make_separate() -> Callable[..., Path]:
    """``make_separate(root, n=4, size=32)``: ``A/`` and ``B/`` folders, files paired by name."""

    def make(root: Path, n: int = 4, size: int = 32) -> Path:
        rng = np.random.default_rng(1)
        for side in ("A", "B"):
            (root / side).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            a = _image(rng, size, size)
            Image.fromarray(a).save(root / "A" / f"{i:03d}.png")
            Image.fromarray(255 - a).save(root / "B" / f"{i:03d}.jpg", quality=95)
        return root

    return make


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    """A 90 x 130 JPEG (not a multiple of anything the generators take)."""
    path = tmp_path / "photo.jpg"
    Image.fromarray(_image(np.random.default_rng(2), 90, 130)).save(path, quality=95)
    return path


@pytest.fixture
def engine_cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """Run ``engine ARGS...`` in-process (the console script's ``main``); returns (status, stdout, stderr)."""
    from styleengine.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out = capsys.readouterr()
        return code, out.out, out.err

    return run

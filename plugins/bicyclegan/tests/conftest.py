"""Fixtures for the bicyclegan plugin's tests: tiny models, generated paired datasets, the CLI in-process.

Everything is offline and small (unet_128 / ngf 4 / resnet_128 encoder with nef 4, 128 x 128 images) so the
folder runs in about a minute on two CPU cores.
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

#: The smallest sensible model: every code path of the big one, a few thousand parameters.
TINY = {"netG": "unet_128", "ngf": 4, "nef": 4, "netE": "resnet_128"}
#: Training options for TINY: 128 x 128 crops from images resized to 136, small multi-scale Ds.
TINY_TRAIN = {**TINY, "ndf": 4, "netD": "basic_128_multi", "netD2": "basic_128_multi", "load_size": 136, "crop_size": 128,
              "batch_size": 2, "niter": 1, "niter_decay": 1}


@pytest.fixture(autouse=True)
def one_thread():  # noqa: ANN201
    """Tiny nets on a shared 2-core machine: torch's intra-op threads only contend (10x slower per step measured),
    so this folder's tests run single-threaded; the setting is restored after each test."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny() -> dict:
    return dict(TINY)


@pytest.fixture
def tiny_train() -> dict:
    return dict(TINY_TRAIN)


def image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    # smooth colour gradients plus noise: cheap, and not constant (instance-norm statistics stay finite)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([x, y, 1 - x * y], -1) * 200 + rng.random((h, w, 3)) * 55
    return base.astype(np.uint8)


@pytest.fixture
def make_aligned() -> Callable[..., Path]:
    """``make_aligned(root, n=4, size=32)``: the reference's A|B side-by-side format, B = colour-inverted A."""

    def make(root: Path, n: int = 4, size: int = 32, phase: str = "train") -> Path:
        rng = np.random.default_rng(0)
        d = root / phase
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            a = image(rng, size, size)
            Image.fromarray(np.concatenate([a, 255 - a], 1)).save(d / f"{i:03d}.png")
        return root

    return make


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    """A 90 x 130 JPEG (not a multiple of anything the generators take)."""
    path = tmp_path / "photo.jpg"
    Image.fromarray(image(np.random.default_rng(2), 90, 130)).save(path, quality=95)
    return path


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """A 70 x 50 PNG: the style example (the encoder takes 128 x 128 for TINY: it is resized)."""
    path = tmp_path / "example.png"
    Image.fromarray(255 - image(np.random.default_rng(5), 70, 50)).save(path)
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

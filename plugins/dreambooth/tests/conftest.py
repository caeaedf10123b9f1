"""Fixtures for the DreamBooth plugin's tests: tiny random SD components, generated instance images.

Offline and small: the tiny components of :mod:`styleengine.diffusion.tiny` (4-channel UNet, x8 VAE, 2-layer
CLIP) at 64 px, 1-4 denoising / training steps.
"""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("STYLEENGINE_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).parent
REPO = HERE.parents[2]
for p in (REPO / "tests" / "diffusion", HERE):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

pytest.importorskip("diffusers")


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One intra-op thread (tiny models; a shared CPU): see the InstructPix2Pix plugin's conftest for the numbers."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_style():
    """The style on tiny random components (do not load weights into it: build your own for that)."""
    from styleengine_dreambooth import DreamBoothStyle

    style = DreamBoothStyle({"size": "tiny"})
    _ = style.modules
    return style


@pytest.fixture(scope="session")
def torch_sessions(tiny_style):
    from styleengine.runtime.base import SessionOptions
    from styleengine.runtime.torch import TorchSession

    return {s.name: TorchSession(s, SessionOptions()) for s in tiny_style.graphs()}


def subject(seed: int, size: int = 64) -> np.ndarray:
    """A generated "subject": a coloured disc on a gradient, position and colours from the seed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    cy, cx = rng.integers(size // 3, 2 * size // 3, 2)
    disc = ((yy - cy) ** 2 + (xx - cx) ** 2) < (size // 4) ** 2
    img = np.linspace(40, 200, size)[None, :, None] * np.ones((size, 1, 3))
    img[disc] = np.array([220, 40, 40]) + rng.integers(-20, 20, 3)
    return img.clip(0, 255).astype(np.uint8)


@pytest.fixture
def instance_dir(tmp_path) -> Path:
    d = tmp_path / "instance"
    d.mkdir()
    for i in range(3):
        Image.fromarray(subject(i)).save(d / f"{i}.png")
    return d


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """`engine export dreambooth` of the tiny model with a LoRA fused (torchscript exporter: seconds): (out, lora, stderr)."""
    from db_helpers import random_lora, run_cli

    d = tmp_path_factory.mktemp("export")
    lora = random_lora(d / "dog.safetensors", 1, text_encoder=True)
    out = d / "artifacts"
    code, _, err = run_cli("export", "dreambooth", "--model-set", "size=tiny", "--model-set", f"loras={{dog: {lora}}}",
                           "--model-set", "export_lora=dog", "--allow-random-weights", "--profile", str(REPO / "export" / "profiles" / "dreambooth-tiny.yaml"),
                           "--exporter", "torchscript", "--out", str(out))
    assert code == 0, err
    gc.collect()
    return out, lora, err

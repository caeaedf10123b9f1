"""Fixtures for the gatys plugin's tests: one intra-op thread, tiny images; nothing touches the network."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("STYLEENGINE_OFFLINE", "1")
os.environ.pop("STYLEENGINE_GATYS_VGG", None)
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="module", autouse=True)
def _one_intra_op_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def smooth_image(h: int, w: int, seed: int) -> np.ndarray:
    """A float32 HxWx3 image in [0, 1] with correlated colours and some structure (not white noise)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.nn.functional.interpolate(torch.rand(1, 3, max(h // 6, 2), max(w // 6, 2), generator=g), size=(h, w),
                                           mode="bicubic", align_corners=False)[0]
    mix = torch.rand(3, 3, generator=g) + torch.eye(3)
    img = (mix @ base.reshape(3, -1)).reshape(3, h, w) / mix.sum(1, keepdim=True).reshape(3, 1, 1)
    img = img + 0.15 * torch.rand(3, h, w, generator=g)
    return img.clamp(0, 1).permute(1, 2, 0).numpy().astype(np.float32)


@pytest.fixture(scope="session")
def images() -> dict[str, np.ndarray]:
    return {"content": smooth_image(64, 64, 1), "style": smooth_image(48, 40, 2), "style2": smooth_image(40, 56, 3),
            "small": smooth_image(24, 32, 4)}


@pytest.fixture(scope="session")
def style():
    from styleengine_gatys import GatysStyle

    s = GatysStyle(device="cpu")
    s.modules  # noqa: B018 - build once
    return s

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
sys.path.insert(0, str(Path(__file__).parent))  # gatys_helpers

from gatys_helpers import smooth_image  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def _one_intra_op_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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

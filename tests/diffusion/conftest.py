"""Fixtures for the diffusion core's tests: tiny random SD components, offline, on the CPU."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# diffusion_support.py (helpers) next to this file.
if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))

pytest.importorskip("diffusers")
pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from styleengine.diffusion.tiny import tiny_components

    return tiny_components(seed=0, tmpdir=tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def tiny_ip2p(tmp_path_factory):
    from styleengine.diffusion.tiny import tiny_components

    return tiny_components(seed=1, unet_in_channels=8, tmpdir=tmp_path_factory.mktemp("tiny_ip2p"),
                           scheduler="euler_ancestral")


@pytest.fixture(scope="module")
def tiny_cn(tmp_path_factory):
    from styleengine.diffusion.tiny import tiny_components

    return tiny_components(seed=2, with_controlnet=True, tmpdir=tmp_path_factory.mktemp("tiny_cn"))

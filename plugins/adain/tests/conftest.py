"""Fixtures for the AdaIN plugin's tests: a small-dims style, reference-layout checkpoints, tiny images.

Nothing here touches the network: "reference" checkpoints are random weights written in
naoto0804/pytorch-AdaIN's layout (``vgg_normalised.pth`` with all 53 modules, ``decoder.pth``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("STYLEENGINE_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))  # adain_helpers (tests run with --import-mode=importlib)

from styleengine.nn.vgg import NormalisedVGG  # noqa: E402
from adain_helpers import smooth_image  # noqa: E402
from styleengine_adain.nets import AdaINDecoder, init_random_encoder_  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def _one_intra_op_thread():
    """These tests run tiny tensors (16-64 px), where a second intra-op thread gains nothing and, on a shared
    2-core machine, costs a lot: every operator waits at a barrier for a thread that is not scheduled.
    Module-scoped and restored, so tests outside this folder keep torch's setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def reference_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with ``vgg_normalised.pth`` (53 modules; the layers past relu4_1 random too) and ``decoder.pth``.

    Weights differ from the style's own random initialisation (other seed), so importing is observable.
    """
    root = tmp_path_factory.mktemp("adain_reference")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1234)
        vgg = init_random_encoder_(NormalisedVGG())  # full depth, as the reference file
        decoder = AdaINDecoder()
    torch.save(vgg.state_dict(), root / "vgg_normalised.pth")
    torch.save(decoder.state_dict(), root / "decoder.pth")
    return root


@pytest.fixture(scope="session")
def images() -> dict[str, np.ndarray]:
    return {
        "content": smooth_image(40, 56, 1),  # sides multiples of 8: processed at their own size with *_size=0
        "style": smooth_image(32, 48, 2),
        "style2": smooth_image(48, 40, 3),
        "odd": smooth_image(37, 61, 4),  # not a multiple of 8
    }

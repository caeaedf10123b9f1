"""Fixtures for the InstructPix2Pix plugin's tests: tiny random SD components, generated datasets, one export.

Everything is offline and small: the tiny components of :mod:`styleengine.diffusion.tiny` (8-channel UNet,
x8 VAE, 2-layer CLIP) at 64-128 px, so the folder runs in about a minute on two CPU cores.  The export runs once
per session (``exported``) and is shared by the parity, ONNX Runtime and conformance tests.
"""

from __future__ import annotations

import gc
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("STYLEENGINE_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).parent
REPO = HERE.parents[2]
# ip2p_helpers.py next to this file; the diffusion core's test helpers (diffusers reference pipelines over the
# same modules, the LDM single-file writer) from the core's tests.
for p in (REPO / "tests" / "diffusion", HERE):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

pytest.importorskip("diffusers")

from ip2p_helpers import TINY, TINY_PROFILE  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One intra-op thread while this folder's tests run (restored after each module).

    The models are tiny, so threads buy little; and on a CPU shared with other jobs OpenMP's spin-waiting
    under oversubscription more than doubled this folder's CPU time (measured: 131 s vs 23 s user)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_ip2p(tmp_path_factory):
    """Tiny InstructPix2Pix-shaped components (the pipeline tests' reference modules)."""
    from styleengine.diffusion.tiny import tiny_components

    return tiny_components(seed=1, unet_in_channels=8, tmpdir=tmp_path_factory.mktemp("tiny_ip2p"),
                           scheduler="euler_ancestral")


@pytest.fixture(scope="session")
def tiny_style():
    """The style on tiny random components (do not load weights into it: build your own for that)."""
    from styleengine_instruct_pix2pix import InstructPix2PixStyle

    style = InstructPix2PixStyle(TINY)
    _ = style.modules
    return style


@pytest.fixture(scope="session")
def torch_sessions(tiny_style):
    from styleengine.runtime.base import SessionOptions
    from styleengine.runtime.torch import TorchSession

    return {s.name: TorchSession(s, SessionOptions()) for s in tiny_style.graphs()}


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """``engine export instruct_pix2pix`` of the tiny model with the tiny profile: (artifact folder, stderr).

    The TorchScript exporter keeps this at seconds (the dynamo exporter takes ~1 min for these four graphs on two
    busy cores; it is the default and its UNet export is tested in tests/diffusion/test_graphs.py)."""
    from ip2p_helpers import run_cli

    out = tmp_path_factory.mktemp("artifacts") / "instruct_pix2pix"
    code, _, err = run_cli("export", "instruct_pix2pix", "--model-set", "size=tiny", "--allow-random-weights",
                           "--profile", str(TINY_PROFILE), "--exporter", "torchscript", "--out", str(out))
    assert code == 0, err
    gc.collect()  # ONNX Runtime sessions of the parity check spin their threads until destroyed: free them now
    return out, err


def _gradient(seed: int, size: int = 48) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, size)[None, :, None] * np.ones((size, 1, 3))
    return (base * rng.random(3) + rng.random((size, size, 3)) * 40).clip(0, 255).astype(np.uint8)


@pytest.fixture
def make_simple() -> Callable[..., Path]:
    """``make_simple(root, n=4)``: input/, edited/ (colour-inverted), prompts.jsonl."""

    def make(root: Path, n: int = 4) -> Path:
        (root / "input").mkdir(parents=True)
        (root / "edited").mkdir()
        lines = []
        for i in range(n):
            Image.fromarray(_gradient(i)).save(root / "input" / f"{i}.png")
            Image.fromarray(255 - _gradient(i)).save(root / "edited" / f"{i}.png")
            lines.append(json.dumps({"file": f"{i}.png", "instruction": "invert the colours"}))
        (root / "prompts.jsonl").write_text("\n".join(lines) + "\n")
        return root

    return make


@pytest.fixture
def make_reference() -> Callable[..., Path]:
    """``make_reference(root, n=4)``: the reference's seeds.json + <prompt>/prompt.json + <seed>_0/1.jpg."""

    def make(root: Path, n: int = 4, seeds_per_prompt: int = 2) -> Path:
        entries = []
        for i in range(n):
            d = root / f"prompt{i}"
            d.mkdir(parents=True)
            (d / "prompt.json").write_text(json.dumps({"input": "a photo", "edit": "invert the colours", "output": "inverted"}))
            seeds = [100 * (k + 1) + i for k in range(seeds_per_prompt)]
            for s in seeds:
                Image.fromarray(_gradient(s)).save(d / f"{s}_0.jpg")
                Image.fromarray(255 - _gradient(s)).save(d / f"{s}_1.jpg")
            entries.append([d.name, seeds])
        (root / "seeds.json").write_text(json.dumps(entries))
        return root

    return make

"""Shared fixtures for the core's tests.  Nothing here touches the network."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("STYLEENGINE_OFFLINE", "1")


@pytest.fixture
def plugin_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder on sys.path where tests create fake plugin distributions."""
    import importlib

    from styleengine.plugins import reset_engine

    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    importlib.invalidate_caches()
    reset_engine()
    yield root
    reset_engine()


@pytest.fixture
def rgb() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.random((40, 56, 3), dtype=np.float32)

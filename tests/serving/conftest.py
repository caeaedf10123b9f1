"""Fixtures for the serving tests.  One server per test module (module-scoped fixtures), tiny models and small
images keep the folder within a few minutes on 2 cores; servers bind 127.0.0.1 only and are always stopped."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from serving_helpers import REPO, server_env  # noqa: E402


@pytest.fixture(scope="session")
def bento_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bentoml-home")


@pytest.fixture(scope="session")
def test_style_model(bento_home: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """test-style exported to ONNX (random weights) and stored as styleengine-test-style-default."""
    out = tmp_path_factory.mktemp("artifacts") / "test-style"
    r = subprocess.run(
        [sys.executable, "-m", "styleengine", "-q", "export", "test-style", "--allow-random-weights", "--out", str(out), "--bento-model"],
        env=server_env(bento_home), cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 0, r.stderr
    return {"tag": "styleengine-test-style-default:latest", "artifacts": str(out)}


@pytest.fixture(scope="session")
def bentoml_cli() -> list[str]:
    return [sys.executable, "-m", "bentoml"]

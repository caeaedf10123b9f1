"""Fixtures for the serving tests.  One server per test module (module-scoped fixtures), tiny models and small
images keep the folder within a few minutes on 2 cores; servers bind 127.0.0.1 only and are always stopped."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from serving_helpers import PIX2PIX_TINY, REPO, server_env  # noqa: E402


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
def pix2pix_model(bento_home: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """pix2pix (tiny, random weights) exported to ONNX for sides 128..256 and stored as styleengine-pix2pix-eval."""
    from styleengine.plugins import load_engine

    if "pix2pix" not in load_engine().styles:
        pytest.skip("the pix2pix plugin is not installed")
    tmp = tmp_path_factory.mktemp("p2p")
    out = tmp / "artifacts"
    profile = tmp / "small.yaml"  # sides up to 256: a quick parity check at the max shapes
    profile.write_text("dims:\n  height: {min: 128, opt: 128, max: 256}\n  width: {min: 128, opt: 128, max: 256}\n"
                       "  batch: {min: 1, opt: 2, max: 4}\n")
    sets = [a for k, v in PIX2PIX_TINY.items() for a in ("--model-set", f"{k}={v}")]
    r = subprocess.run(
        [sys.executable, "-m", "styleengine", "-q", "export", "pix2pix", "--allow-random-weights", *sets, "--profile", str(profile),
         "--out", str(out), "--bento-model"],
        env=server_env(bento_home), cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, r.stderr
    return {"tag": "styleengine-pix2pix-eval:latest", "artifacts": str(out)}


@pytest.fixture(scope="session")
def bentoml_cli() -> list[str]:
    return [sys.executable, "-m", "bentoml"]

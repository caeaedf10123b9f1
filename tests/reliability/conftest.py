"""Fixtures of the reliability suite: real servers on 127.0.0.1 (tiny styles, bounded in requests and time).

The serving tests' helpers (tests/serving/serving_helpers.py) start and always stop them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
for p in (HERE.parent / "serving", HERE):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from corpus import BODY_TIMEOUT, MAX_IMAGE, MAX_REQUEST  # noqa: E402
from serving_helpers import engine_serve, start_or_fail  # noqa: E402


@pytest.fixture(scope="session")
def bento_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("reliability-bentoml-home")


@pytest.fixture(scope="module")
def server(bento_home, tmp_path_factory):
    """test-style on torch (random weights) with small limits and a 2 s receipt deadline."""
    log = tmp_path_factory.mktemp("logs") / "reliability-server.log"
    srv = engine_serve(
        "test-style", "--allow-random-weights", "--max-batch-size", "4", "--max-concurrency", "16", "--timeout", "30",
        "--arg", f"max_request_bytes={MAX_REQUEST}", "--arg", f"max_image_bytes={MAX_IMAGE}", "--arg", "max_pixels=262144",
        "--arg", "max_side=1024", "--arg", f"body_timeout_s={BODY_TIMEOUT}",
        home=bento_home, log_path=log,
    )
    yield from start_or_fail(srv)

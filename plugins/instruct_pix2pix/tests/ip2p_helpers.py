"""Helpers of the InstructPix2Pix plugin's tests (conftest puts this folder on sys.path)."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[3]
TINY = {"size": "tiny"}
#: Parameters of the infer tests: 2 steps at a 64-px working size.
FAST = {"steps": 2, "resolution": 64}
TINY_PROFILE = REPO / "export" / "profiles" / "instruct_pix2pix-tiny.yaml"


def run_cli(*args: str) -> tuple[int, str, str]:
    """``engine ARGS`` in this process (the same code path as the console script): (exit code, stdout, stderr)."""
    from styleengine.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def run_engine(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m styleengine ARGS`` as a subprocess, like a user would."""
    e = {**os.environ, "HF_HUB_OFFLINE": "1", "STYLEENGINE_OFFLINE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "styleengine", *args], cwd=cwd, env=e, capture_output=True, text=True,
                          timeout=600)


def request(seed: int, instruction: str = "make it snowy", size: tuple[int, int] = (40, 56), negative: str = ""):
    from styleengine.style import StyleRequest

    rng = np.random.default_rng(seed)
    texts = {"instruction": instruction}
    if negative:
        texts["negative_prompt"] = negative
    return StyleRequest(images={"image": rng.random((*size, 3), dtype=np.float32)}, texts=texts, seed=seed, id=f"r{seed}")


def max_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max())

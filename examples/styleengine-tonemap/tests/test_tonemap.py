"""tonemap: the conformance suite, training on generated pairs, and the CLI end to end (export, infer on
ONNX Runtime, bench).  Small images and a 4-channel network keep the file at a few seconds of compute."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from styleengine.testing import conformance_suite
from styleengine_tonemap import Tonemap

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# The engine's pytest plugin: marks the checks `conformance` (pytest -m conformance) and adds the engine's
# version and installed styles to the report header.  (In a plugin's own repository it can go in the top-level
# conftest.py instead; pytest refuses pytest_plugins in a conftest.py below the root, so here it is per module.)
pytest_plugins = ["styleengine.testing"]

TINY = {"hidden": 4, "context": 4}

# Every check of styleengine.testing, on a tiny network; exported dims shrunk so parity at "max" is quick.
TestTonemapConformance = conformance_suite(
    "tonemap",
    model_config=TINY,
    image_size=(32, 48),
    graph_dims={"height": {"max": 64}, "width": {"max": 64}, "batch": {"max": 4}},
)


def grade(x: np.ndarray) -> np.ndarray:
    """The "look" the tests teach: a gamma lift and a warm tint."""
    y = x**0.7 * np.array([1.0, 0.95, 0.85], np.float32)
    return np.clip(y, 0.0, 1.0).astype(np.float32)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from skimage import data

    root = tmp_path_factory.mktemp("pairs")
    (root / "input").mkdir()
    (root / "target").mkdir()
    photo = data.astronaut()[::4, ::4]  # 128 x 128
    for i, (r, c) in enumerate([(0, 0), (0, 64), (64, 0), (64, 64)]):
        crop = photo[r : r + 64, c : c + 64]
        Image.fromarray(crop).save(root / "input" / f"{i}.png")
        Image.fromarray((grade(crop / 255.0) * 255).round().astype(np.uint8)).save(root / "target" / f"{i}.png")
    return root


def engine(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([sys.executable, "-m", "styleengine", "-q", *args], capture_output=True, text=True, cwd=cwd, timeout=300)
    assert r.returncode == 0, r.stderr
    return r


@pytest.fixture(scope="module")
def trained(pairs: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    from styleengine.training import TrainContext

    style = Tonemap(TINY)
    cfg = Tonemap.TrainConfig(model=TINY, steps=60, crop=32, batch_size=4, lr=2e-2)
    out = tmp_path_factory.mktemp("run")
    res = style.train(cfg, TrainContext(out_dir=out, data={"data": pairs}, cpu=True, show_progress=False, sample_every=30))
    return res.checkpoint, {"history": res.history}


def test_training_learns_the_grade(trained: tuple[Path, dict], pairs: Path) -> None:
    ckpt, info = trained
    losses = [h["loss"] for h in info["history"]]
    assert len(losses) == 60 and np.mean(losses[-10:]) < 0.6 * np.mean(losses[:5])
    style = Tonemap()  # the checkpoint rebuilds its own (tiny) network
    style.load_weights(ckpt)
    assert style.model_config == Tonemap.ModelConfig(**TINY)
    from styleengine.runtime.base import SessionOptions
    from styleengine.runtime.torch import TorchSession
    from styleengine.style import StyleRequest

    x = np.asarray(Image.open(pairs / "input" / "0.png"), np.float32) / 255.0
    y = np.asarray(Image.open(pairs / "target" / "0.png"), np.float32) / 255.0
    sessions = {s.name: TorchSession(s, SessionOptions()) for s in style.graphs()}
    [res] = style.infer(sessions, [StyleRequest(images={"image": x})], style.Config())
    [plain] = style.infer(sessions, [StyleRequest(images={"image": x})], style.Config(strength=0.0))
    assert np.abs(res.image - y).mean() < 0.7 * np.abs(x - y).mean()
    np.testing.assert_allclose(plain.image, x, atol=1e-6)  # strength 0 is the input


def test_listed_exported_run_on_onnxruntime_and_benchmarked(trained: tuple[Path, dict], pairs: Path, tmp_path: Path) -> None:
    ckpt, _ = trained
    listed = json.loads(engine("styles", "--json", cwd=tmp_path).stdout)
    [row] = [s for s in listed["styles"] if s["name"] == "tonemap"]
    assert row["distribution"] == "styleengine-tonemap" and "export" in row["capabilities"]
    profile = tmp_path / "small.yaml"
    profile.write_text("dims:\n  height: {min: 16, opt: 64, max: 128}\n  width: {min: 16, opt: 64, max: 128}\n  batch: {min: 1, opt: 1, max: 2}\n")
    art = tmp_path / "artifacts"
    engine("export", "tonemap", "--weights", str(ckpt), "--profile", str(profile), "--out", str(art), cwd=tmp_path)
    manifest = json.loads((art / "manifest.json").read_text())
    assert manifest["graphs"]["net"]["parity"]["passed"]
    out = tmp_path / "out"
    r = engine("infer", "tonemap", str(pairs / "input" / "1.png"), "--runtime", "onnxruntime", "--artifacts", str(art), "-o", str(out),
               "--set", "exposure=0.5", cwd=tmp_path)
    result = np.asarray(Image.open(r.stdout.strip()))
    assert result.shape == (64, 64, 3)
    bench = json.loads(engine("bench", "tonemap", "--runtime", "onnxruntime", "--artifacts", str(art), "--size", "64", "--iters", "2",
                              "--warmup", "1", "--no-baseline", "--weights", str(ckpt), "--json", cwd=tmp_path).stdout)
    assert bench  # a report came back (its layout is engine bench's; see benchmarks/README.md)


def test_config_bounds_and_contract() -> None:
    from pydantic import ValidationError

    for bad in ({"strength": 1.5}, {"exposure": float("nan")}, {"gamma": 2}):
        with pytest.raises(ValidationError):
            Tonemap.Config(**bad)
    with pytest.raises(ValidationError):
        Tonemap.ModelConfig(context=3)
    assert Tonemap.inputs.size_multiple % 16 == 0 and Tonemap.inputs.size_policy == "pad"

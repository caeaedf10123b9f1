"""The `engine` command line, run as a subprocess like a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support import make_dist

ENGINE = [sys.executable, "-m", "styleengine"]


def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    e = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run([*ENGINE, *args], cwd=cwd, env=e, capture_output=True, text=True, timeout=300)


@pytest.fixture
def broken_env(tmp_path):
    site = tmp_path / "site"
    make_dist(site, "broken-dist", {"broken": "mod_broken_cli"}, {"mod_broken_cli": "raise ImportError('missing dependency xyz')\n"})
    return {"PYTHONPATH": f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def test_styles_json_lists_test_style(tmp_path):
    r = run("styles", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    [row] = [s for s in data["styles"] if s["name"] == "test-style"]
    assert row["aliases"] == ["teststyle"] and row["capabilities"] == ["export", "infer", "train"]
    assert "torch" in row["runtimes"] and "onnxruntime" in row["runtimes"]
    assert row["distribution"] == "styleengine-test-style" and row["version"] == "0.1.0"


def test_broken_plugin_listed_as_skipped_and_strict_fails(tmp_path, broken_env):
    r = run("styles", "--json", cwd=tmp_path, env=broken_env)
    assert r.returncode == 0
    data = json.loads(r.stdout)
    [skip] = data["skipped"]
    assert skip["distribution"] == "broken-dist" and "missing dependency xyz" in skip["error"]
    assert any(s["name"] == "test-style" for s in data["styles"])
    r = run("--strict", "styles", cwd=tmp_path, env=broken_env)
    assert r.returncode != 0 and "broken-dist" in r.stderr and "missing dependency xyz" in r.stderr and "Traceback" not in r.stderr
    r = run("plugins", "--check", cwd=tmp_path, env=broken_env)
    assert r.returncode == 1 and "SKIPPED" in r.stdout


def test_unknown_style_did_you_mean(tmp_path):
    r = run("export", "test-styl", "--allow-random-weights", cwd=tmp_path)
    assert r.returncode == 1 and "Did you mean 'test-style'" in r.stderr and "Traceback" not in r.stderr


def test_weights_required_unless_allowed(tmp_path):
    r = run("export", "test-style", cwd=tmp_path)
    assert r.returncode == 1 and "--allow-random-weights" in r.stderr and "engine train test-style" in r.stderr


def test_export_validate_infer_and_trt_exit_2(tmp_path):
    r = run("export", "test-style", "--onnx", "--allow-random-weights", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    art = tmp_path / "export/artifacts/test-style/default/fp32"
    m = json.loads((art / "manifest.json").read_text())
    assert m["graphs"]["net"]["parity"]["passed"]
    r = run("validate", str(art), cwd=tmp_path)
    assert r.returncode == 0 and "net: ok" in r.stdout
    img = tmp_path / "in.png"
    Image.fromarray((np.random.default_rng(0).random((20, 30, 3)) * 255).astype(np.uint8)).save(img)
    outs = {}
    for rt in ("torch", "onnxruntime"):
        r = run("infer", "test-style", str(img), "--runtime", rt, "-o", f"out-{rt}", "--allow-random-weights", "--set", "strength=0.5", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        outs[rt] = np.asarray(Image.open(tmp_path / r.stdout.strip()), dtype=np.int16)
        assert outs[rt].shape == (20, 30, 3)
    assert np.abs(outs["torch"] - outs["onnxruntime"]).max() <= 1
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        r = run("export", "test-style", "--trt", "--allow-random-weights", cwd=tmp_path)
        assert r.returncode == 2 and "`tensorrt` extra" in r.stderr and "trtexec --onnx=" in r.stderr
        assert (art / "net.onnx").is_file()


def test_bad_parameters_are_one_line_errors(tmp_path):
    img = tmp_path / "in.png"
    Image.new("RGB", (16, 16)).save(img)
    r = run("infer", "test-style", str(img), "--allow-random-weights", "--set", "strength=.nan", cwd=tmp_path)
    assert r.returncode == 1 and "strength" in r.stderr and "Traceback" not in r.stderr
    r = run("infer", "test-style", str(img), "--allow-random-weights", "--set", "bogus=1", cwd=tmp_path)
    assert r.returncode == 1 and "bogus" in r.stderr
    (tmp_path / "bad.png").write_bytes(b"not an image at all")
    r = run("infer", "test-style", str(tmp_path / "bad.png"), "--allow-random-weights", cwd=tmp_path)
    assert r.returncode == 1 and "bad.png" in r.stderr and "Traceback" not in r.stderr
    r = run("infer", "test-style", str(img), "--runtime", "onnxruntime", "--artifacts", str(tmp_path / "nope"), "--allow-random-weights", cwd=tmp_path)
    assert r.returncode == 1 and "engine export" in r.stderr


def test_help_on_every_command(tmp_path):
    for cmd in ("styles", "plugins", "export", "validate", "infer", "train", "pull"):
        r = run(cmd, "--help", cwd=tmp_path)
        assert r.returncode == 0 and "Usage: engine" in r.stdout and len(r.stdout) > 200


def test_train_resume_and_infer_with_weights(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray((rng.random((24, 24, 3)) * 255).astype(np.uint8)).save(data / f"{i}.png")
    (data / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    r = run("train", "test-style", "--data", str(data), "--set", "steps=6", "--no-progress", cwd=tmp_path)
    assert r.returncode == 1 and "broken.png" in r.stderr  # preflight names the bad file before any step
    r = run("train", "test-style", "--data", str(data), "--set", "steps=6", "--on-bad-file", "skip", "--max-steps", "3", "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = run("train", "test-style", "--data", str(data), "--set", "steps=6", "--on-bad-file", "skip", "--resume", "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    ckpt = Path(tmp_path / r.stdout.strip())
    assert ckpt.name == "step-0000006" and (ckpt / "model.safetensors").is_file()
    img = data / "0.png"
    r = run("infer", "test-style", str(img), "--weights", str(ckpt), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out_ckpt = Path(r.stdout.strip().splitlines()[-1])
    # the run folder (and its checkpoints/ folder) stand for the newest complete checkpoint
    for ref, out_dir in ((tmp_path / "runs" / "test-style", "by-run"), (tmp_path / "runs" / "test-style" / "checkpoints", "by-ckpts")):
        r = run("infer", "test-style", str(img), "--weights", str(ref), "-o", out_dir, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        by_run = Path(r.stdout.strip().splitlines()[-1])
        assert np.array_equal(np.asarray(Image.open(tmp_path / by_run)), np.asarray(Image.open(tmp_path / out_ckpt)))
    empty = tmp_path / "runs" / "empty" / "checkpoints"
    (empty / "step-0000001").mkdir(parents=True)  # a checkpoint folder cut short: no training_state.json
    r = run("infer", "test-style", str(img), "--weights", str(empty.parent), cwd=tmp_path)
    assert r.returncode == 1 and "without a complete checkpoint" in r.stderr


def one_line_failure(r: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Exit 1, no traceback, exactly one ``error:`` line naming each needle."""
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, r.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_corrupt_weights_and_artifacts_are_one_line_errors(tmp_path):
    """A pickle named .safetensors, junk, a flipped byte in a checkpoint's tensor data, an ONNX file with a
    broken header (digest re-recorded), one flipped byte in an exported graph, an external-data path that
    leaves the folder: each is refused at load with one line and exit 1, never served or run."""
    import shutil

    import torch

    from styleengine.io import atomic_write_json, sha256_file
    from styleengine.plugins import load_engine
    from styleengine.weights import save_checkpoint

    img = tmp_path / "in.png"
    Image.new("RGB", (16, 16)).save(img)
    pickled = tmp_path / "pickled.safetensors"
    torch.save({"net.conv1.weight": torch.zeros(1)}, pickled)
    one_line_failure(run("infer", "test-style", str(img), "--weights", str(pickled), cwd=tmp_path), "pickled.safetensors", "not a safetensors file")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(os.urandom(256))
    one_line_failure(run("infer", "test-style", str(img), "--weights", str(junk), cwd=tmp_path), "junk.safetensors")
    # a sealed engine checkpoint whose tensor data changed after it was written
    style = load_engine().style_class("test-style")()
    ckpt = save_checkpoint(tmp_path / "ckpt", style.state_dict(), style="test-style", model_config=style.model_config.model_dump())
    model = ckpt / "model.safetensors"
    data = bytearray(model.read_bytes())
    data[-3] ^= 0x01  # the last tensor's bytes; the header is untouched, so only the digest can tell
    model.write_bytes(bytes(data))
    one_line_failure(run("infer", "test-style", str(img), "--weights", str(ckpt), cwd=tmp_path), "model.safetensors", "sha256")

    art = tmp_path / "art"
    r = run("-q", "export", "test-style", "--allow-random-weights", "--out", str(art), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    infer_ort = ("infer", "test-style", str(img), "--runtime", "onnxruntime", "--allow-random-weights")
    assert run(*infer_ort, "--artifacts", str(art), cwd=tmp_path).returncode == 0  # the folder alone suffices
    [onnx] = art.glob("*.onnx")
    manifest = json.loads((art / "manifest.json").read_text())

    flipped = tmp_path / "flipped"
    shutil.copytree(art, flipped)
    data = bytearray((flipped / onnx.name).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (flipped / onnx.name).write_bytes(bytes(data))
    one_line_failure(run(*infer_ort, "--artifacts", str(flipped), cwd=tmp_path), onnx.name, "sha256")
    one_line_failure(run("bench", "test-style", "--runtime", "onnxruntime", "--allow-random-weights", "--artifacts", str(flipped), cwd=tmp_path), onnx.name, "sha256")

    def rerecord(folder: Path) -> None:  # what a careless tool would do: re-record the digest of a damaged file
        m = json.loads(json.dumps(manifest))
        m["graphs"]["net"]["onnx_sha256"] = sha256_file(folder / onnx.name)
        atomic_write_json(folder / "manifest.json", m)

    header = tmp_path / "header"
    shutil.copytree(art, header)
    data = bytearray((header / onnx.name).read_bytes())
    data[:16] = b"\xff" * 16  # the protobuf header no longer parses
    (header / onnx.name).write_bytes(bytes(data))
    rerecord(header)
    one_line_failure(run(*infer_ort, "--artifacts", str(header), cwd=tmp_path), onnx.name)

    escape = tmp_path / "escape"  # a graph whose external data points outside its folder (digests re-recorded)
    shutil.copytree(art, escape)
    import onnx as onnx_lib
    from onnx.external_data_helper import set_external_data

    proto = onnx_lib.load(str(escape / onnx.name))
    init = proto.graph.initializer[0]
    set_external_data(init, location="../../../etc/passwd", offset=0, length=16)
    init.data_location = onnx_lib.TensorProto.EXTERNAL
    init.ClearField("raw_data")
    for f in ("float_data", "int32_data", "int64_data", "double_data"):
        init.ClearField(f)
    (escape / onnx.name).write_bytes(proto.SerializeToString())
    rerecord(escape)
    line = one_line_failure(run(*infer_ort, "--artifacts", str(escape), cwd=tmp_path), onnx.name)
    assert "external data path escapes" in line.lower(), line  # ONNX Runtime's own refusal, as one line


def test_checkpoints_total_limit_and_interrupted_writes_are_cleaned(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(1)
    for i in range(2):
        Image.fromarray((rng.random((16, 16, 3)) * 255).astype(np.uint8)).save(data / f"{i}.png")
    common = ("train", "test-style", "--data", str(data), "--set", "size=16", "--checkpoint-every", "2", "--no-progress")
    r = run(*common, "--set", "steps=6", "--checkpoints-total-limit", "2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    ckpts = tmp_path / "runs" / "test-style" / "checkpoints"
    assert sorted(p.name for p in ckpts.glob("step-*")) == ["step-0000004", "step-0000006"]
    # what a kill -9 during a checkpoint write leaves: a half-built temporary folder, and a half-swapped old one
    (ckpts / ".step-0000008.k3j2.tmp").mkdir()
    (ckpts / ".step-0000008.k3j2.tmp" / "model.safetensors").write_bytes(b"half")
    (ckpts / ".step-0000006.old-123").mkdir()
    r = run(*common, "--set", "steps=8", "--resume", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert not list(ckpts.glob(".step-*")), list(ckpts.iterdir())
    assert sorted(p.name for p in ckpts.glob("step-*")) == ["step-0000004", "step-0000006", "step-0000008"]  # no limit: all kept
    r = run(*common, "--checkpoints-total-limit", "0", cwd=tmp_path)
    assert r.returncode == 2 and "--checkpoints-total-limit" in r.stderr

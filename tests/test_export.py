"""Export + validation + manifest, atomic artifact folders, TensorRT-missing behaviour."""

from __future__ import annotations

import json

import pytest

from styleengine.export.manifest import Manifest
from styleengine.export.options import ExportOptions
from styleengine.export.pipeline import ParityError, TensorRTUnavailable, export_style
from styleengine.export.tensorrt import cache_key, trtexec_command
from styleengine.io import atomic_dir, atomic_open, atomic_write_bytes, sha256_file
from styleengine.plugins import load_engine
from styleengine.spec import Tolerance


@pytest.fixture(scope="module")
def engine():
    return load_engine()


def test_export_writes_onnx_and_manifest_with_parity(engine, tmp_path):
    style = engine.style_class("test-style")({"channels": 4})
    res = export_style(engine, style, ExportOptions(out_dir=tmp_path / "art"))
    m = Manifest.load(tmp_path / "art")
    rec = m.graphs["net"]
    assert m.style == "test-style" and m.variant == "default" and m.exporter == "dynamo" and rec.exporter == "dynamo"
    assert rec.onnx_sha256 == sha256_file(tmp_path / "art" / "net.onnx")
    assert {"torch", "onnx", "onnxruntime", "styleengine"} <= set(m.versions)
    assert m.model_config_ == {"channels": 4} and m.weights is None
    for point in ("min", "opt", "max"):
        stats = rec.parity[point]["outputs"]["output"]
        assert stats["passed"] and stats["max_abs"] <= 1e-4 and stats["psnr"] >= 60
    assert rec.parity["min"]["shapes"]["image"] == [1, 3, 8, 8] and rec.parity["max"]["shapes"]["image"] == [4, 3, 64, 64]
    assert rec.spec["dims"]["height"] == {"name": "height", "min": 8, "opt": 32, "max": 64, "multiple_of": 8}
    assert res.passed and m.verify_files(tmp_path / "art") == []
    (tmp_path / "art" / "net.onnx").write_bytes(b"tampered")
    assert "sha256 does not match" in m.verify_files(tmp_path / "art")[0]


def test_torchscript_exporter_recorded(engine, tmp_path):
    style = engine.style_class("test-style")({"channels": 2})
    export_style(engine, style, ExportOptions(out_dir=tmp_path / "ts", exporter="torchscript"))
    assert Manifest.load(tmp_path / "ts").graphs["net"].exporter == "torchscript"


def test_failed_parity_keeps_previous_artifacts(engine, tmp_path, monkeypatch):
    style = engine.style_class("test-style")({"channels": 4})
    out = tmp_path / "art"
    export_style(engine, style, ExportOptions(out_dir=out))
    before = sha256_file(out / "manifest.json")
    other = engine.style_class("test-style")({"channels": 5})
    strict = [s.replace(tolerance=Tolerance(atol=0, rtol=0, psnr=199.9)) for s in type(other).graphs(other)]
    monkeypatch.setattr(other, "graphs", lambda: strict)  # a tolerance no float export can meet
    with pytest.raises(ParityError, match="previous artifacts .* untouched"):
        export_style(engine, other, ExportOptions(out_dir=out))
    assert sha256_file(out / "manifest.json") == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["art"]  # no temp folders left behind


def test_exception_mid_export_leaves_previous_folder(engine, tmp_path, monkeypatch):
    style = engine.style_class("test-style")({"channels": 4})
    out = tmp_path / "art"
    export_style(engine, style, ExportOptions(out_dir=out))
    snapshot = {p.name: p.read_bytes() for p in out.iterdir()}

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("styleengine.export.pipeline.validate_graph", boom)
    with pytest.raises(OSError, match="disk full"):
        export_style(engine, style, ExportOptions(out_dir=out))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == snapshot


def test_atomic_write_failure_keeps_old_file(tmp_path):
    target = tmp_path / "f.bin"
    atomic_write_bytes(target, b"old")

    with pytest.raises(RuntimeError), atomic_open(target) as fh:
        fh.write(b"new-partial")
        raise RuntimeError("crash mid-write")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["f.bin"]
    with pytest.raises(ValueError), atomic_dir(tmp_path / "d") as d:
        (d / "x").write_text("partial")
        raise ValueError("crash")
    assert not (tmp_path / "d").exists()


def test_trt_without_tensorrt_keeps_validated_onnx(engine, tmp_path):
    pytest.importorskip("onnxruntime")
    try:
        import tensorrt  # noqa: F401

        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    style = engine.style_class("test-style")({"channels": 4})
    with pytest.raises(TensorRTUnavailable, match="`tensorrt` extra") as exc:
        export_style(engine, style, ExportOptions(out_dir=tmp_path / "art", trt=True, precision="fp16"))
    assert (tmp_path / "art" / "net.onnx").is_file()
    assert Manifest.load(tmp_path / "art").graphs["net"].parity["passed"]
    assert exc.value.result.trtexec[0].startswith("trtexec --onnx=")
    assert "--fp16" in exc.value.result.trtexec[0]


def test_trtexec_and_cache_key_from_spec(engine, tmp_path):
    spec = engine.style_class("test-style")().graphs()[0]
    cmd = trtexec_command(spec, tmp_path / "n.onnx", tmp_path / "n.plan", "bf16", tmp_path / "tc")
    assert "--minShapes=image:1x3x8x8" in cmd and "--optShapes=image:2x3x32x32" in cmd and "--maxShapes=image:4x3x64x64" in cmd
    assert "--bf16" in cmd and f"--timingCacheFile={tmp_path / 'tc'}" in cmd
    k = cache_key("abc", spec, "fp16", "10.3", "H100", "9.0")
    assert k == cache_key("abc", spec, "fp16", "10.3", "H100", "9.0")
    assert len({k, cache_key("abd", spec, "fp16", "10.3", "H100", "9.0"), cache_key("abc", spec, "bf16", "10.3", "H100", "9.0"),
                cache_key("abc", spec, "fp16", "10.4", "H100", "9.0"), cache_key("abc", spec, "fp16", "10.3", "A100", "8.0"),
                cache_key("abc", spec.with_dims({"batch": {"max": 8}}), "fp16", "10.3", "H100", "9.0")}) == 6


def test_export_onnx_hook_can_take_over_one_graph(tmp_path):
    import sys
    import types

    mod = types.ModuleType("custom_exporter")
    calls = []

    import styleengine

    @styleengine.hookimpl
    def export_onnx(spec, path, options):
        calls.append(spec.name)
        return None  # pass: leave it to the engine's default

    mod.export_onnx = export_onnx
    sys.modules["custom_exporter"] = mod
    try:
        engine = load_engine(extra_plugins=["custom_exporter"])
        style = engine.style_class("test-style")({"channels": 2})
        export_style(engine, style, ExportOptions(out_dir=tmp_path / "a"))
        assert calls == ["net"] and json.loads((tmp_path / "a" / "manifest.json").read_text())["graphs"]["net"]["exporter"] == "dynamo"
    finally:
        del sys.modules["custom_exporter"]

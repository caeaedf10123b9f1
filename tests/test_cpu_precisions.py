"""CPU precision options (issue 13.3): int8 static quantisation as its own lossy artifact, run by ONNX Runtime;
bf16 on torch CPU by autocast where the CPU has it.  Correctness against fp32 torch (PSNR floors), not timings."""

from __future__ import annotations

from pathlib import Path

import pytest

from styleengine.export.manifest import Manifest
from styleengine.export.options import ExportOptions, ExportProfile
from styleengine.export.pipeline import ParityError
from styleengine.export.quantize import INT8_PSNR_FLOOR, int8_tolerance
from styleengine.export.validate import validate_graph, worst
from styleengine.io import sha256_file
from styleengine.plugins import load_engine
from styleengine.runtime.base import ArtifactMismatchError, RuntimeUnavailableError, SessionOptions
from styleengine.runtime.torch import TorchSession, cpu_has_bf16
from styleengine.sessions import open_sessions
from styleengine.spec import Tolerance

#: torch bf16 autocast vs fp32 over the output's value range (dB).
BF16_PSNR_FLOOR = 35.0
P2P_SMALL = ExportProfile(name="test-small", dims={"batch": {"min": 1, "opt": 1, "max": 2}, "height": {"min": 128, "opt": 128, "max": 256},
                                                   "width": {"min": 128, "opt": 128, "max": 256}})


@pytest.fixture(scope="module")
def engine():  # noqa: ANN201
    return load_engine()


def _style(engine, which: str):  # noqa: ANN001, ANN202
    if which == "test-style":
        return engine.style_class("test-style")({"channels": 4}), ExportProfile()
    return engine.style_class("pix2pix")({"netG": "unet_128", "ngf": 4}), P2P_SMALL


@pytest.fixture(scope="module", params=["test-style", "pix2pix"])
def exported(engine, request, tmp_path_factory):  # noqa: ANN001, ANN201
    style, profile = _style(engine, request.param)
    folder = tmp_path_factory.mktemp("int8")
    res = engine.hook.style_export(style=style, options=ExportOptions(out_dir=folder, profile=profile, int8=True))
    assert res.passed
    return style, folder


def test_int8_is_its_own_lossy_artifact_in_the_manifest(exported) -> None:  # noqa: ANN001
    style, folder = exported
    [spec] = style.graphs()
    rec = Manifest.load(folder).graphs[spec.name]
    q = rec.quantized["int8"]
    assert q.path == f"{spec.name}.int8.onnx" != rec.onnx and q.sha256 == sha256_file(folder / q.path)
    assert q.lossy and q.precision == "int8" and q.psnr_floor == INT8_PSNR_FLOOR
    assert q.psnr >= q.psnr_floor and q.parity["passed"] and {"min", "opt", "max"} <= set(q.parity)
    assert q.calibration["samples"] >= 4 and q.calibration["point"] == "opt" and "example" in q.calibration["inputs"]
    # the fp32 graph's own parity is untouched by the int8 copy
    assert rec.parity["passed"] and worst(rec.parity)["psnr"] > q.psnr


def test_onnxruntime_int8_within_the_recorded_floor(engine, exported) -> None:  # noqa: ANN001
    style, folder = exported
    [spec] = style.graphs()
    rec = Manifest.load(folder).graphs[spec.name]
    spec = type(spec).from_dict(rec.spec).replace(module=spec.module, example=spec.example)  # the exported dims
    q = rec.quantized["int8"]
    [sess] = open_sessions(engine, style, "onnxruntime", artifacts=folder, options=SessionOptions(precision="int8")).values()
    assert sess.device == "CPUExecutionProvider" and sess.precision == "int8"
    res = validate_graph(spec.replace(tolerance=int8_tolerance(q.psnr_floor)), TorchSession(spec, SessionOptions()), sess, seed=7)
    assert res["passed"], worst(res)


def test_int8_without_the_artifact_names_the_export_flag(engine, tmp_path: Path) -> None:  # noqa: ANN001
    style, _ = _style(engine, "test-style")
    engine.hook.style_export(style=style, options=ExportOptions(out_dir=tmp_path))
    with pytest.raises(ArtifactMismatchError, match="no int8 artifact.*--int8"):
        open_sessions(engine, style, "onnxruntime", artifacts=tmp_path, options=SessionOptions(precision="int8"))
    with pytest.raises(RuntimeUnavailableError, match="precision int8 is not supported"):
        open_sessions(engine, style, "torch", options=SessionOptions(precision="int8"))


def test_int8_below_its_floor_fails_the_export_and_keeps_the_old_folder(engine, tmp_path: Path) -> None:  # noqa: ANN001
    style, _ = _style(engine, "test-style")
    with pytest.raises(ParityError, match="parity check failed"):
        engine.hook.style_export(style=style, options=ExportOptions(out_dir=tmp_path / "x", int8=True, extra={"int8_psnr_floor": 199.0}))
    assert not (tmp_path / "x" / "manifest.json").exists()


@pytest.mark.parametrize("which", ["test-style", "pix2pix"])
def test_torch_bf16_autocast_within_the_psnr_floor(engine, which: str) -> None:  # noqa: ANN001
    style, profile = _style(engine, which)
    [spec] = [profile.apply(s) for s in style.graphs()]
    sess = TorchSession(spec, SessionOptions(precision="bf16", extra={"allow_emulated_bf16": True}))
    assert sess.precision == "bf16"
    lossy = spec.replace(tolerance=Tolerance(atol=1e30, rtol=0.0, psnr=BF16_PSNR_FLOOR))
    res = validate_graph(lossy, TorchSession(spec, SessionOptions()), sess)
    assert res["passed"], worst(res)
    assert worst(res)["psnr"] < 200  # really ran in bf16, not a silent fp32 copy


def test_torch_bf16_refused_where_the_cpu_lacks_it(engine) -> None:  # noqa: ANN001
    style, _ = _style(engine, "test-style")
    ok, why = cpu_has_bf16()
    if ok:
        TorchSession(style.graphs()[0], SessionOptions(precision="bf16"))
        return
    assert "no native bf16" in why
    with pytest.raises(RuntimeUnavailableError, match="bf16 on CPU: this CPU has no native bf16"):
        TorchSession(style.graphs()[0], SessionOptions(precision="bf16"))


def _cli(*args: object) -> tuple[int, str]:
    from click.testing import CliRunner

    from styleengine.cli import cli

    res = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return res.exit_code, res.output


def test_cli_export_int8_then_infer_and_bench_on_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    import numpy as np
    from PIL import Image

    code, out = _cli("export", "test-style", "--allow-random-weights", "--model-set", "channels=4", "--int8", "--out", tmp_path / "art")
    assert code == 0, out
    assert "int8 (lossy) ok: PSNR" in out and (tmp_path / "art" / "net.int8.onnx").is_file()
    img = tmp_path / "in.png"
    Image.fromarray((np.random.default_rng(0).random((24, 32, 3)) * 255).astype(np.uint8)).save(img)
    code, out = _cli("infer", "test-style", img, "--out", tmp_path / "out", "--runtime", "onnxruntime", "--precision", "int8",
                     "--artifacts", tmp_path / "art", "--allow-random-weights", "--model-set", "channels=4")
    assert code == 0, out
    assert len(list((tmp_path / "out").iterdir())) == 1
    # without --artifacts the bench exports (with --int8) into its cache itself
    monkeypatch.setenv("STYLEENGINE_CACHE", str(tmp_path / "cache"))
    code, out = _cli("bench", "test-style", "--runtime", "onnxruntime", "--precision", "fp32,int8", "--size", "32", "--warmup", "0",
                     "--iters", "1", "--allow-random-weights", "--model-set", "channels=4", "--json")
    assert code == 0, out
    report = json.loads(out[out.index("{"):])
    assert {(r["runtime"], r["precision"]) for r in report["results"] if r["status"] == "ok"} >= {("onnxruntime", "int8"), ("torch", "fp32")}
    assert list((tmp_path / "cache").rglob("net.int8.onnx"))

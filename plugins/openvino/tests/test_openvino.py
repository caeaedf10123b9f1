"""The openvino runtime plugin: registration through ``register_runtimes``, parity with torch fp32 at the
GraphSpec's min / opt / max, bf16 only where the CPU has it (PSNR floor), int8 artifacts, damaged files
refused, and the CLI (``engine infer`` / ``engine bench``) running on it.  Tiny models, small dims."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("STYLEENGINE_OFFLINE", "1")

from styleengine.export.manifest import Manifest  # noqa: E402
from styleengine.export.options import ExportOptions, ExportProfile  # noqa: E402
from styleengine.export.validate import validate_graph, worst  # noqa: E402
from styleengine.plugins import load_engine  # noqa: E402
from styleengine.runtime.base import DamagedArtifactError, RuntimeUnavailableError, Session, SessionOptions  # noqa: E402
from styleengine.runtime.torch import TorchSession  # noqa: E402
from styleengine.sessions import open_sessions  # noqa: E402
from styleengine_openvino.runtime import OpenVINORuntime, OpenVINOSession, precision_available  # noqa: E402

#: bf16 against fp32 torch, over the output's value range (bf16 keeps 8 bits of mantissa: ~2-3 significant
#: digits; on the trained pix2pix demo model the issue measured 57-61 dB).  Recorded here and in the README.
BF16_PSNR_FLOOR = 35.0
PIX2PIX_TINY = {"netG": "unet_128", "ngf": 4}
#: pix2pix unet_128 needs sides that are multiples of 128; keep max shapes cheap.
P2P_SMALL = ExportProfile(name="test-small", dims={"batch": {"min": 1, "opt": 1, "max": 2}, "height": {"min": 128, "opt": 128, "max": 256},
                                                   "width": {"min": 128, "opt": 128, "max": 256}})
BF16 = precision_available("bf16")[0]


@pytest.fixture(scope="module")
def engine():  # noqa: ANN201
    return load_engine()


def _export(engine, style, folder: Path, profile: ExportProfile | None = None, int8: bool = False) -> Path:  # noqa: ANN001
    res = engine.hook.style_export(style=style, options=ExportOptions(out_dir=folder, profile=profile or ExportProfile(), int8=int8))
    assert res.passed
    return folder


@pytest.fixture(scope="module")
def test_style(engine, tmp_path_factory):  # noqa: ANN001, ANN201
    style = engine.style_class("test-style")({"channels": 4})
    return style, _export(engine, style, tmp_path_factory.mktemp("ts"), int8=True)


@pytest.fixture(scope="module")
def pix2pix(engine, tmp_path_factory):  # noqa: ANN001, ANN201
    style = engine.style_class("pix2pix")(PIX2PIX_TINY)
    return style, _export(engine, style, tmp_path_factory.mktemp("p2p"), P2P_SMALL, int8=True)


def test_registered_through_the_hook_and_reports_availability(engine) -> None:  # noqa: ANN001
    cls = engine.runtime_class("openvino")
    assert cls is OpenVINORuntime and cls.needs == "onnx"
    entry = engine.runtimes.get("openvino")
    assert entry.distribution == "styleengine-openvino"
    ok, why = cls.availability()
    assert ok and why.startswith("openvino ") and ("bf16" in why)
    assert cls.devices() == ["cpu"]
    assert ("bf16" in cls.precisions()) == BF16


def _artifact_spec(style, folder: Path):  # noqa: ANN001, ANN202
    """The style's GraphSpec with the dims the folder was exported (and validated) with."""
    [spec] = style.graphs()
    mspec = Manifest.load(folder).graphs[spec.name].spec
    return type(spec).from_dict(mspec).replace(module=spec.module, example=spec.example)


def _opened(engine, style, folder: Path, precision: str = "fp32") -> Session:  # noqa: ANN001
    sessions = open_sessions(engine, style, "openvino", artifacts=folder, options=SessionOptions(precision=precision))
    [sess] = sessions.values()
    assert isinstance(sess, Session) and sess.runtime == "openvino"
    return sess


@pytest.mark.parametrize("which", ["test_style", "pix2pix"])
def test_fp32_parity_with_torch_at_min_opt_max(engine, request, which: str) -> None:  # noqa: ANN001
    style, folder = request.getfixturevalue(which)
    sess = _opened(engine, style, folder)
    assert sess.device.startswith("CPU(") and sess.device.endswith(", f32)") and sess.inference_precision == "f32"
    spec_in_artifact = _artifact_spec(style, folder)
    res = validate_graph(spec_in_artifact, TorchSession(spec_in_artifact, SessionOptions()), sess)
    assert res["passed"], res  # the graph's own tolerance, at each point
    assert {p for p in res if p != "passed"} == {"min", "opt", "max"}
    assert res["max"]["shapes"] != res["min"]["shapes"]  # dynamic shapes really exercised


def test_shapes_are_bounded_by_the_graph_dims(engine, test_style) -> None:  # noqa: ANN001
    style, folder = test_style
    sess = _opened(engine, style, folder)
    with pytest.raises(Exception):  # noqa: B017,PT011 - OpenVINO's own error type for a shape outside the bounds
        sess.run({"image": torch.zeros(1, 3, 128, 128)})  # height max is 64


@pytest.mark.skipif(not BF16, reason="this CPU has no native bf16: openvino bf16 is reported unavailable (tested below)")
@pytest.mark.parametrize("which", ["test_style", "pix2pix"])
def test_bf16_parity_within_the_psnr_floor(engine, request, which: str) -> None:  # noqa: ANN001
    from styleengine.spec import Tolerance

    style, folder = request.getfixturevalue(which)
    sess = _opened(engine, style, folder, "bf16")
    assert sess.inference_precision == "bf16" and sess.device.endswith(", bf16)")
    spec = _artifact_spec(style, folder)
    lossy = spec.replace(tolerance=Tolerance(atol=1e30, rtol=0.0, psnr=BF16_PSNR_FLOOR))
    res = validate_graph(lossy, TorchSession(spec, SessionOptions()), sess)
    assert res["passed"], worst(res)


@pytest.mark.skipif(BF16, reason="this CPU has native bf16")
def test_bf16_refused_where_the_cpu_lacks_it(engine, test_style) -> None:  # noqa: ANN001
    style, folder = test_style
    with pytest.raises(RuntimeUnavailableError, match="this CPU has no native bf16"):
        _opened(engine, style, folder, "bf16")


def test_fp16_and_gpu_refused_with_a_reason(test_style) -> None:  # noqa: ANN001
    style, folder = test_style
    [spec] = style.graphs()
    with pytest.raises(RuntimeUnavailableError, match="precision fp16 is not supported"):
        OpenVINOSession(spec, folder / f"{spec.name}.onnx", SessionOptions(precision="fp16"))
    with pytest.raises(RuntimeUnavailableError, match="CPU only"):
        OpenVINOSession(spec, folder / f"{spec.name}.onnx", SessionOptions(device="cuda:0"))


@pytest.mark.parametrize("which", ["test_style", "pix2pix"])
def test_int8_artifact_runs_within_its_recorded_floor(engine, request, which: str) -> None:  # noqa: ANN001
    style, folder = request.getfixturevalue(which)
    spec = _artifact_spec(style, folder)
    q = Manifest.load(folder).graphs[spec.name].quantized["int8"]
    sess = _opened(engine, style, folder, "int8")
    assert sess.device.endswith("int8 graph)")
    from styleengine.export.quantize import int8_tolerance

    res = validate_graph(spec.replace(tolerance=int8_tolerance(q.psnr_floor)), TorchSession(spec, SessionOptions()), sess)
    assert res["passed"], worst(res)


def test_damaged_artifact_refused_before_loading(engine, test_style, tmp_path: Path) -> None:  # noqa: ANN001
    style, folder = test_style
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    [spec] = style.graphs()
    onnx = bad / f"{spec.name}.onnx"
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onnx.write_bytes(bytes(data))
    with pytest.raises(DamagedArtifactError, match="sha256 does not match"):
        open_sessions(engine, style, "openvino", artifacts=bad)
    # and the runtime itself checks when handed the manifest (a direct caller cannot skip it)
    m = Manifest.load(bad)
    with pytest.raises(DamagedArtifactError, match="refusing to load damaged artifacts"):
        OpenVINORuntime().load(type(spec).from_dict(m.graphs[spec.name].spec), SessionOptions(), artifact=onnx,
                               record=m.graphs[spec.name], manifest=m)
    # a damaged int8 artifact too
    shutil.copyfile(folder / f"{spec.name}.onnx", onnx)
    q = bad / m.graphs[spec.name].quantized["int8"].path
    q.write_bytes(q.read_bytes()[:-10])
    with pytest.raises(DamagedArtifactError, match="int8.onnx sha256 does not match"):
        open_sessions(engine, style, "openvino", artifacts=bad, options=SessionOptions(precision="int8"))


def _cli(*args: str) -> tuple[int, str]:
    from click.testing import CliRunner

    from styleengine.cli import cli

    res = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return res.exit_code, res.output


def test_engine_infer_runtime_openvino(test_style, tmp_path: Path) -> None:  # noqa: ANN001
    from PIL import Image

    _, folder = test_style
    img = tmp_path / "in.png"
    Image.fromarray((np.random.default_rng(0).random((40, 48, 3)) * 255).astype(np.uint8)).save(img)
    code, out = _cli("infer", "test-style", img, "--out", tmp_path / "out", "--runtime", "openvino", "--artifacts", folder,
                     "--allow-random-weights", "--model-set", "channels=4")
    assert code == 0, out
    assert "openvino on CPU(" in out
    [written] = list((tmp_path / "out").iterdir())
    assert Image.open(written).size == (48, 40)


def test_engine_bench_torch_onnxruntime_openvino(test_style, tmp_path: Path) -> None:  # noqa: ANN001
    _, folder = test_style
    code, out = _cli("bench", "test-style", "--runtime", "torch,onnxruntime,openvino", "--precision", "fp32,bf16,int8",
                     "--size", "32", "--batch", "1,2", "--warmup", "1", "--iters", "2", "--allow-random-weights",
                     "--model-set", "channels=4", "--artifacts", folder, "--json")
    assert code == 0, out
    report = json.loads(out[out.index("{"):])
    ok = {(r["runtime"], r["precision"]) for r in report["results"] if r["status"] == "ok"}
    assert {("torch", "fp32"), ("onnxruntime", "fp32"), ("openvino", "fp32"), ("onnxruntime", "int8"), ("openvino", "int8")} <= ok
    assert all(r["vs_torch"] for r in report["results"] if r["status"] == "ok")
    unavailable = {(u["runtime"], u["precision"]): u["reason"] for u in report["unavailable"]}
    assert ("torch", "int8") in unavailable
    if not BF16:
        assert "no native bf16" in unavailable[("openvino", "bf16")]
    assert report["runtimes"]["openvino"]["sessions"]["net"]["device"].startswith("CPU(")


@pytest.mark.skipif(BF16, reason="this CPU has native bf16")
def test_precision_is_read_back_not_assumed(test_style, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """Past the capability check, OpenVINO itself quietly compiles a bf16 hint as f32 on such a CPU: the
    read-back turns that into an error instead of a mislabelled fp32 run."""
    import styleengine_openvino.runtime as rt

    style, folder = test_style
    [spec] = style.graphs()
    monkeypatch.setattr(rt, "precision_available", lambda p: (True, "ok"))
    with pytest.raises(RuntimeUnavailableError, match="asked for bf16 but the compiled model runs f32"):
        OpenVINOSession(spec, folder / f"{spec.name}.onnx", SessionOptions(precision="bf16"))

"""Each runtime's Session contract: named tensors in, named tensors out, device read back."""

from __future__ import annotations

import pytest
import torch

from styleengine.export.onnx import export_graph
from styleengine.plugins import load_engine
from styleengine.runtime.base import ArtifactMismatchError, RuntimeUnavailableError, Session, SessionOptions
from styleengine.runtime.onnxruntime import OrtSession
from styleengine.runtime.torch import TorchSession


@pytest.fixture(scope="module")
def style():
    return load_engine().style_class("test-style")({"channels": 4})


@pytest.fixture(scope="module")
def onnx_path(style, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "net.onnx"
    export_graph(style.graphs()[0], path)
    return path


def contract(sess: Session, spec) -> None:
    assert isinstance(sess, Session)
    assert sess.input_names == ["image"] and sess.output_names == ["output"]
    x = torch.rand(3, 3, 16, 24) * 2 - 1
    out = sess.run({"image": x})
    assert set(out) == {"output"} and out["output"].shape == (3, 3, 16, 24) and out["output"].dtype == torch.float32
    with pytest.raises(KeyError, match="missing inputs \\['image'\\]"):
        sess.run({"img": x})


def test_torch_session_contract(style):
    spec = style.graphs()[0]
    sess = TorchSession(spec, SessionOptions())
    contract(sess, spec)
    assert sess.device == "cpu" and sess.runtime == "torch"


def test_torch_refuses_fp16_on_cpu_and_missing_cuda(style):
    spec = style.graphs()[0]
    with pytest.raises(RuntimeUnavailableError, match="fp16 on CPU"):
        TorchSession(spec, SessionOptions(precision="fp16"))
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeUnavailableError, match="CUDA is not available"):
            TorchSession(spec, SessionOptions(device="cuda:0"))


def test_torch_bf16_does_not_touch_the_fp32_module(style):
    spec = style.graphs()[0]
    before = {k: v.clone() for k, v in spec.module.state_dict().items()}
    sess = TorchSession(spec, SessionOptions(precision="bf16", extra={"allow_emulated_bf16": True}))
    out = sess.run({"image": torch.zeros(1, 3, 8, 8)})["output"]
    assert out.dtype == torch.float32
    assert all(torch.equal(before[k], v) and v.dtype == torch.float32 for k, v in spec.module.state_dict().items())


def test_ort_session_contract_and_reports_real_provider(style, onnx_path):
    spec = style.graphs()[0]
    sess = OrtSession(spec, onnx_path)
    contract(sess, spec)
    assert sess.device == "CPUExecutionProvider" == sess.providers[0]


def test_ort_cuda_on_a_cpu_build_is_an_error_not_a_silent_cpu_run(style, onnx_path):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime build has CUDA")
    with pytest.raises(RuntimeUnavailableError, match="CUDAExecutionProvider not available.*gpu"):
        OrtSession(style.graphs()[0], onnx_path, SessionOptions(device="cuda:0"))
    with pytest.warns(RuntimeWarning, match="running on CPU"):
        sess = OrtSession(style.graphs()[0], onnx_path, SessionOptions(device="cuda:0", extra={"allow_cpu_fallback": True}))
    assert sess.device == "CPUExecutionProvider"  # reported as what it is


def test_ort_and_torch_agree(style, onnx_path):
    spec = style.graphs()[0]
    x = torch.rand(2, 3, 32, 40) * 2 - 1
    a = TorchSession(spec, SessionOptions()).run({"image": x})["output"]
    b = OrtSession(spec, onnx_path).run({"image": x})["output"]
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_tensorrt_unavailable_is_reported_with_the_extra():
    engine = load_engine()
    ok, why = engine.runtime_class("tensorrt").availability()
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        assert not ok and "`tensorrt` extra" in why
    else:  # pragma: no cover - only on TensorRT machines
        assert ok or "CUDA" in why


def test_tensorrt_manifest_checked_at_load():
    from styleengine.export.manifest import EngineRecord, GraphRecord
    from styleengine.runtime.tensorrt import check_engine_record

    rec = GraphRecord(name="net", engine=EngineRecord(path="net.plan", sha256="x", precision="fp16", tensorrt="10.3.0", gpu="NVIDIA H100", compute_capability="9.0", cache_key="k"))
    check_engine_record(rec, "10.3.0", "9.0")
    with pytest.raises(ArtifactMismatchError, match="TensorRT 10.3.0, this machine has 10.4.0"):
        check_engine_record(rec, "10.4.0", "9.0")
    with pytest.raises(ArtifactMismatchError, match="compute capability 9.0 .*this GPU is 8.6"):
        check_engine_record(rec, "10.3.0", "8.6")
    with pytest.raises(ArtifactMismatchError, match="no TensorRT engine"):
        check_engine_record(GraphRecord(name="net"), "10.3.0", "9.0")


def _manifest_folder(style, onnx_path, tmp_path):
    import shutil

    from styleengine.export.manifest import GraphRecord, Manifest
    from styleengine.io import sha256_file

    spec = style.graphs()[0]
    shutil.copyfile(onnx_path, tmp_path / "net.onnx")
    Manifest(style="test-style", variant="default", precision="fp16", graphs={
        spec.name: GraphRecord(name=spec.name, onnx="net.onnx", onnx_sha256=sha256_file(tmp_path / "net.onnx"), spec=spec.to_dict()),
    }).write(tmp_path)
    return spec


def test_import_engine_records_a_trtexec_plan_the_runtime_accepts(style, onnx_path, tmp_path):
    """Where TensorRT is missing the caller states version and GPU; the record passes the runtime's checks."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        pass
    else:  # pragma: no cover - on TensorRT machines a fake plan does not deserialise
        pytest.skip("a fake plan is only recordable where TensorRT is missing")
    from styleengine.cli import main
    from styleengine.export.manifest import Manifest
    from styleengine.export.tensorrt import profile_shapes
    from styleengine.io import sha256_file
    from styleengine.runtime.tensorrt import check_engine_record

    spec = _manifest_folder(style, onnx_path, tmp_path)
    plan = tmp_path / "built-by-trtexec.plan"
    plan.write_bytes(b"not really a plan")
    with pytest.raises(RuntimeUnavailableError, match="--tensorrt-version and --compute-capability"):
        from styleengine.export.plan_import import import_plan

        import_plan(tmp_path, spec.name, plan)
    with pytest.raises(ValueError, match="no graph 'nope' in the manifest"):
        import_plan(tmp_path, "nope", plan, tensorrt_version="10.3.0", compute_capability="9.0")

    with pytest.raises(SystemExit) as exit_:
        main(["import-engine", str(tmp_path), "--graph", spec.name, "--plan", str(plan),
              "--tensorrt-version", "10.3.0", "--compute-capability", "9.0", "--gpu", "NVIDIA H100"])
    assert exit_.value.code == 0
    manifest = Manifest.load(tmp_path)
    rec = manifest.graphs[spec.name]
    assert rec.engine.path == f"{spec.name}.fp16.plan" and rec.engine.precision == "fp16"
    assert rec.engine.sha256 == sha256_file(tmp_path / rec.engine.path) == sha256_file(plan)
    assert rec.engine.profile == profile_shapes(spec) and rec.engine.model_extra["verified"] is False
    check_engine_record(rec, "10.3.0", "9.0")  # what TrtSession checks before deserialising
    with pytest.raises(ArtifactMismatchError, match="this GPU is 8.6"):
        check_engine_record(rec, "10.3.0", "8.6")
    manifest.check_files(tmp_path)  # the plan's digest is part of the folder's
    (tmp_path / rec.engine.path).write_bytes(b"tampered")
    with pytest.raises(ArtifactMismatchError, match="sha256 does not match"):
        manifest.check_files(tmp_path)


def test_plan_profile_must_cover_the_exported_dims(style):
    from styleengine.export.plan_import import check_profile_covers
    from styleengine.export.tensorrt import profile_shapes

    spec = style.graphs()[0]
    wanted = profile_shapes(spec)
    check_profile_covers(spec.name, wanted, spec)
    (mn, opt, mx), = wanted.values()
    narrow = {name: [mn, opt, opt] for name in wanted}
    with pytest.raises(ArtifactMismatchError, match="does not cover the exported"):
        check_profile_covers(spec.name, narrow, spec)


@pytest.mark.tensorrt
def test_tensorrt_session_contract(style, onnx_path, tmp_path):
    pytest.importorskip("tensorrt")
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from styleengine.export.manifest import EngineRecord, GraphRecord
    from styleengine.export.tensorrt import build_engine
    from styleengine.runtime.tensorrt import TrtSession

    spec = style.graphs()[0]
    info = build_engine(spec, onnx_path, tmp_path / "net.plan", precision="fp32", engine_cache=tmp_path / "cache")
    rec = GraphRecord(name="net", engine=EngineRecord(path="net.plan", sha256="", **info))
    sess = TrtSession(spec, tmp_path / "net.plan", rec, SessionOptions(device="cuda:0"))
    x = torch.rand(2, 3, 16, 24) * 2 - 1
    ref = TorchSession(spec, SessionOptions()).run({"image": x})["output"]
    torch.testing.assert_close(sess.run({"image": x})["output"].cpu(), ref, atol=1e-3, rtol=1e-3)

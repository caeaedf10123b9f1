"""Spec derivations: dynamic axes, TensorRT profiles, validation inputs, profile overrides."""

from __future__ import annotations

import numpy as np
import pytest

from styleengine.export.options import ExportProfile
from styleengine.spec import Dim, GraphSpec, SpecError, TensorSpec, Tolerance, image_tensor

H = Dim("height", 256, 512, 1024, multiple_of=256)
W = Dim("width", 256, 512, 1024, multiple_of=256)
B = Dim("batch", 1, 4, 8)


def gen_spec() -> GraphSpec:
    return GraphSpec(
        "generator",
        inputs=(image_tensor("image", batch=B, height=H, width=W), TensorSpec("seed", (B,), dtype="int64", value_range=(0, 100))),
        outputs=(image_tensor("output", batch=B, height=H, width=W), TensorSpec("feat", (B, 512, "h8", "w8"))),
        tolerance=Tolerance(1e-3, 1e-3, psnr=40),
    )


def test_dim_validation():
    with pytest.raises(SpecError, match="min <= opt <= max"):
        Dim("h", 4, 2, 8)
    with pytest.raises(SpecError, match="not a multiple of 8"):
        Dim("h", 8, 12, 16, multiple_of=8)
    assert Dim("h", 8, 16, 32, 8).accepts(24) and not Dim("h", 8, 16, 32, 8).accepts(20)


def test_dynamic_axes():
    assert gen_spec().dynamic_axes() == {
        "image": {0: "batch", 2: "height", 3: "width"},
        "seed": {0: "batch"},
        "output": {0: "batch", 2: "height", 3: "width"},
        "feat": {0: "batch", 2: "h8", 3: "w8"},
    }


def test_trt_profile_and_points():
    prof = gen_spec().trt_profile()
    assert prof["image"] == ((1, 3, 256, 256), (4, 3, 512, 512), (8, 3, 1024, 1024))
    assert prof["seed"] == ((1,), (4,), (8,))
    assert gen_spec().shapes("max") == {"image": (8, 3, 1024, 1024), "seed": (8,)}


def test_example_inputs_respect_range_and_dtype_and_are_deterministic():
    spec = gen_spec()
    a = spec.example_inputs("min", seed=3)
    b = spec.example_inputs("min", seed=3)
    assert a["image"].shape == (1, 3, 256, 256) and a["image"].dtype == np.float32
    assert a["image"].min() >= -1 and a["image"].max() <= 1
    assert a["seed"].dtype == np.int64 and 0 <= a["seed"].min() and a["seed"].max() < 100
    np.testing.assert_array_equal(a["image"], b["image"])


def test_inconsistent_dims_and_names_refused():
    with pytest.raises(SpecError, match="declared twice"):
        GraphSpec("g", (image_tensor("a", height=H, width=W, batch=B),), (image_tensor("b", height=H.replace(max=2048), width=W, batch=B),))
    with pytest.raises(SpecError, match="used twice"):
        GraphSpec("g", (image_tensor("a", height=H, width=W, batch=B),), (image_tensor("a", height=H, width=W, batch=B),))
    with pytest.raises(SpecError, match="batch_dim"):
        GraphSpec("g", (TensorSpec("x", (1, 3)),), (TensorSpec("y", (1, 3)),))


def test_check_shapes_names_the_axis():
    spec = gen_spec()
    spec.check_shapes({"image": (2, 3, 512, 768), "seed": (2,)})
    with pytest.raises(SpecError, match="height=300"):
        spec.check_shapes({"image": (2, 3, 300, 512), "seed": (2,)})
    with pytest.raises(SpecError, match="batch is 2 in one input and 3"):
        spec.check_shapes({"image": (2, 3, 512, 512), "seed": (3,)})


def test_profile_overrides_dims_tolerance_and_roundtrip(tmp_path):
    p = tmp_path / "small.yaml"
    p.write_text("precision: fp16\ndims:\n  height: {min: 256, opt: 256, max: 512}\ngraphs:\n  generator:\n    tolerance: {atol: 0.01, rtol: 0.01, psnr: 30}\n")
    prof = ExportProfile.load(p)
    spec = prof.apply(gen_spec())
    assert spec.dims["height"] == Dim("height", 256, 256, 512, 256)
    assert spec.tolerance == Tolerance(0.01, 0.01, 30)
    assert prof.precision == "fp16" and prof.name == "small"
    again = GraphSpec.from_dict(spec.to_dict())
    assert again.trt_profile() == spec.trt_profile() and again.dynamic_axes() == spec.dynamic_axes()


def test_profile_errors_are_clear(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("dims:\n  height: {min: 256, opt: 256, max: 512}\nbogus: 1\n")
    with pytest.raises(ValueError, match="bogus"):
        ExportProfile.load(p)
    p.write_text("dims:\n  depth: {min: 1, opt: 1, max: 2}\n")
    spec = ExportProfile.load(p).apply(gen_spec())  # dims a graph does not have are ignored globally
    assert spec.dims == gen_spec().dims
    p.write_text("graphs:\n  generator:\n    dims:\n      depth: {min: 1, opt: 1, max: 2}\n")
    with pytest.raises(SpecError, match="has no dims \\[.depth.\\]"):
        ExportProfile.load(p).apply(gen_spec())


def test_derived_axes_follow_their_dim_everywhere(tmp_path):
    import torch

    from styleengine.export.onnx import export_graph
    from styleengine.export.validate import session_for_onnx, validate_graph
    from styleengine.runtime.base import SessionOptions
    from styleengine.runtime.torch import TorchSession
    from styleengine.spec import Derived

    h = Dim("height", 16, 32, 64, multiple_of=16)
    w = Dim("width", 16, 32, 48, multiple_of=16)
    b = Dim("batch", 1, 2, 3)

    class Gate(torch.nn.Module):  # multiplies a 1/4-resolution mask, upsampled, into the image
        def forward(self, image, mask):
            return image * torch.nn.functional.interpolate(mask, scale_factor=4.0, mode="nearest")

    spec = GraphSpec(
        "gate",
        (image_tensor("image", batch=b, height=h, width=w), TensorSpec("mask", (b, 1, Derived(h, div=4), Derived(w, div=4)), value_range=(0, 1))),
        (image_tensor("out", batch=b, height=h, width=w),),
        module=Gate(),
    )
    assert spec.trt_profile()["mask"] == ((1, 1, 4, 4), (2, 1, 8, 8), (3, 1, 16, 12))
    assert spec.dynamic_axes()["mask"] == {0: "batch", 2: "height_div4", 3: "width_div4"}
    with pytest.raises(SpecError, match="expected height_div4=8"):
        spec.check_shapes({"image": (1, 3, 32, 32), "mask": (1, 1, 4, 8)})
    assert GraphSpec.from_dict(spec.to_dict()).trt_profile() == spec.trt_profile()
    with pytest.raises(SpecError, match="must be a multiple of 3"):
        Derived(h, div=3)
    export_graph(spec, tmp_path / "g.onnx")
    parity = validate_graph(spec, TorchSession(spec, SessionOptions()), session_for_onnx(spec, tmp_path / "g.onnx"))
    assert parity["passed"] and parity["max"]["shapes"]["mask"] == [3, 1, 16, 12]

"""GraphSpecs of the SD components: dims, shapes, and the UNet through ONNX export + ONNX Runtime."""

from __future__ import annotations

import pytest
import torch

from styleengine.diffusion import TOLERANCES, diffusion_graphs
from styleengine.diffusion.graphs import residual_layout
from styleengine.diffusion.tiny import sd15_configs
from styleengine.runtime.base import SessionOptions
from styleengine.runtime.torch import TorchSession


@pytest.mark.parametrize("m", [1, 2, 3])
def test_specs_dims_and_shapes(tiny, tiny_ip2p, m):
    comps = tiny_ip2p if m == 3 else tiny
    specs = {s.name: s for s in diffusion_graphs(comps, guidance_multiplicity=m, batch_range=(1, 2, 4),
                                                  latent_range=(8, 16, 24))}
    assert list(specs) == ["text_encoder", "unet", "vae_encoder", "vae_decoder"]
    te, unet, enc, dec = specs["text_encoder"], specs["unet"], specs["vae_encoder"], specs["vae_decoder"]
    # Request batch vs guidance-expanded UNet batch.
    assert te.dims["batch"].to_dict() == {"name": "batch", "min": 1, "opt": 2, "max": 4, "multiple_of": 1}
    ub = unet.dims["unet_batch"]
    assert (ub.min, ub.opt, ub.max, ub.multiple_of) == (m, 2 * m, 4 * m, m)
    assert unet.batch_dim == "unet_batch" and te.batch_dim == enc.batch_dim == dec.batch_dim == "batch"
    # Latent dims are multiples of 8; pixel dims are the VAE factor (8) times them.
    lh = unet.dims["latent_height"]
    assert (lh.min, lh.opt, lh.max, lh.multiple_of) == (8, 16, 24, 8)
    h = enc.dims["height"]
    assert (h.min, h.opt, h.max, h.multiple_of) == (64, 128, 192, 64)
    assert te.inputs[0].dtype == "int64" and te.inputs[0].at("opt") == (2, 77)
    assert unet.shapes("max") == {
        "sample": (4 * m, 8 if m == 3 else 4, 24, 24),
        "timestep": (4 * m,),
        "encoder_hidden_states": (4 * m, 77, 32),
    }
    assert enc.precisions == dec.precisions == ("fp32",) and "fp16" in unet.precisions
    assert unet.tolerance == TOLERANCES["unet"]
    # Every graph runs at its min point in torch and returns the declared output shapes.
    for spec in specs.values():
        feeds = {k: torch.from_numpy(v) for k, v in spec.example_inputs("min").items()}
        spec.check_shapes({k: tuple(v.shape) for k, v in feeds.items()})
        out = TorchSession(spec, SessionOptions()).run(feeds)
        assert list(out) == spec.output_names
    out = TorchSession(unet, SessionOptions()).run(
        {k: torch.from_numpy(v) for k, v in unet.example_inputs("min").items()})
    assert out["noise_pred"].shape == (m, 4, 8, 8)
    out = TorchSession(enc, SessionOptions()).run({"image": torch.zeros(1, 3, 64, 64)})
    assert out["latent_mean"].shape == out["latent_std"].shape == (1, 4, 8, 8)
    assert TorchSession(dec, SessionOptions()).run({"latents": torch.zeros(1, 4, 8, 8)})["image"].shape == (1, 3, 64, 64)


def test_controlnet_specs(tiny_cn):
    specs = {s.name: s for s in diffusion_graphs(tiny_cn, guidance_multiplicity=2, batch_range=(1, 1, 2),
                                                  latent_range=(8, 16, 16))}
    cn, unet = specs["controlnet"], specs["unet"]
    n = len(residual_layout(tiny_cn.unet.config))
    assert cn.output_names == [f"down_residual_{i}" for i in range(n)] + ["mid_residual"]
    assert unet.input_names[3:] == cn.output_names
    assert cn.inputs[3].name == "controlnet_cond" and cn.inputs[3].value_range == (0.0, 1.0)
    assert cn.shapes("opt")["controlnet_cond"] == (2, 3, 128, 128) and cn.shapes("opt")["conditioning_scale"] == ()
    out = TorchSession(cn, SessionOptions()).run({k: torch.from_numpy(v) for k, v in cn.example_inputs("min").items()})
    for name, o in out.items():
        assert o.shape[0] == 2, name


def test_sd15_residual_layout():
    class Cfg:
        block_out_channels = sd15_configs()["unet"]["block_out_channels"]
        layers_per_block = 2

    assert residual_layout(Cfg) == [
        (320, 1), (320, 1), (320, 1), (320, 2), (640, 2), (640, 2), (640, 4), (1280, 4), (1280, 4), (1280, 8),
        (1280, 8), (1280, 8),
    ]


def test_unet_onnx_export_matches_torch(tiny_ip2p, tmp_path):
    """The InstructPix2Pix-shaped UNet graph (8 input channels, 3-way batch) through the engine's ONNX export
    (dynamo exporter, dynamic batch/height/width) and ONNX Runtime CPU, validated at min/opt/max."""
    pytest.importorskip("onnxruntime")
    from styleengine.export.onnx import export_graph
    from styleengine.export.validate import validate_graph, worst
    from styleengine.runtime.onnxruntime import OrtSession

    # opt = 2 x min on every dim: torch.export specialises a dim whose example value is 1 (here the
    # quotient of a multiple-of dim), so the traced point must not sit at quotient 1.
    spec = next(s for s in diffusion_graphs(tiny_ip2p, guidance_multiplicity=3, batch_range=(1, 2, 2),
                                            latent_range=(8, 16, 16)) if s.name == "unet")
    path = tmp_path / "unet.onnx"
    record = export_graph(spec, path)
    assert record["exporter"] == "dynamo"
    ort = OrtSession(spec, path, SessionOptions())
    result = validate_graph(spec, TorchSession(spec, SessionOptions()), ort)
    print("unet onnx parity:", worst(result))
    assert result["passed"], result
    assert worst(result)["max_abs"] < 1e-5  # measured ~1e-6 on the tiny UNet


def test_classic_attention_only_while_exporting(tiny_ip2p, tmp_path):
    """Building the graphs leaves the modules' own (SDPA) attention in place for the torch runtime; the export
    runs with diffusers' classic AttnProcessor / transformers' eager attention and puts the originals back."""
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    from styleengine.export.onnx import export_graph

    unet, text = tiny_ip2p.unet, tiny_ip2p.text_encoder
    before = {k: type(v) for k, v in unet.attn_processors.items()}
    assert set(before.values()) == {AttnProcessor2_0}
    impl = text.config._attn_implementation
    specs = {s.name: s for s in diffusion_graphs(tiny_ip2p, guidance_multiplicity=3, batch_range=(1, 2, 2), latent_range=(8, 16, 16))}
    assert {k: type(v) for k, v in unet.attn_processors.items()} == before  # not pinned by building specs
    seen = {}
    def record(mod, args):  # a pre-hook that returns None leaves the inputs alone
        seen.setdefault("unet", {type(v) for v in unet.attn_processors.values()})

    hook = unet.register_forward_pre_hook(record)
    try:
        export_graph(specs["unet"], tmp_path / "unet.onnx", exporter="torchscript")
    finally:
        hook.remove()
    assert seen["unet"] == {AttnProcessor}  # traced with the classic processor
    assert {k: type(v) for k, v in unet.attn_processors.items()} == before  # and SDPA back afterwards
    with specs["text_encoder"].module.export_context():
        assert text.config._attn_implementation == "eager"
    assert text.config._attn_implementation == impl

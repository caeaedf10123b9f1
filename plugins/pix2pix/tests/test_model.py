"""Declarations: architecture sizes, configs, graph specs of both variants."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from styleengine.nn import PerSampleBatchNorm2d, dropout_mask_shapes
from styleengine.spec import Derived, SpecError
from styleengine_pix2pix import Pix2Pix
from styleengine_pix2pix.config import Config, ModelConfig, TrainConfig


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(
    ("cfg", "expected"),
    [
        # the figures the reference prints for netG ([Network G] Total number of parameters : 54.414 M)
        ({}, 54_413_955),
        ({"netG": "unet_128"}, 41_828_995),
        ({"netG": "resnet_9blocks", "norm": "instance"}, 11_378_179),
        ({"netG": "resnet_6blocks", "norm": "batch"}, 7_841_411),
    ],
)
def test_parameter_counts(cfg: dict, expected: int) -> None:
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        net = Pix2Pix(cfg).build()["generator"]
    assert n_params(net) == expected


def test_default_is_the_reference_pix2pix() -> None:
    s = Pix2Pix()
    cfg = s.model_config
    assert (cfg.netG, cfg.ngf, cfg.norm, cfg.no_dropout, cfg.input_nc, cfg.output_nc, cfg.direction) == (
        "unet_256", 64, "batch", False, 3, 3, "AtoB"
    )
    assert s.variant == "eval" and Pix2Pix.variants == ("eval", "reference")
    t = TrainConfig()
    assert (t.gan_mode, t.lambda_L1, t.lr, t.beta1, t.n_epochs, t.n_epochs_decay, t.batch_size) == ("vanilla", 100.0, 2e-4, 0.5, 100, 100, 1)
    assert (t.netD, t.ndf, t.preprocess, t.load_size, t.crop_size, t.no_flip) == ("basic", 64, "resize_and_crop", 286, 256, False)


def test_configs_refuse_bad_values() -> None:
    with pytest.raises(ValidationError):
        ModelConfig(netG="unet_512")
    with pytest.raises(ValidationError):
        ModelConfig(norm="group")
    with pytest.raises(ValidationError):
        Config(size=float("nan"))
    with pytest.raises(ValidationError, match="multiple of 256"):
        TrainConfig(crop_size=200)
    with pytest.raises(ValidationError, match="larger than load_size"):
        TrainConfig(load_size=200, crop_size=256)
    TrainConfig(netG="resnet_9blocks", crop_size=200, load_size=220)  # any multiple of 4


def test_train_config_is_flat_and_accepts_nested_model() -> None:
    flat = TrainConfig(netG="unet_128", direction="BtoA", lr=1e-3)
    assert flat.model == ModelConfig(netG="unet_128", direction="BtoA")
    assert flat.model.model_fields_set == {"netG", "direction"}  # only what was given counts as set
    nested = TrainConfig(model={"netG": "unet_128", "direction": "BtoA"}, lr=1e-3)
    assert nested == flat
    with pytest.raises(ValidationError, match="both at the top level"):
        TrainConfig(model={"netG": "unet_128"}, netG="unet_256")


def test_variants_differ_only_in_normalisation_and_inputs(tiny: dict) -> None:
    ev, ref = Pix2Pix(tiny), Pix2Pix(tiny, variant="reference")
    assert not any(isinstance(m, PerSampleBatchNorm2d) for m in ev.modules["generator"].modules())
    assert any(isinstance(m, PerSampleBatchNorm2d) for m in ref.modules["generator"].modules())
    sd_e, sd_r = ev.state_dict(), ref.state_dict()
    assert sd_e.keys() == sd_r.keys() and all(torch.equal(sd_e[k], sd_r[k]) for k in sd_e)  # same seeded init
    assert "generator.model.model.0.weight" in sd_e
    [ge], [gr] = ev.graphs(), ref.graphs()
    assert ge.input_names == ["image"]
    assert gr.input_names == ["image", "dropout_0", "dropout_1"]
    assert Pix2Pix({**tiny, "no_dropout": True}, variant="reference").graphs()[0].input_names == ["image"]
    with pytest.raises(ValueError, match="unknown variant"):
        Pix2Pix(tiny, variant="train")


@pytest.mark.parametrize(
    ("netG", "multiple", "masks"),
    [("unet_256", 256, 3), ("unet_128", 128, 2), ("resnet_6blocks", 4, 6), ("resnet_9blocks", 4, 9)],
)
def test_graph_dims_follow_the_architecture(netG: str, multiple: int, masks: int) -> None:
    style = Pix2Pix({"netG": netG, "ngf": 2}, variant="reference")
    [spec] = style.graphs()
    dims = spec.dims
    assert dims["height"].multiple_of == multiple and dims["width"].multiple_of == multiple
    assert (dims["batch"].min, dims["batch"].max) == (1, 8) and spec.batch_dim == "batch"
    assert dims["height"].max == 1024 and spec.exporter == "torchscript"
    assert style.input_contract.size_multiple == multiple and style.input_contract.size_policy == "resize"
    assert spec.input_names[1:] == [f"dropout_{i}" for i in range(masks)]
    # the Derived mask axes agree with the network's own mask shapes at every accepted size
    lo = dims["height"].min
    for h, w in [(lo, lo), (lo + multiple, lo + 2 * multiple), (4 * lo, lo)]:
        expected = dropout_mask_shapes(netG, 2, h, w, ngf=2)
        for t, shape in zip(spec.inputs[1:], expected, strict=True):
            assert all(isinstance(a, Derived) for a in t.shape[2:])
            assert (t.shape[1], t.shape[2].of(h), t.shape[3].of(w)) == shape[1:]
        shapes = {"image": (2, 3, h, w), **{t.name: s for t, s in zip(spec.inputs[1:], expected, strict=True)}}
        spec.check_shapes(shapes)
    with pytest.raises(SpecError):
        spec.check_shapes({"image": (1, 3, lo + 2, lo), **{t.name: t.at("min") for t in spec.inputs[1:]}})


def test_example_inputs_are_real_dropout_masks(tiny: dict) -> None:
    [spec] = Pix2Pix(tiny, variant="reference").graphs()
    ex = spec.example_inputs("max")
    assert ex["image"].shape == (8, 3, 1024, 1024) and ex["image"].min() >= -1 and ex["image"].max() <= 1
    for name in ("dropout_0", "dropout_1"):
        assert set(map(float, set(ex[name].ravel().tolist()))) == {0.0, 2.0}

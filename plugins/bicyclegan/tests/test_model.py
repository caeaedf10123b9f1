"""Architecture and configuration: the reference's parameter counts and defaults, bounds, graph shapes."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from styleengine.spec import SpecError
from styleengine_bicyclegan import BicycleGAN, Config, ModelConfig, TrainConfig


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts_are_the_references() -> None:
    """The reference's defaults (unet_256, where_add=all, nz 8, ngf 64, instance, relu, basic; resnet_256, nef 64).
    Other variants are checked against the reference's structure in test_import.py."""
    with torch.device("meta"):  # shapes only
        nets = BicycleGAN().build()
    assert n_params(nets["generator"]) == 54_794_627
    assert n_params(nets["encoder"]) == 2_590_032


def test_defaults_are_the_references() -> None:
    m = ModelConfig()
    assert (m.netG, m.where_add, m.nz, m.ngf, m.nef, m.netE, m.norm, m.nl, m.upsample, m.use_dropout) == (
        "unet_256", "all", 8, 64, 64, "resnet_256", "instance", "relu", "basic", False
    )
    t = TrainConfig()
    assert (t.gan_mode, t.lambda_L1, t.lambda_kl, t.lambda_z, t.lambda_GAN, t.lambda_GAN2) == ("lsgan", 10.0, 0.01, 0.5, 1.0, 1.0)
    assert (t.lr, t.beta1, t.niter, t.niter_decay, t.batch_size, t.init_type, t.init_gain) == (2e-4, 0.5, 100, 100, 2, "xavier", 0.02)
    assert (t.netD, t.netD2, t.num_Ds, t.ndf, t.conditional_D, t.use_same_D) == ("basic_256_multi", "basic_256_multi", 2, 64, False, False)
    assert (t.load_size, t.crop_size, t.preprocess, t.use_dropout) == (286, 256, "resize_and_crop", True)
    c = Config()
    assert (c.n_samples, c.sync, c.z, c.frames, c.interp, c.grid) == (5, False, None, None, "slerp", False)


def test_configs_refuse_bad_values() -> None:
    with pytest.raises(ValidationError, match="batch_size must be even"):
        TrainConfig(batch_size=3)
    with pytest.raises(ValidationError, match="multiple of 128"):
        TrainConfig(netG="unet_128", netE="resnet_128", crop_size=100, load_size=136)
    with pytest.raises(ValidationError, match="takes 256 x 256 images only"):
        TrainConfig(netG="unet_128", crop_size=128, load_size=136)
    with pytest.raises(ValidationError):
        ModelConfig(netE="resnet_512")
    with pytest.raises(ValidationError):
        Config(n_samples=0)
    with pytest.raises(ValidationError):
        Config(z=[float("nan")] * 8)
    with pytest.raises(ValidationError):
        Config(z=[11.0] * 8)  # outside [-10, 10]
    with pytest.raises(ValidationError, match="two z vectors"):
        Config(z=[0.0] * 8, frames=5)
    with pytest.raises(ValidationError, match="different lengths"):
        Config(z=[[0.0] * 8, [0.0] * 7])
    assert Config(z=[0.5] * 8).vectors() == [[0.5] * 8]
    assert len(Config(z=[[0.5] * 8, [0.1] * 8], frames=3).vectors()) == 2


def test_train_config_is_flat_and_accepts_nested_model() -> None:
    flat = TrainConfig(netG="unet_128", netE="resnet_128", crop_size=128, load_size=136, lr=1e-3)
    nested = TrainConfig(model={"netG": "unet_128", "netE": "resnet_128"}, crop_size=128, load_size=136, lr=1e-3)
    assert nested == flat
    assert flat.model.netG == "unet_128" and flat.model.use_dropout is True
    with pytest.raises(ValidationError, match="both at the top level"):
        TrainConfig(model={"netG": "unet_128"}, netG="unet_256")


def test_graphs_and_contract(tiny: dict) -> None:
    style = BicycleGAN(tiny)
    gen, enc = style.graphs()
    assert (gen.name, gen.input_names, gen.output_names) == ("generator", ["image", "z"], ["output"])
    assert (enc.name, enc.input_names, enc.output_names) == ("encoder", ["image"], ["mu", "logvar"])
    assert gen.dims["height"].multiple_of == 128 and gen.dims["batch"].max == 8 and gen.exporter == "torchscript"
    assert enc.shapes("max") == {"image": (8, 3, 128, 128)}  # the encoder's one size, dynamic batch only
    gen.check_shapes({"image": (3, 3, 256, 128), "z": (3, 8)})
    with pytest.raises(SpecError):
        enc.check_shapes({"image": (1, 3, 256, 256)})
    assert style.input_contract.size_multiple == 128 and BicycleGAN().input_contract.size_multiple == 256
    assert [f.name for f in style.inputs.images] == ["image", "style"] and not style.inputs.images[1].required
    ex = gen.example_inputs("opt")
    assert ex["z"].shape == (1, 8) and ex["image"].shape == (1, 3, 256, 256)

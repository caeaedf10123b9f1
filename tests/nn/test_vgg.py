"""VGG-19 feature extractors: layouts, parameter counts, importers and taps.

The oracles below spell out the two reference layouts independently of ``styleengine.nn.vgg``:
naoto0804/pytorch-AdaIN's ``net.vgg`` and torchvision's ``vgg19().features``.  Checkpoints are written in
those layouts with ``torch.save`` and must load into our modules with identical outputs.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from styleengine.nn.vgg import (
    ADAIN_TAPS,
    NORMALISED_VGG_LAYER_NAMES,
    VGG19_LAYER_NAMES,
    VGG_MEAN,
    VGG_STD,
    NormalisedVGG,
    VGG19Features,
    load_torchvision_vgg19,
    load_vgg_normalised,
    read_state_dict,
    vgg19_classifier,
)

# -- oracles -------------------------------------------------------------------------------------------


def reference_vgg_normalised() -> nn.Sequential:
    """AdaIN's ``vgg``: a 1x1 conv, then reflection-padded 3x3 convs + ReLU, ceil-mode max-pools."""

    def c(i: int, o: int) -> list[nn.Module]:
        return [nn.ReflectionPad2d((1, 1, 1, 1)), nn.Conv2d(i, o, (3, 3)), nn.ReLU()]

    def pool() -> list[nn.Module]:
        return [nn.MaxPool2d((2, 2), (2, 2), (0, 0), ceil_mode=True)]

    return nn.Sequential(
        nn.Conv2d(3, 3, (1, 1)),
        *c(3, 64), *c(64, 64), *pool(),
        *c(64, 128), *c(128, 128), *pool(),
        *c(128, 256), *c(256, 256), *c(256, 256), *c(256, 256), *pool(),
        *c(256, 512), *c(512, 512), *c(512, 512), *c(512, 512), *pool(),
        *c(512, 512), *c(512, 512), *c(512, 512), *c(512, 512),
    )


def reference_vgg19_features() -> nn.Sequential:
    """torchvision's ``vgg19().features`` (configuration "E")."""
    layers: list[nn.Module] = []
    cin = 3
    for v in [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(cin, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            cin = v
    return nn.Sequential(*layers)


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.fixture(scope="module")
def ref_normalised() -> nn.Sequential:
    torch.manual_seed(0)
    return reference_vgg_normalised().eval()


@pytest.fixture(scope="module")
def ref_vgg19() -> nn.Sequential:
    torch.manual_seed(1)
    return reference_vgg19_features().eval()


@pytest.fixture(scope="module")
def vgg_normalised_pth(tmp_path_factory, ref_normalised):
    path = tmp_path_factory.mktemp("adain") / "vgg_normalised.pth"
    torch.save(ref_normalised.state_dict(), path)
    return path


def image(h: int = 37, w: int = 37, n: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(seed))


# -- layouts and sizes ---------------------------------------------------------------------------------


def test_parameter_counts():
    with torch.device("meta"):
        assert n_params(NormalisedVGG(upto="relu4_1")) == 3_505_740
        assert n_params(NormalisedVGG()) == n_params(reference_vgg_normalised()) == 20_024_396
        features = VGG19Features()
        assert n_params(features) == 20_024_384
        assert n_params(features) + n_params(vgg19_classifier()) == 143_667_240


def test_state_dict_keys_match_reference_layouts():
    with torch.device("meta"):
        assert list(NormalisedVGG().state_dict()) == list(reference_vgg_normalised().state_dict())
        assert list(NormalisedVGG(upto="relu4_1").state_dict()) == list(reference_vgg_normalised()[:31].state_dict())
        ref = reference_vgg19_features().state_dict()
        assert list(VGG19Features().state_dict()) == [f"features.{k}" for k in ref]
        assert list(vgg19_classifier().state_dict()) == [
            "0.weight", "0.bias", "3.weight", "3.bias", "6.weight", "6.bias"]
    assert len(NORMALISED_VGG_LAYER_NAMES) == 53 and NORMALISED_VGG_LAYER_NAMES[30] == "relu4_1"
    assert [NORMALISED_VGG_LAYER_NAMES.index(t) for t in ADAIN_TAPS] == [3, 10, 17, 30]
    assert VGG19_LAYER_NAMES.index("relu5_4") == 35 and VGG19_LAYER_NAMES[-1] == "pool5"


def test_normalised_taps_channels_and_sizes_ceil_mode():
    with torch.no_grad():
        taps = NormalisedVGG().encode_with_taps(image(37, 30), ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"])
    # ceil-mode pools: 37 -> 19 -> 10 -> 5 -> 3 and 30 -> 15 -> 8 -> 4 -> 2
    assert {k: tuple(v.shape) for k, v in taps.items()} == {
        "relu1_1": (1, 64, 37, 30), "relu2_1": (1, 128, 19, 15), "relu3_1": (1, 256, 10, 8),
        "relu4_1": (1, 512, 5, 4), "relu5_1": (1, 512, 3, 2),
    }


def test_vgg19_taps_channels_and_sizes_floor_mode():
    with torch.no_grad():
        taps = VGG19Features()(image(37, 34), ["conv1_1", "relu1_2", "relu2_1", "relu3_4", "relu4_1", "relu5_4", "pool5"])
    assert {k: tuple(v.shape) for k, v in taps.items()} == {
        "conv1_1": (1, 64, 37, 34), "relu1_2": (1, 64, 37, 34), "relu2_1": (1, 128, 18, 17),
        "relu3_4": (1, 256, 9, 8), "relu4_1": (1, 512, 4, 4), "relu5_4": (1, 512, 2, 2), "pool5": (1, 512, 1, 1),
    }
    assert (taps["conv1_1"] < 0).any(), "a conv tap must be taken before its ReLU"


def test_default_taps_are_all_relus_and_computation_stops_at_deepest_tap():
    model = VGG19Features(upto="relu3_1")
    with torch.no_grad():
        assert list(model(image(16, 16))) == ["relu1_1", "relu1_2", "relu2_1", "relu2_2", "relu3_1"]
    ran: list[int] = []
    for i, layer in enumerate(model.features):
        layer.register_forward_hook(lambda *_, i=i: ran.append(i))
    with torch.no_grad():
        model(image(16, 16), ["relu2_1"])
    assert ran == list(range(VGG19_LAYER_NAMES.index("relu2_1") + 1))
    with torch.no_grad():
        assert list(model(image(8, 8), "relu1_1")) == ["relu1_1"]  # a single name is one tap


def test_unknown_or_too_deep_tap_is_a_clear_error():
    with pytest.raises(ValueError, match="did you mean relu4_1"):
        NormalisedVGG(upto="relu4_1").encode(image(8, 8), upto="relu4-1")
    with pytest.raises(ValueError, match="deeper than this network"):
        NormalisedVGG(upto="relu4_1").encode(image(8, 8), upto="relu5_1")
    with pytest.raises(ValueError, match="'max' or 'avg'"):
        VGG19Features(pool="min")


# -- NormalisedVGG against the reference ---------------------------------------------------------------


def test_vgg_normalised_pth_loads_with_identical_outputs(vgg_normalised_pth, ref_normalised):
    x = image(24, 20)
    model = load_vgg_normalised(vgg_normalised_pth)
    encoder = load_vgg_normalised(vgg_normalised_pth, upto="relu4_1")
    assert len(encoder) == 31
    with torch.no_grad():
        assert torch.equal(model(x), ref_normalised(x))
        assert torch.equal(encoder(x), ref_normalised[:31](x))
        assert torch.equal(encoder.encode(x), ref_normalised[:31](x))
        assert torch.equal(model.encode(x, upto="relu4_1"), ref_normalised[:31](x))


def test_encode_with_taps_equals_reference_encoder_slices(vgg_normalised_pth, ref_normalised):
    x = image(20, 20)
    encoder = load_vgg_normalised(vgg_normalised_pth, upto="relu4_1")
    bounds = [(0, 4), (4, 11), (11, 18), (18, 31)]  # the reference's enc_1 .. enc_4
    with torch.no_grad():
        taps = encoder.encode_with_taps(x)
        h = x
        for name, (a, b) in zip(ADAIN_TAPS, bounds):
            h = ref_normalised[a:b](h)
            assert torch.equal(taps[name], h)
    assert list(taps) == list(ADAIN_TAPS)


def test_vgg_normalised_safetensors_and_prefix_only(tmp_path, ref_normalised):
    from safetensors.torch import save_file

    x = image(16, 16)
    prefix = {k: v.contiguous() for k, v in ref_normalised[:31].state_dict().items()}
    save_file(prefix, tmp_path / "enc.safetensors")
    encoder = load_vgg_normalised(tmp_path / "enc.safetensors", upto="relu4_1")
    with torch.no_grad():
        assert torch.equal(encoder(x), ref_normalised[:31](x))
    with pytest.raises(ValueError, match=r"missing keys \[32\.bias, 32\.weight"):
        load_vgg_normalised(prefix)  # full depth needs the deeper layers


def test_truncated_shares_weights():
    full = NormalisedVGG()
    enc = full.truncated("relu4_1")
    assert len(enc) == 31 and enc.last_layer == "relu4_1"
    assert enc[29].weight is full[29].weight


# -- VGG19Features against torchvision's layout --------------------------------------------------------


def torchvision_state(ref_vgg19: nn.Sequential) -> dict[str, torch.Tensor]:
    """A full torchvision ``vgg19().state_dict()``; the (ignored) classifier tensors are stride-0 zeros so the
    test writes a few bytes instead of 0.5 GB."""
    state = {f"features.{k}": v for k, v in ref_vgg19.state_dict().items()}
    with torch.device("meta"):
        head = vgg19_classifier().state_dict()
    state.update({f"classifier.{k}": torch.zeros(1).expand(v.shape) for k, v in head.items()})
    return state


def test_torchvision_state_dict_with_classifier_loads(tmp_path, ref_vgg19):
    path = tmp_path / "vgg19.pth"
    torch.save(torchvision_state(ref_vgg19), path)
    model = load_torchvision_vgg19(path)
    x = image(32, 32)
    with torch.no_grad():
        out = model(x, ["relu3_1", "pool5"], normalize=False)
        assert torch.equal(out["pool5"], ref_vgg19(x))
        assert torch.equal(out["relu3_1"], ref_vgg19[:12](x))


def test_features_only_state_dict_and_truncated_model(ref_vgg19):
    state = {f"features.{k}": v for k, v in ref_vgg19.state_dict().items()}
    model = load_torchvision_vgg19(state, upto="relu5_1")
    assert model.layer_names[-1] == "relu5_1" and len(model.features) == 30
    x = image(32, 32)
    with torch.no_grad():
        assert torch.equal(model(x, ["relu5_1"], normalize=False)["relu5_1"], ref_vgg19[:30](x))


def test_imagenet_normalisation(ref_vgg19):
    assert VGG_MEAN == (0.485, 0.456, 0.406) and VGG_STD == (0.229, 0.224, 0.225)
    model = load_torchvision_vgg19({f"features.{k}": v for k, v in ref_vgg19.state_dict().items()}, upto="relu2_1")
    x = image(20, 20)
    mean = torch.tensor(VGG_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(VGG_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(model.normalize_input(mean.expand(1, 3, 4, 4)), torch.zeros(1, 3, 4, 4))
        assert torch.allclose(model.normalize_input(mean + std), torch.ones(1, 3, 1, 1))
        expected = ref_vgg19[:7]((x - mean) / std)
        assert torch.allclose(model(x, ["relu2_1"])["relu2_1"], expected, atol=1e-6)
        assert not model(x, ["relu2_1"], normalize=False)["relu2_1"].allclose(expected)
    assert not VGG19Features(normalize=False, upto="relu1_1").normalize
    assert "mean" not in model.state_dict()  # normalisation constants are not weights


def test_average_pooling_variant(ref_vgg19):
    model = VGG19Features(pool="avg", normalize=False, upto="pool2")
    model.load_state_dict({f"features.{k}": v for k, v in ref_vgg19[:10].state_dict().items()})
    x = image(18, 18)
    with torch.no_grad():
        out = model(x, ["relu1_2", "pool1", "pool2"])
        assert torch.allclose(out["pool1"], F.avg_pool2d(out["relu1_2"], 2, 2))
        assert torch.equal(model(x, ["relu2_1"])["relu2_1"], ref_vgg19[5:7](F.avg_pool2d(ref_vgg19[:4](x), 2)))


# -- errors --------------------------------------------------------------------------------------------


def test_bad_keys_name_missing_and_unexpected(ref_vgg19, ref_normalised):
    state = {f"features.{k}": v for k, v in ref_vgg19.state_dict().items()}
    del state["features.0.bias"]
    state["features.99.weight"] = torch.zeros(1)
    with pytest.raises(ValueError) as err:
        load_torchvision_vgg19(state)
    msg = str(err.value)
    assert "missing keys [features.0.bias]" in msg and "unexpected keys [features.99.weight]" in msg

    with pytest.raises(ValueError, match="use load_vgg_normalised"):
        load_torchvision_vgg19(ref_normalised.state_dict())
    with pytest.raises(ValueError, match="use load_torchvision_vgg19"):
        load_vgg_normalised({f"features.{k}": v for k, v in ref_vgg19.state_dict().items()})

    bad_shape = dict(ref_normalised.state_dict())
    bad_shape["0.weight"] = torch.zeros(3, 3, 3, 3)
    with pytest.raises(ValueError, match=r"shape mismatches \[0.weight: file \(3, 3, 3, 3\) vs model \(3, 3, 1, 1\)"):
        load_vgg_normalised(bad_shape)


def test_pickled_modules_and_non_state_dicts_are_refused(tmp_path):
    torch.save(nn.Linear(2, 2), tmp_path / "module.pth")
    with pytest.raises(ValueError, match="weights_only"):
        read_state_dict(tmp_path / "module.pth")
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="expected a state dict"):
        read_state_dict(tmp_path / "list.pth")
    with pytest.raises(FileNotFoundError):
        load_vgg_normalised(tmp_path / "nope.pth")

"""The Gram matrix and every loss against a direct computation; normalised gradients; presets; VGG layouts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from styleengine_gatys.config import PRESETS, Config
from styleengine_gatys.nets import content_loss, gram_matrix, normalized_grad, style_loss, tv_loss


def test_gram_matrix_is_f_ft_over_chw():
    f = torch.randn(2, 5, 3, 4, dtype=torch.float64)
    g = gram_matrix(f)
    for n in range(2):
        fm = f[n].numpy().reshape(5, 12)
        want = np.array([[sum(fm[i, k] * fm[j, k] for k in range(12)) for j in range(5)] for i in range(5)]) / (5 * 3 * 4)
        np.testing.assert_allclose(g[n].numpy(), want, rtol=1e-12)


def test_content_and_style_loss_are_weighted_means():
    f, t = torch.randn(1, 4, 3, 3, dtype=torch.float64), torch.randn(1, 4, 3, 3, dtype=torch.float64)
    assert content_loss(f, t, 5.0).item() == pytest.approx(5.0 * ((f - t) ** 2).sum().item() / f.numel(), rel=1e-12)
    gt = torch.randn(1, 4, 4, dtype=torch.float64)
    fm = f[0].reshape(4, 9).numpy()
    g = fm @ fm.T / 36
    assert style_loss(f, gt, 100.0).item() == pytest.approx(100.0 * ((g - gt[0].numpy()) ** 2).mean(), rel=1e-12)


def test_tv_loss_value_and_gradient_are_neural_styles():
    x = torch.randn(1, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    w = 1e-3
    a = x.detach()[0].numpy()
    value = 0.0
    grad = np.zeros_like(a)
    for c in range(3):  # neural-style TVLoss:updateGradInput, written out
        for i in range(4):
            for j in range(5):
                dx, dy = a[c, i, j] - a[c, i, j + 1], a[c, i, j] - a[c, i + 1, j]
                value += 0.5 * (dx * dx + dy * dy)
                grad[c, i, j] += dx + dy
                grad[c, i, j + 1] -= dx
                grad[c, i + 1, j] -= dy
    loss = tv_loss(x, w)
    loss.backward()
    assert loss.item() == pytest.approx(w * value, rel=1e-12)
    np.testing.assert_allclose(x.grad[0].numpy(), w * grad, rtol=1e-10, atol=1e-15)


def test_normalize_gradients_divides_by_l1_norm_before_the_weight():
    f = torch.randn(1, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    t = torch.randn(1, 4, 3, 3, dtype=torch.float64)
    content_loss(f, t, 1.0).backward()
    g0 = f.grad.clone()
    f.grad = None
    loss = content_loss(f, t, 7.0, normalize=True)
    assert loss.item() == pytest.approx(content_loss(f, t, 7.0).item())  # the value is not changed
    loss.backward()
    torch.testing.assert_close(f.grad, 7.0 * g0 / (g0.abs().sum() + 1e-8))
    assert normalized_grad(f, 0.0) is not None


def test_defaults_are_neural_styles_and_the_tutorial_preset_is_one_set_away():
    d = Config()
    assert (d.content_weight, d.style_weight, d.tv_weight, d.num_iterations, d.optimizer, d.learning_rate) == (5.0, 100.0, 1e-3, 1000, "lbfgs", 10.0)
    assert d.content_layers == ("relu4_2",) and d.style_layers == ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    assert (d.pooling, d.init, d.original_colors, d.normalize_gradients, d.style_scale, d.image_size) == ("max", "random", False, False, 1.0, 512)
    t = Config(preset="tutorial")
    assert (t.optimizer, t.num_iterations, t.content_weight / t.style_weight, t.clamp, t.init, t.pixel_scale) == ("adam", 1000, 0.01, "every_step", "image", 1)
    for k, v in PRESETS["tutorial"].items():
        assert getattr(t, k) == v
    assert Config(preset="tutorial", num_iterations=50).num_iterations == 50  # explicit values win
    with pytest.raises(ValueError, match="preset"):
        Config(preset="nope")
    with pytest.raises(ValueError):
        Config(content_layers=("relu9_1",))
    with pytest.raises(ValueError, match="positive sum"):
        Config(style_blend_weights=(0.0, 0.0))


def test_vgg16_layout_and_the_loss_network_importer(tmp_path):
    from styleengine.nn.vgg import VGG16_LAYER_NAMES, VGG16Features, VGG19Features, load_torchvision_vgg16

    from styleengine_gatys.importer import detect_layout, read_loss_network

    assert VGG16_LAYER_NAMES[3] == "relu1_2" and VGG16_LAYER_NAMES[22] == "relu4_3" and VGG16_LAYER_NAMES[30] == "pool5"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        v16 = VGG16Features()
        v19 = VGG19Features(upto="relu2_1")
    sd16 = {k: v for k, v in v16.state_dict().items()}
    sd16["classifier.0.weight"] = torch.zeros(1)  # ignored, as in torchvision's files
    assert sum(p.numel() for p in v16.parameters()) == 14_714_688  # torchvision vgg16 features
    torch.save(sd16, tmp_path / "vgg16.pth")
    assert detect_layout(sd16) == ("vgg16", "torchvision")
    net, layout, m = read_loss_network(tmp_path / "vgg16.pth")
    assert (net, layout) == ("vgg16", "torchvision")
    x = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(m(x, ["relu4_3"])["relu4_3"], v16(x, ["relu4_3"])["relu4_3"])
    with pytest.raises(ValueError, match="VGG-19"):
        load_torchvision_vgg16({**sd16, "features.34.weight": torch.zeros(1)})
    # avg pooling per call: the same as building the network with avg pools
    avg = VGG19Features(pool="avg", upto="relu2_1")
    avg.load_state_dict(v19.state_dict())
    torch.testing.assert_close(v19(x, ["relu2_1"], pool="avg")["relu2_1"], avg(x, ["relu2_1"])["relu2_1"])
    assert not torch.allclose(v19(x, ["relu2_1"])["relu2_1"], avg(x, ["relu2_1"])["relu2_1"])
    with pytest.raises(ValueError, match="not a VGG"):
        detect_layout({"conv1.conv2d.weight": torch.zeros(1)})


def test_style_loads_vgg_weights_in_either_layout(tmp_path, images):
    from styleengine.nn.vgg import NormalisedVGG

    from styleengine_gatys import GatysStyle

    torch.save(NormalisedVGG().state_dict(), tmp_path / "vgg_normalised.pth")
    s = GatysStyle(device="cpu")
    s.load_weights(tmp_path / "vgg_normalised.pth")
    assert s.model_config.layout == "normalised" and not s.random_vgg
    assert isinstance(s.modules["vgg"], NormalisedVGG)
    from styleengine.style import StyleRequest

    cfg = s.parse_config({"num_iterations": 2, "image_size": 24, "content_layers": ["relu2_1"], "style_layers": ["relu1_1", "relu2_1"], "pooling": "avg"})
    [r] = s.infer({}, [StyleRequest(images={"content": images["small"], "style": [images["style"]]}, seed=0)], cfg)
    assert r.image.shape == (18, 24, 3) and r.info["random_vgg"] is False


def test_vgg_from_the_environment_variable(tmp_path, monkeypatch):
    from styleengine.nn.vgg import VGG19Features

    from styleengine_gatys import GatysStyle

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        sd = VGG19Features().state_dict()
    torch.save(sd, tmp_path / "vgg19.pth")
    monkeypatch.setenv("STYLEENGINE_GATYS_VGG", str(tmp_path / "vgg19.pth"))
    s = GatysStyle(device="cpu")
    torch.testing.assert_close(s.modules["vgg"].state_dict()["features.0.weight"], sd["features.0.weight"])
    assert not s.random_vgg and s.model_config.network == "vgg19" and s.weights_path == tmp_path / "vgg19.pth"
    fast = GatysStyle(variant="fast")
    assert fast.needs_weights and "transformer" in fast.modules  # the variable is the loss network's only

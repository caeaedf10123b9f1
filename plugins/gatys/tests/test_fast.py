"""The fast network: reference parameter count, reference .pth import (stale running-stat keys), forward parity
with a reference-structure network built here, ONNX export parity, batched serving, training and --resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from styleengine.spec import Dim
from styleengine.style import StyleRequest
from styleengine_gatys import GatysStyle
from styleengine_gatys.nets import TransformerNet


# -- the reference's structure, written out here (pytorch/examples fast_neural_style/transformer_net.py) --------
class RefConv(nn.Module):
    def __init__(self, i, o, k, s):
        super().__init__()
        self.reflection_pad = nn.ReflectionPad2d(k // 2)
        self.conv2d = nn.Conv2d(i, o, k, s)

    def forward(self, x):
        return self.conv2d(self.reflection_pad(x))


class RefRes(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1, self.in1 = RefConv(c, c, 3, 1), nn.InstanceNorm2d(c, affine=True)
        self.conv2, self.in2 = RefConv(c, c, 3, 1), nn.InstanceNorm2d(c, affine=True)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.in2(self.conv2(self.relu(self.in1(self.conv1(x))))) + x


class RefUp(nn.Module):
    def __init__(self, i, o, k, s, up):
        super().__init__()
        self.upsample = up
        self.reflection_pad = nn.ReflectionPad2d(k // 2)
        self.conv2d = nn.Conv2d(i, o, k, s)

    def forward(self, x):
        return self.conv2d(self.reflection_pad(nn.functional.interpolate(x, mode="nearest", scale_factor=self.upsample)))


class RefTransformerNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.in1 = RefConv(3, 32, 9, 1), nn.InstanceNorm2d(32, affine=True)
        self.conv2, self.in2 = RefConv(32, 64, 3, 2), nn.InstanceNorm2d(64, affine=True)
        self.conv3, self.in3 = RefConv(64, 128, 3, 2), nn.InstanceNorm2d(128, affine=True)
        for i in range(1, 6):
            setattr(self, f"res{i}", RefRes(128))
        self.deconv1, self.in4 = RefUp(128, 64, 3, 1, 2), nn.InstanceNorm2d(64, affine=True)
        self.deconv2, self.in5 = RefUp(64, 32, 3, 1, 2), nn.InstanceNorm2d(32, affine=True)
        self.deconv3 = RefConv(32, 3, 9, 1)
        self.relu = nn.ReLU()

    def forward(self, x):
        y = self.relu(self.in1(self.conv1(x)))
        y = self.relu(self.in2(self.conv2(y)))
        y = self.relu(self.in3(self.conv3(y)))
        for i in range(1, 6):
            y = getattr(self, f"res{i}")(y)
        y = self.relu(self.in4(self.deconv1(y)))
        y = self.relu(self.in5(self.deconv2(y)))
        return self.deconv3(y)


class SmallFast(GatysStyle):
    batch = Dim("batch", 1, 2, 3)
    height = Dim("height", 16, 32, 48, multiple_of=4)
    width = Dim("width", 16, 32, 48, multiple_of=4)


@pytest.fixture(scope="module")
def reference_pth(tmp_path_factory):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(11)
        ref = RefTransformerNet()
        for m in ref.modules():  # non-trivial affine norms, so a wrong mapping shows
            if isinstance(m, nn.InstanceNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.2)
                nn.init.normal_(m.bias, 0.0, 0.2)
    sd = dict(ref.state_dict())
    for name in ("in1", "in4", "res2.in1", "res5.in2"):  # what old (torch < 0.4) files carry
        c = sd[f"{name}.weight"].numel()
        sd[f"{name}.running_mean"], sd[f"{name}.running_var"] = torch.zeros(c), torch.ones(c)
    path = tmp_path_factory.mktemp("fns") / "mosaic.pth"
    torch.save(sd, path)
    return ref.eval(), path


def test_parameter_count_equals_the_references():
    assert sum(p.numel() for p in TransformerNet().parameters()) == 1_679_235
    assert sum(p.numel() for p in RefTransformerNet().parameters()) == 1_679_235
    assert set(TransformerNet().state_dict()) == set(RefTransformerNet().state_dict())


def test_reference_pth_imports_and_matches_the_reference_forward(reference_pth):
    ref, path = reference_pth
    style = SmallFast(variant="fast")
    style.load_weights(path)
    x = torch.rand(2, 3, 36, 44) * 255
    with torch.no_grad():
        want = ref(x)
        got = style.modules["transformer"](x)
    assert (got - want).abs().max().item() <= 1e-5 * max(1.0, want.abs().max().item())
    torch.testing.assert_close(got, want, atol=1e-5 * want.abs().max().item(), rtol=0)
    from styleengine_gatys.importer import export_fast_neural_style, load_fast_neural_style

    back = load_fast_neural_style(export_fast_neural_style(style.modules["transformer"], path.parent / "back.pth"))
    assert all(torch.equal(v, ref.state_dict()[k]) for k, v in back.state_dict().items())
    with pytest.raises(ValueError, match="missing keys"):
        load_fast_neural_style({k: v for k, v in torch.load(path, weights_only=True).items() if not k.startswith("res3.")})


def test_export_parity_at_min_opt_max_and_batched_serving(reference_pth, tmp_path):
    from styleengine.export.onnx import export_graph
    from styleengine.export.validate import validate_graph
    from styleengine.runtime.base import SessionOptions
    from styleengine.runtime.onnxruntime import OrtSession
    from styleengine.runtime.torch import TorchSession

    style = SmallFast(variant="fast")
    style.load_weights(reference_pth[1])
    [spec] = style.graphs()
    assert spec.name == "transformer" and [d.name for d in spec.inputs[0].shape if isinstance(d, Dim)] == ["batch", "height", "width"]
    export_graph(spec, tmp_path / "transformer.onnx", exporter="dynamo")
    ort = OrtSession(spec, tmp_path / "transformer.onnx", SessionOptions(threads=1))
    tsess = TorchSession(spec, SessionOptions())
    rec = validate_graph(spec, tsess, ort)
    assert rec["passed"], rec
    assert rec["min"]["shapes"]["image"] == [1, 3, 16, 16] and rec["max"]["shapes"]["image"] == [3, 3, 48, 48]
    rng = np.random.default_rng(0)
    imgs = [rng.random((28, 40, 3), dtype=np.float32) for _ in range(3)] + [rng.random((30, 21, 3), dtype=np.float32)]
    reqs = [StyleRequest(images={"content": im}) for im in imgs]
    batched = style.infer({"transformer": tsess}, reqs, style.parse_config({}))
    singles = [style.infer({"transformer": tsess}, [r], style.parse_config({}))[0] for r in reqs]
    assert batched[3].image.shape == (30, 21, 3)  # not a multiple of 4: padded and cropped back
    for b, s in zip(batched, singles, strict=True):
        np.testing.assert_allclose(b.image, s.image, atol=1e-5)
    on_ort = style.infer({"transformer": ort}, reqs, style.parse_config({}))
    for b, o in zip(batched, on_ort, strict=True):
        np.testing.assert_allclose(o.image, b.image, atol=1e-3)


def _write_images(folder, n, seed):
    from gatys_helpers import smooth_image
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray((smooth_image(40 + 4 * i, 36, seed + i) * 255).astype(np.uint8)).save(folder / f"{i}.png")
    return folder


def test_short_training_lowers_the_loss_and_resumes(tmp_path):
    from styleengine.training import TrainContext

    data = _write_images(tmp_path / "content", 6, 10)
    style_img = _write_images(tmp_path / "style", 1, 50) / "0.png"
    cfg = GatysStyle.TrainConfig(allow_random_vgg=True, image_size=32, batch_size=2, epochs=4, lr=1e-2)

    def ctx(out, **kw):
        return TrainContext(out_dir=out, data={"data": data, "style": style_img}, seed=3, cpu=True, log_every=1, sample_every=6,
                            checkpoint_every=100, show_progress=False, **kw)

    with pytest.warns(UserWarning, match="RANDOM"):
        full = GatysStyle().train(cfg, ctx(tmp_path / "full"))
    assert full.steps == 12 and len(full.history) == 12
    losses = [h["loss"] for h in full.history]
    assert np.mean(losses[-3:]) < np.mean(losses[:3]), losses
    assert list((tmp_path / "full" / "samples").glob("*.png"))
    with pytest.warns(UserWarning):
        part = GatysStyle().train(cfg, ctx(tmp_path / "resumed", max_steps=5))
    assert part.steps == 5
    with pytest.warns(UserWarning):
        rest = GatysStyle().train(cfg, ctx(tmp_path / "resumed", resume=True))
    assert rest.steps == 12
    np.testing.assert_allclose([h["loss"] for h in rest.history], losses[5:], rtol=1e-4)
    served = GatysStyle(variant="fast")
    served.load_weights(rest.checkpoint)
    ref = GatysStyle(variant="fast")
    ref.load_weights(full.checkpoint)
    for k, v in served.modules["transformer"].state_dict().items():
        torch.testing.assert_close(v, ref.modules["transformer"].state_dict()[k], rtol=1e-4, atol=1e-5)
    from styleengine.runtime.base import SessionOptions
    from styleengine.runtime.torch import TorchSession

    [spec] = served.graphs()
    out = served.infer({"transformer": TorchSession(spec, SessionOptions())}, [StyleRequest(images={"content": np.full((32, 32, 3), 0.5, np.float32)})] * 2, {})
    assert len(out) == 2 and out[0].image.shape == (32, 32, 3)


def test_training_without_vgg_says_how_to_get_it(tmp_path):
    from styleengine.style import WeightsRequiredError
    from styleengine.training import TrainContext

    with pytest.raises(WeightsRequiredError, match="vgg16-397923af.pth"):
        GatysStyle().train(GatysStyle.TrainConfig(), TrainContext(out_dir=tmp_path, data={"data": tmp_path}))

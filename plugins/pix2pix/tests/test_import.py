"""Reference checkpoints (``latest_net_G.pth``) load and give identical outputs; ``engine pull``.

The reference networks are restated here module for module from junyanz/pytorch-CycleGAN-and-pix2pix
(``models/networks.py``: ``UnetSkipConnectionBlock``, ``ResnetGenerator``, ``ResnetBlock``), so the key
layout under test comes from the reference's own construction, not from ``styleengine.nn``.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from styleengine.nn import CheckpointMismatchError, define_D
from styleengine.runtime.base import SessionOptions
from styleengine.runtime.torch import TorchSession
from styleengine.style import StyleRequest
from styleengine.weights import save_checkpoint
from styleengine_pix2pix import PRETRAINED, Pix2Pix


# -- the reference's generators, restated -------------------------------------------------------------
def norm_layer(kind: str):  # noqa: ANN201
    if kind == "batch":
        return functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True)
    return functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)


def bias_for(norm) -> bool:  # noqa: ANN001
    return norm.func == nn.InstanceNorm2d


class RefUnetBlock(nn.Module):
    def __init__(self, outer_nc, inner_nc, input_nc=None, submodule=None, outermost=False, innermost=False, norm=None, use_dropout=False):  # noqa: ANN001
        super().__init__()
        self.outermost = outermost
        use_bias = bias_for(norm)
        input_nc = outer_nc if input_nc is None else input_nc
        downconv = nn.Conv2d(input_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
        downrelu, downnorm = nn.LeakyReLU(0.2, True), norm(inner_nc)
        uprelu, upnorm = nn.ReLU(True), norm(outer_nc)
        if outermost:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1)
            model = [downconv, submodule, uprelu, upconv, nn.Tanh()]
        elif innermost:
            upconv = nn.ConvTranspose2d(inner_nc, outer_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
            model = [downrelu, downconv, uprelu, upconv, upnorm]
        else:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
            model = [downrelu, downconv, downnorm, submodule, uprelu, upconv, upnorm] + ([nn.Dropout(0.5)] if use_dropout else [])
        self.model = nn.Sequential(*model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) if self.outermost else torch.cat([x, self.model(x)], 1)


class RefUnet(nn.Module):
    def __init__(self, input_nc, output_nc, num_downs, ngf, norm, use_dropout):  # noqa: ANN001
        super().__init__()
        block = RefUnetBlock(ngf * 8, ngf * 8, norm=norm, innermost=True)
        for _ in range(num_downs - 5):
            block = RefUnetBlock(ngf * 8, ngf * 8, submodule=block, norm=norm, use_dropout=use_dropout)
        block = RefUnetBlock(ngf * 4, ngf * 8, submodule=block, norm=norm)
        block = RefUnetBlock(ngf * 2, ngf * 4, submodule=block, norm=norm)
        block = RefUnetBlock(ngf, ngf * 2, submodule=block, norm=norm)
        self.model = RefUnetBlock(output_nc, ngf, input_nc=input_nc, submodule=block, outermost=True, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class RefResnetBlock(nn.Module):
    def __init__(self, dim, norm, use_dropout, use_bias):  # noqa: ANN001
        super().__init__()
        block = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, kernel_size=3, padding=0, bias=use_bias), norm(dim), nn.ReLU(True)]
        block += [nn.Dropout(0.5)] if use_dropout else []
        block += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, kernel_size=3, padding=0, bias=use_bias), norm(dim)]
        self.conv_block = nn.Sequential(*block)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class RefResnet(nn.Module):
    def __init__(self, input_nc, output_nc, ngf, norm, use_dropout, n_blocks):  # noqa: ANN001
        super().__init__()
        use_bias = bias_for(norm)
        model = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, kernel_size=7, padding=0, bias=use_bias), norm(ngf), nn.ReLU(True)]
        for i in range(2):
            mult = 2**i
            model += [nn.Conv2d(ngf * mult, ngf * mult * 2, kernel_size=3, stride=2, padding=1, bias=use_bias), norm(ngf * mult * 2), nn.ReLU(True)]
        model += [RefResnetBlock(ngf * 4, norm, use_dropout, use_bias) for _ in range(n_blocks)]
        for i in range(2):
            mult = 2 ** (2 - i)
            model += [
                nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, kernel_size=3, stride=2, padding=1, output_padding=1, bias=use_bias),
                norm(ngf * mult // 2),
                nn.ReLU(True),
            ]
        model += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, kernel_size=7, padding=0), nn.Tanh()]
        self.model = nn.Sequential(*model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def reference_net(netG: str, ngf: int, norm: str, dropout: bool, seed: int = 0, input_nc: int = 3, output_nc: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    n = norm_layer(norm)
    if netG.startswith("unet"):
        net = RefUnet(input_nc, output_nc, {"unet_256": 8, "unet_128": 7}[netG], ngf, n, dropout)
    else:
        net = RefResnet(input_nc, output_nc, ngf, n, dropout, {"resnet_9blocks": 9, "resnet_6blocks": 6}[netG])
    # trained-looking weights: non-trivial BN statistics and affine parameters
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
                m.weight.normal_(0, 0.05)
                if m.bias is not None:
                    m.bias.normal_(0, 0.05)
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
    return net


def save_reference(net: nn.Module, path: Path, *, extra_keys: dict | None = None) -> Path:
    state = net.state_dict()  # an OrderedDict with _metadata, as the reference's save_networks writes
    state.update(extra_keys or {})
    torch.save(state, path)
    return path


def torch_session(style: Pix2Pix) -> dict:
    return {s.name: TorchSession(s, SessionOptions()) for s in style.graphs()}


@pytest.mark.parametrize(
    ("netG", "norm", "size"),
    [("unet_128", "batch", 128), ("unet_256", "batch", 256), ("resnet_6blocks", "instance", 64), ("resnet_9blocks", "batch", 48)],
)
def test_reference_checkpoint_gives_identical_outputs(tmp_path: Path, netG: str, norm: str, size: int) -> None:
    ref = reference_net(netG, 4, norm, dropout=True)
    path = save_reference(ref, tmp_path / "latest_net_G.pth")
    style = Pix2Pix()  # nothing set explicitly: the architecture is read off the checkpoint
    style.load_weights(path)
    assert (style.model_config.netG, style.model_config.ngf, style.model_config.norm) == (netG, 4, norm)
    assert style.weights_sha256 and style.weights_path == path
    x = torch.rand(2, 3, size, size) * 2 - 1
    with torch.no_grad():
        expected = ref.eval()(x)  # test.py --eval
        got = torch_session(style)["generator"].run({"image": x})["output"]
    assert torch.equal(got, expected)


@pytest.mark.parametrize("netG", ["unet_128", "resnet_6blocks"])
def test_reference_variant_equals_train_mode_batch_of_one(tmp_path: Path, netG: str) -> None:
    """test.py without --eval: train-mode BatchNorm on one image (dropout off here so it is deterministic)."""
    ref = reference_net(netG, 4, "batch", dropout=False)
    path = save_reference(ref, tmp_path / "latest_net_G.pth")
    style = Pix2Pix({"no_dropout": True}, variant="reference")
    style.load_weights(path)
    x = torch.rand(3, 3, 128, 128) * 2 - 1
    got = torch_session(style)["generator"].run({"image": x})["output"]
    ref.train()
    with torch.no_grad():
        singles = torch.cat([ref(x[i : i + 1]) for i in range(3)])
    # float32 rounding only (convolutions over a batch of 3 vs 1 accumulate in another order)
    torch.testing.assert_close(got, singles, atol=1e-5, rtol=0)


def test_pre_0_4_instance_norm_and_dataparallel_checkpoints_load(tmp_path: Path) -> None:
    ref = reference_net("resnet_6blocks", 4, "instance", dropout=False)
    state = {f"module.{k}": v for k, v in ref.state_dict().items()}  # saved from a DataParallel wrapper
    for k in list(state):  # PyTorch < 0.4 saved running statistics for InstanceNorm layers
        if k.endswith("conv_block.1.weight"):
            stem = k.rsplit(".", 2)[0]
            state[f"{stem}.2.running_mean"] = torch.zeros(16)
            state[f"{stem}.2.running_var"] = torch.ones(16)
    torch.save(state, tmp_path / "old_net_G.pth")
    style = Pix2Pix()
    style.load_weights(tmp_path / "old_net_G.pth")
    assert style.model_config.norm == "instance"
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(style.modules["generator"](x), ref.eval()(x))


def test_explicit_config_that_contradicts_the_checkpoint_is_named(tmp_path: Path) -> None:
    path = save_reference(reference_net("unet_128", 4, "batch", True), tmp_path / "latest_net_G.pth")
    style = Pix2Pix({"netG": "unet_256", "ngf": 4})
    with pytest.raises(CheckpointMismatchError) as err:
        style.load_weights(path)
    msg = str(err.value)
    assert "unet_128 (input_nc=3, output_nc=3, ngf=4, norm=batch)" in msg and "netG=unet_256" in msg and "netG=unet_128" in msg


def test_broken_and_foreign_checkpoints_are_refused_clearly(tmp_path: Path) -> None:
    net = reference_net("unet_128", 4, "batch", True)
    state = net.state_dict()
    del state["model.model.1.model.2.weight"]
    torch.save(state, tmp_path / "missing.pth")
    with pytest.raises(CheckpointMismatchError, match=r"(?s)missing\.pth.*1 missing key.*model\.model\.1\.model\.2\.weight"):
        Pix2Pix().load_weights(tmp_path / "missing.pth")
    torch.save(define_D(6, 8, "basic").state_dict(), tmp_path / "latest_net_D.pth")
    with pytest.raises(ValueError, match="discriminator.*latest_net_G.pth"):
        Pix2Pix().load_weights(tmp_path / "latest_net_D.pth")
    torch.save({"foo.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not a pix2pix generator checkpoint"):
        Pix2Pix().load_weights(tmp_path / "other.pth")
    torch.save(nn.Conv2d(1, 1, 1), tmp_path / "pickled.pth")  # a pickled module: never unpickled
    with pytest.raises(Exception, match="(?i)weights_only|unpickl"):
        Pix2Pix().load_weights(tmp_path / "pickled.pth")


def test_engine_checkpoint_keeps_the_discriminator_aside(tmp_path: Path, tiny: dict) -> None:
    src = Pix2Pix(tiny)
    disc = define_D(6, 4, "basic")
    tensors = {**src.state_dict(), **{f"discriminator.{k}": v for k, v in disc.state_dict().items()}}
    save_checkpoint(tmp_path / "ckpt", tensors, style="pix2pix", model_config=src.model_config.model_dump())
    style = Pix2Pix()
    style.load_weights(tmp_path / "ckpt")
    assert style.model_config.netG == "unet_128"
    assert style.discriminator_state is not None and style.discriminator_state.keys() == disc.state_dict().keys()
    assert all(torch.equal(v, src.state_dict()[k]) for k, v in style.state_dict().items())


def test_grayscale_checkpoint(tmp_path: Path) -> None:
    ref = reference_net("unet_128", 4, "batch", True, input_nc=1, output_nc=1)
    style = Pix2Pix()
    style.load_weights(save_reference(ref, tmp_path / "g.pth"))
    assert (style.model_config.input_nc, style.model_config.output_nc) == (1, 1)
    img = np.random.default_rng(0).random((128, 128, 3), dtype=np.float32)
    [res] = style.infer(torch_session(style), [StyleRequest({"image": img})], style.Config())
    luma = torch.from_numpy(img @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[None, None] * 2 - 1
    with torch.no_grad():
        expected = ((ref.eval()(luma)[0, 0] + 1) / 2).clamp(0, 1).numpy()
    assert res.image.shape == (128, 128, 3)
    np.testing.assert_allclose(res.image[..., 0], expected, atol=1e-6)
    assert np.array_equal(res.image[..., 0], res.image[..., 2])


# -- engine pull ------------------------------------------------------------------------------------------
def test_pretrained_table_is_the_reference_release() -> None:
    assert set(PRETRAINED) == {"facades_label2photo", "sat2map", "map2sat", "edges2shoes", "day2night"}
    for name, item in PRETRAINED.items():
        assert item.url == f"http://efrosgans.eecs.berkeley.edu/pix2pix/models-pytorch/{name}.pth"
        assert item.sha256 is None  # not published: documented in styleengine_pix2pix.importer
        assert item.model_config["netG"] == "unet_256" and item.model_config["norm"] == "batch"
    assert PRETRAINED["facades_label2photo"].model_config["direction"] == "BtoA"


def test_pull_offline_fails_with_a_clear_message(engine_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STYLEENGINE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("STYLEENGINE_OFFLINE", "1")
    code, out, err = engine_cli("pull", "pix2pix:facades_label2photo")
    assert code == 1 and "offline mode: cannot download http://efrosgans.eecs.berkeley.edu/pix2pix/models-pytorch/facades_label2photo.pth" in err
    assert "Traceback" not in err
    code, _, err = engine_cli("pull", "p2p:cats2dogs")
    assert code == 1 and "available: day2night, edges2shoes, facades_label2photo, map2sat, sat2map" in err


def test_pull_converts_a_downloaded_reference_file(engine_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, photo: Path) -> None:
    """The download itself is faked (no network in tests); the import and conversion are real."""
    monkeypatch.setenv("STYLEENGINE_CACHE", str(tmp_path / "cache"))
    ref = reference_net("unet_256", 64, "batch", True)

    def fake_download(url: str, dest: Path, sha256: str | None = None, timeout: float = 60.0) -> Path:
        assert url.endswith("/edges2shoes.pth") and sha256 is None
        dest.parent.mkdir(parents=True, exist_ok=True)
        return save_reference(ref, dest)

    monkeypatch.setattr("styleengine.pull.download_checked", fake_download)
    code, out, err = engine_cli("pull", "pix2pix:edges2shoes", "--out", tmp_path / "edges2shoes")
    assert code == 0, err
    style = Pix2Pix()
    style.load_weights(tmp_path / "edges2shoes")
    x = torch.rand(1, 3, 256, 256) * 2 - 1
    with torch.no_grad():
        assert torch.equal(style.modules["generator"](x), ref.eval()(x))

"""Reference checkpoints (``latest_net_G.pth`` + ``latest_net_E.pth``) load and give the same outputs; ``engine pull``.

The reference networks are restated here from junyanz/BicycleGAN's ``models/networks.py`` (``G_Unet_add_all`` /
``UnetBlock_with_z``, ``G_Unet_add_input`` / ``UnetBlock``, ``E_ResNet`` / ``BasicBlock``, ``E_NLayers``), so the
key layout under test comes from the reference's own construction, not from ``styleengine.nn``.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from styleengine.nn import CheckpointMismatchError
from styleengine.pull import Pretrained
from styleengine.runtime.base import SessionOptions
from styleengine.runtime.torch import TorchSession
from styleengine.style import StyleRequest
from styleengine_bicyclegan import PRETRAINED, BicycleGAN


# -- the reference's networks, restated ---------------------------------------------------------------
def norm_factory(kind: str):  # noqa: ANN201
    if kind == "batch":
        return functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True)
    if kind == "instance":
        return functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
    return None


def nl_factory(kind: str):  # noqa: ANN201
    return {"relu": functools.partial(nn.ReLU, inplace=True), "lrelu": functools.partial(nn.LeakyReLU, 0.2, inplace=True),
            "elu": functools.partial(nn.ELU, inplace=True)}[kind]


def up_layers(cin: int, cout: int, kind: str) -> list[nn.Module]:
    if kind == "basic":
        return [nn.ConvTranspose2d(cin, cout, 4, 2, 1)]
    return [nn.Upsample(scale_factor=2, mode="bilinear"), nn.ReflectionPad2d(1), nn.Conv2d(cin, cout, 3, 1, 0)]


class RefBlockZ(nn.Module):  # UnetBlock_with_z
    def __init__(self, cin, outer, inner, nz, sub, outermost=False, innermost=False, norm=None, nl=None, dropout=False, up="basic"):  # noqa: ANN001
        super().__init__()
        self.outermost, self.innermost, self.nz = outermost, innermost, nz
        downconv = [nn.Conv2d(cin + nz, inner, 4, 2, 1)]
        if outermost:
            down, ups = downconv, [nl(), *up_layers(inner * 2, outer, up), nn.Tanh()]
        elif innermost:
            down = [nn.LeakyReLU(0.2, True), *downconv]
            ups = [nl(), *up_layers(inner, outer, up)] + ([norm(outer)] if norm else [])
        else:
            down = [nn.LeakyReLU(0.2, True), *downconv] + ([norm(inner)] if norm else [])
            ups = [nl(), *up_layers(inner * 2, outer, up)] + ([norm(outer)] if norm else []) + ([nn.Dropout(0.5)] if dropout else [])
        self.down, self.submodule, self.up = nn.Sequential(*down), sub, nn.Sequential(*ups)

    def forward(self, x, z):  # noqa: ANN001, ANN201
        xz = torch.cat([x, z.view(z.size(0), z.size(1), 1, 1).expand(z.size(0), z.size(1), x.size(2), x.size(3))], 1) if self.nz else x
        if self.outermost:
            return self.up(self.submodule(self.down(xz), z))
        if self.innermost:
            return torch.cat([self.up(self.down(xz)), x], 1)
        return torch.cat([self.up(self.submodule(self.down(xz), z)), x], 1)


class RefAddAll(nn.Module):  # G_Unet_add_all
    def __init__(self, input_nc, output_nc, nz, num_downs, ngf, norm, nl, dropout, up):  # noqa: ANN001
        super().__init__()
        kw = {"norm": norm, "nl": nl, "up": up}
        b = RefBlockZ(ngf * 8, ngf * 8, ngf * 8, nz, None, innermost=True, **kw)
        b = RefBlockZ(ngf * 8, ngf * 8, ngf * 8, nz, b, dropout=dropout, **kw)
        for _ in range(num_downs - 6):
            b = RefBlockZ(ngf * 8, ngf * 8, ngf * 8, nz, b, dropout=dropout, **kw)
        b = RefBlockZ(ngf * 4, ngf * 4, ngf * 8, nz, b, **kw)
        b = RefBlockZ(ngf * 2, ngf * 2, ngf * 4, nz, b, **kw)
        b = RefBlockZ(ngf, ngf, ngf * 2, nz, b, **kw)
        self.model = RefBlockZ(input_nc, output_nc, ngf, nz, b, outermost=True, **kw)

    def forward(self, x, z):  # noqa: ANN001, ANN201
        return self.model(x, z)


class RefBlock(nn.Module):  # UnetBlock (G_Unet_add_input)
    def __init__(self, cin, outer, inner, sub=None, outermost=False, innermost=False, norm=None, nl=None, dropout=False, up="basic"):  # noqa: ANN001
        super().__init__()
        self.outermost = outermost
        downconv = [nn.Conv2d(cin, inner, 4, 2, 1)]
        if outermost:
            layers = [*downconv, sub, nl(), *up_layers(inner * 2, outer, up), nn.Tanh()]
        elif innermost:
            layers = [nn.LeakyReLU(0.2, True), *downconv, nl(), *up_layers(inner, outer, up)] + ([norm(outer)] if norm else [])
        else:
            layers = [nn.LeakyReLU(0.2, True), *downconv] + ([norm(inner)] if norm else []) + [sub, nl(), *up_layers(inner * 2, outer, up)]
            layers += ([norm(outer)] if norm else []) + ([nn.Dropout(0.5)] if dropout else [])
        self.model = nn.Sequential(*layers)

    def forward(self, x):  # noqa: ANN001, ANN201
        return self.model(x) if self.outermost else torch.cat([self.model(x), x], 1)


class RefAddInput(nn.Module):  # G_Unet_add_input
    def __init__(self, input_nc, output_nc, nz, num_downs, ngf, norm, nl, dropout, up):  # noqa: ANN001
        super().__init__()
        self.nz = nz
        kw = {"norm": norm, "nl": nl, "up": up}
        b = RefBlock(ngf * 8, ngf * 8, ngf * 8, innermost=True, **kw)
        for _ in range(num_downs - 5):
            b = RefBlock(ngf * 8, ngf * 8, ngf * 8, b, dropout=dropout, **kw)
        b = RefBlock(ngf * 4, ngf * 4, ngf * 8, b, **kw)
        b = RefBlock(ngf * 2, ngf * 2, ngf * 4, b, **kw)
        b = RefBlock(ngf, ngf, ngf * 2, b, **kw)
        self.model = RefBlock(input_nc + nz, output_nc, ngf, b, outermost=True, **kw)

    def forward(self, x, z):  # noqa: ANN001, ANN201
        return self.model(torch.cat([x, z.view(z.size(0), z.size(1), 1, 1).expand(z.size(0), z.size(1), x.size(2), x.size(3))], 1))


class RefBasicBlock(nn.Module):
    def __init__(self, cin, cout, norm, nl):  # noqa: ANN001
        super().__init__()
        layers = ([norm(cin)] if norm else []) + [nl(), nn.Conv2d(cin, cin, 3, 1, 1)] + ([norm(cin)] if norm else [])
        layers += [nl(), nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1), nn.AvgPool2d(2, 2))]
        self.conv = nn.Sequential(*layers)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(cin, cout, 1, 1, 0))

    def forward(self, x):  # noqa: ANN001, ANN201
        return self.conv(x) + self.shortcut(x)


class RefEResNet(nn.Module):
    def __init__(self, input_nc, nz, nef, n_blocks, norm):  # noqa: ANN001
        super().__init__()
        nl = nl_factory("lrelu")
        layers = [nn.Conv2d(input_nc, nef, 4, 2, 1)]
        for n in range(1, n_blocks):
            layers.append(RefBasicBlock(nef * min(4, n), nef * min(4, n + 1), norm, nl))
            out = nef * min(4, n + 1)
        layers += [nl(), nn.AvgPool2d(8)]
        self.fc = nn.Sequential(nn.Linear(out, nz))
        self.fcVar = nn.Sequential(nn.Linear(out, nz))
        self.conv = nn.Sequential(*layers)

    def forward(self, x):  # noqa: ANN001, ANN201
        flat = self.conv(x).view(x.size(0), -1)
        return self.fc(flat), self.fcVar(flat)


class RefENLayers(nn.Module):
    def __init__(self, input_nc, nz, nef, n_layers, norm):  # noqa: ANN001
        super().__init__()
        nl = nl_factory("lrelu")
        layers, mult = [nn.Conv2d(input_nc, nef, 4, 2, 1), nl()], 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 4)
            layers += [nn.Conv2d(nef * prev, nef * mult, 4, 2, 1)] + ([norm(nef * mult)] if norm else []) + [nl()]
        layers.append(nn.AvgPool2d(8))
        self.conv = nn.Sequential(*layers)
        self.fc = nn.Sequential(nn.Linear(nef * mult, nz))
        self.fcVar = nn.Sequential(nn.Linear(nef * mult, nz))

    def forward(self, x):  # noqa: ANN001, ANN201
        flat = self.conv(x).view(x.size(0), -1)
        return self.fc(flat), self.fcVar(flat)


def reference_nets(
    netG: str = "unet_128", where_add: str = "all", ngf: int = 4, nz: int = 8, norm: str = "instance", nl: str = "relu", up: str = "basic",
    netE: str = "resnet_128", nef: int = 4, input_nc: int = 3, output_nc: int = 3, seed: int = 0,
) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(seed)
    depth = {"unet_256": 8, "unet_128": 7}[netG]
    cls = RefAddAll if where_add == "all" else RefAddInput
    G = cls(input_nc, output_nc, nz, depth, ngf, norm_factory(norm), nl_factory(nl), True, up)
    kind, n = {"resnet_256": ("r", 5), "resnet_128": ("r", 4), "conv_256": ("c", 5), "conv_128": ("c", 4)}[netE]
    E = (RefEResNet if kind == "r" else RefENLayers)(output_nc, nz, nef, n, norm_factory(norm))
    with torch.no_grad():  # trained-looking weights: nothing zero, non-trivial BN statistics
        for m in [*G.modules(), *E.modules()]:
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
                m.weight.normal_(0, 0.08)
                m.bias.normal_(0, 0.05)
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
    return G.eval(), E.eval()


def stale_instance_norm_keys(net: nn.Module) -> dict[str, torch.Tensor]:
    """What PyTorch < 0.4 saved for every InstanceNorm2d layer (the reference's loader drops them)."""
    return {f"{name}.{k}": v for name, m in net.named_modules() if isinstance(m, nn.InstanceNorm2d)
            for k, v in (("running_mean", torch.zeros(m.num_features)), ("running_var", torch.ones(m.num_features)))}


def save_reference(G: nn.Module, E: nn.Module | None, folder: Path, prefix: str = "latest", stale: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    g = G.state_dict()  # an OrderedDict with _metadata, as the reference's save_networks writes
    if stale:
        g.update(stale_instance_norm_keys(G))
    torch.save(g, folder / f"{prefix}_net_G.pth")
    if E is not None:
        e = E.state_dict()
        if stale:
            e.update(stale_instance_norm_keys(E))
        torch.save(e, folder / f"{prefix}_net_E.pth")
    return folder


def sessions(style: BicycleGAN) -> dict:
    return {s.name: TorchSession(s, SessionOptions()) for s in style.graphs()}


CASES = [
    # (generator / encoder options, image side, stale InstanceNorm keys)
    ({}, 128, True),
    ({"where_add": "input", "up": "bilinear", "netE": "conv_128", "nl": "lrelu"}, 128, True),
    ({"norm": "batch", "input_nc": 1}, 256, False),
    ({"netG": "unet_256", "netE": "resnet_256", "ngf": 2, "nef": 2, "nz": 4, "output_nc": 1}, 256, True),
]


@pytest.mark.parametrize(("opts", "side", "stale"), CASES)
def test_reference_checkpoint_gives_the_same_outputs(tmp_path: Path, opts: dict, side: int, stale: bool) -> None:
    G, E = reference_nets(**opts)
    folder = save_reference(G, E, tmp_path / "pretrained", stale=stale)
    if stale:  # the file carries InstanceNorm running statistics, as PyTorch < 0.4 wrote them
        assert any(k.endswith("running_mean") for k in torch.load(folder / "latest_net_G.pth", weights_only=True))
    style = BicycleGAN()  # nothing set explicitly: the architecture is read off the keys
    if "nl" in opts:  # the non-linearity leaves no trace in the weights: configured (or read from opt.txt)
        style = BicycleGAN({"nl": opts["nl"]})
    style.load_weights(folder)
    mc = style.model_config
    want = {"where_add": "all", "netG": "unet_128", "ngf": 4, "nz": 8, "upsample": "basic", "netE": "resnet_128", "nef": 4, "input_nc": 3,
            "output_nc": 3, **{("upsample" if k == "up" else k): v for k, v in opts.items()}}
    assert {k: getattr(mc, k) for k in want} == want
    x = torch.rand(3, mc.input_nc, side, side) * 2 - 1
    z = torch.randn(3, mc.nz)
    b = torch.rand(3, mc.output_nc, mc.encoder_size, mc.encoder_size) * 2 - 1
    s = sessions(style)
    with torch.no_grad():
        got = s["generator"].run({"image": x, "z": z})["output"]
        expected = G(x, z)
        got_e = s["encoder"].run({"image": b})
        mu, logvar = E(b)
    assert (got - expected).abs().max() <= 1e-5
    assert (got_e["mu"] - mu).abs().max() <= 1e-5 and (got_e["logvar"] - logvar).abs().max() <= 1e-5
    # and the ONNX-free graphs differ for another z (z reaches the output)
    with torch.no_grad():
        other = s["generator"].run({"image": x, "z": torch.randn(3, mc.nz)})["output"]
    assert (other - got).abs().max() > 1e-3


@pytest.mark.parametrize(
    "cfg",
    [
        {"netG": "unet_256", "netE": "resnet_256", "ngf": 64, "nef": 64},
        {"netG": "unet_256", "where_add": "input", "netE": "conv_256", "ngf": 64, "nef": 64},
        {"netG": "unet_128", "netE": "resnet_128", "upsample": "bilinear", "norm": "batch", "ngf": 64, "nef": 64},
    ],
)
def test_parameter_counts_equal_the_reference_structure(cfg: dict) -> None:
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    with torch.device("meta"):
        ours = BicycleGAN(cfg).build()
        depth = {"unet_256": 8, "unet_128": 7}[cfg["netG"]]
        cls = RefAddAll if cfg.get("where_add", "all") == "all" else RefAddInput
        G = cls(3, 3, 8, depth, 64, norm_factory(cfg.get("norm", "instance")), nl_factory("relu"), True, cfg.get("upsample", "basic"))
        kind, k = {"resnet_256": ("r", 5), "resnet_128": ("r", 4), "conv_256": ("c", 5), "conv_128": ("c", 4)}[cfg["netE"]]
        E = (RefEResNet if kind == "r" else RefENLayers)(3, 8, 64, k, norm_factory(cfg.get("norm", "instance")))
    assert n(ours["generator"]) == n(G) and n(ours["encoder"]) == n(E)
    assert list(ours["generator"].state_dict()) == list(G.state_dict())  # same keys, same order
    assert list(ours["encoder"].state_dict()) == list(E.state_dict())


def test_generator_file_with_encoder_beside_it_and_generator_alone(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    G, E = reference_nets()
    save_reference(G, E, tmp_path / "ckpt", prefix="30")  # <epoch>_net_G.pth / <epoch>_net_E.pth
    style = BicycleGAN()
    style.load_weights(tmp_path / "ckpt" / "30_net_G.pth")
    b = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        assert torch.allclose(style.modules["encoder"](b)[0], E(b)[0], atol=1e-6)
    save_reference(G, None, tmp_path / "g_only")
    alone = BicycleGAN()
    with caplog.at_level(logging.WARNING):
        alone.load_weights(tmp_path / "g_only")
    assert "no encoder checkpoint" in caplog.text
    x, z = torch.rand(1, 3, 128, 128), torch.randn(1, 8)
    with torch.no_grad():
        assert (alone.modules["generator"](x, z) - G(x, z)).abs().max() <= 1e-5


def test_options_file_beside_the_checkpoint_sets_what_weights_cannot_tell(tmp_path: Path) -> None:
    G, E = reference_nets(nl="elu")
    folder = save_reference(G, E, tmp_path / "run")
    (folder / "opt.txt").write_text(
        "----------------- Options ---------------\n"
        f"{'nl':>25}: {'elu':<30}\t[default: relu]\n"
        f"{'use_dropout':>25}: {'True':<30}\t[default: False]\n"
        f"{'norm':>25}: {'instance':<30}\n"
        "----------------- End -------------------\n"
    )
    style = BicycleGAN()
    style.load_weights(folder)
    assert style.model_config.nl == "elu" and style.model_config.use_dropout
    x, z = torch.rand(2, 3, 128, 128) * 2 - 1, torch.randn(2, 8)
    with torch.no_grad():
        assert (style.modules["generator"](x, z) - G(x, z)).abs().max() <= 1e-5


def test_explicit_config_that_contradicts_the_checkpoint_is_named(tmp_path: Path) -> None:
    folder = save_reference(*reference_nets(), tmp_path / "m")
    with pytest.raises(CheckpointMismatchError) as err:
        BicycleGAN({"netG": "unet_256", "ngf": 4}).load_weights(folder)
    msg = str(err.value)
    assert "netG=unet_256" in msg and "use netG=unet_128" in msg


def test_broken_and_foreign_checkpoints_are_refused_clearly(tmp_path: Path) -> None:
    G, E = reference_nets()
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no generator checkpoint"):
        BicycleGAN().load_weights(tmp_path / "empty")
    state = G.state_dict()
    del state["model.submodule.up.1.weight"]
    (tmp_path / "missing").mkdir()
    torch.save(state, tmp_path / "missing" / "latest_net_G.pth")
    with pytest.raises(CheckpointMismatchError, match=r"(?s)latest_net_G\.pth.*1 missing key.*model\.submodule\.up\.1\.weight"):
        BicycleGAN().load_weights(tmp_path / "missing")
    torch.save(E.state_dict(), tmp_path / "enc_net_G.pth")
    with pytest.raises(ValueError, match="holds an encoder"):
        BicycleGAN().load_weights(tmp_path / "enc_net_G.pth")
    torch.save({"foo.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not a BicycleGAN generator checkpoint"):
        BicycleGAN().load_weights(tmp_path / "other.pth")
    mismatch = save_reference(G, reference_nets(nz=4)[1], tmp_path / "mix")
    with pytest.raises(ValueError, match="are not one model"):
        BicycleGAN().load_weights(mismatch)
    torch.save(nn.Conv2d(1, 1, 1), tmp_path / "pickled_net_G.pth")  # a pickled module: never unpickled
    with pytest.raises(Exception, match="(?i)weights_only|unpickl"):
        BicycleGAN().load_weights(tmp_path / "pickled_net_G.pth")


def test_imported_weights_run_the_pipeline_like_the_reference_test_script(tmp_path: Path) -> None:
    """test.py's encoded result: G(A, E(B).mu); a random sample: G(A, z) with the seeded z."""
    G, E = reference_nets()
    style = BicycleGAN()
    style.load_weights(save_reference(G, E, tmp_path / "m"))
    rng = np.random.default_rng(0)
    a, b = rng.random((128, 128, 3), dtype=np.float32), rng.random((128, 128, 3), dtype=np.float32)
    s = sessions(style)
    [enc] = style.infer(s, [StyleRequest({"image": a, "style": b})], style.Config())
    [rand] = style.infer(s, [StyleRequest({"image": a}, seed=4)], style.Config(n_samples=2))
    A, B = torch.from_numpy(a).permute(2, 0, 1)[None] * 2 - 1, torch.from_numpy(b).permute(2, 0, 1)[None] * 2 - 1
    with torch.no_grad():
        want_enc = ((G(A, E(B)[0])[0].permute(1, 2, 0) + 1) / 2).clamp(0, 1).numpy()
        z = torch.randn(2, 8, generator=torch.Generator().manual_seed(4))
        want_rand = ((G(A.expand(2, -1, -1, -1), z).permute(0, 2, 3, 1) + 1) / 2).clamp(0, 1).numpy()
    assert enc.info["z_source"] == "encoded" and np.abs(enc.image - want_enc).max() <= 1e-5
    assert rand.seed == 4 and len(rand.images) == 2
    for k in range(2):
        assert np.abs(rand.images[k] - want_rand[k]).max() <= 1e-5


# -- engine pull ------------------------------------------------------------------------------------------
def test_pretrained_table_is_the_reference_release() -> None:
    assert set(PRETRAINED) == {"edges2shoes", "edges2handbags", "night2day", "maps", "facades"}
    for name, item in PRETRAINED.items():
        assert item.url == f"http://efrosgans.eecs.berkeley.edu/BicycleGAN//models/{name}_net_G.pth" and item.filename == "latest_net_G.pth"
        [enc] = item.companions
        assert enc.url.endswith(f"/{name}_net_E.pth") and enc.filename == "latest_net_E.pth"
        assert item.sha256 is None and enc.sha256 is None  # not published: documented in styleengine_bicyclegan.importer
        assert item.model_config["netG"] == "unet_256" and item.model_config["where_add"] == "all"
    assert PRETRAINED["edges2shoes"].model_config["input_nc"] == 1 and PRETRAINED["facades"].model_config["direction"] == "BtoA"
    assert PRETRAINED["maps"].model_config["direction"] == "BtoA" and "512" in PRETRAINED["maps"].description


def test_pull_offline_fails_with_a_clear_message(engine_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STYLEENGINE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("STYLEENGINE_OFFLINE", "1")
    code, out, err = engine_cli("pull", "bicyclegan:edges2shoes")
    assert code == 1 and "offline mode: cannot download http://efrosgans.eecs.berkeley.edu/BicycleGAN//models/edges2shoes_net_G.pth" in err
    assert "Traceback" not in err
    code, _, err = engine_cli("pull", "bicyclegan:cats2dogs")
    assert code == 1 and "available: edges2handbags, edges2shoes, facades, maps, night2day" in err


def test_pull_converts_downloaded_reference_files(engine_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The download is faked (no network in tests) and the entry made tiny; the import and conversion are real."""
    monkeypatch.setenv("STYLEENGINE_CACHE", str(tmp_path / "cache"))
    G, E = reference_nets(input_nc=1)
    real = PRETRAINED["edges2shoes"]
    tiny = Pretrained(real.url, None, real.description, {"input_nc": 1, "netG": "unet_128"}, real.filename, real.companions)
    monkeypatch.setitem(BicycleGAN.pretrained, "edges2shoes", tiny)

    def fake_download(url: str, dest: Path, sha256: str | None = None, timeout: float = 60.0) -> Path:
        dest.parent.mkdir(parents=True, exist_ok=True)
        torch.save((G if url.endswith("_net_G.pth") else E).state_dict(), dest)
        return dest

    monkeypatch.setattr("styleengine.pull.download_checked", fake_download)
    code, out, err = engine_cli("pull", "bicyclegan:edges2shoes", "--out", tmp_path / "edges2shoes")
    assert code == 0, err
    style = BicycleGAN()
    style.load_weights(tmp_path / "edges2shoes")  # an engine checkpoint now: safetensors + config.json
    assert style.model_config.input_nc == 1 and style.model_config.ngf == 4
    x, z, b = torch.rand(1, 1, 128, 128), torch.randn(1, 8), torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        assert (style.modules["generator"](x, z) - G(x, z)).abs().max() <= 1e-5
        assert (style.modules["encoder"](b)[0] - E(b)[0]).abs().max() <= 1e-5


def test_add_input_generator_alone_takes_nz_from_the_config(tmp_path: Path) -> None:
    """G_Unet_add_input's first conv holds image and z channels together: without an encoder (whose fc width is nz)
    or opt.txt, nz is the configured one."""
    G, _ = reference_nets(where_add="input", nz=4, up="bilinear")
    folder = save_reference(G, None, tmp_path / "g")
    style = BicycleGAN({"nz": 4})
    style.load_weights(folder)
    assert (style.model_config.where_add, style.model_config.nz, style.model_config.input_nc, style.model_config.upsample) == ("input", 4, 3, "bilinear")
    x, z = torch.rand(2, 3, 128, 128) * 2 - 1, torch.randn(2, 4)
    with torch.no_grad():
        assert (style.modules["generator"](x, z) - G(x, z)).abs().max() <= 1e-5
    with pytest.raises(ValueError, match="input_nc=-1"):  # the default nz 8 cannot split 7 channels into image + z
        BicycleGAN().load_weights(folder)

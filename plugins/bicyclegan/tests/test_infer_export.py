"""Export parity of both graphs, the pipeline over Sessions (z sources, seeds, sync, interpolation, batching) on
torch and ONNX Runtime, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from styleengine.data import read_image
from styleengine.export.manifest import Manifest
from styleengine.export.options import ExportOptions, ExportProfile
from styleengine.export.pipeline import export_style
from styleengine.plugins import load_engine
from styleengine.preprocess import resize, to_tensor
from styleengine.runtime.base import SessionOptions
from styleengine.runtime.onnxruntime import OrtSession
from styleengine.runtime.torch import TorchSession
from styleengine.style import StyleRequest
from styleengine_bicyclegan import DEFAULT_SEED, BicycleGAN, Config
from styleengine_bicyclegan.pipeline import draw_z, interpolate

TINY = {"netG": "unet_128", "ngf": 4, "nef": 4, "netE": "resnet_128"}
#: Small dims for tests: max shapes stay cheap.
SMALL = ExportProfile(name="test-small", dims={"batch": {"min": 1, "opt": 2, "max": 4}, "height": {"min": 128, "opt": 128, "max": 256},
                                               "width": {"min": 128, "opt": 128, "max": 256}})


def trained_looking(style: BicycleGAN) -> BicycleGAN:
    """Larger weights than the xavier(0.02) init, so outputs depend visibly on z and on the input."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in [*style.modules["generator"].modules(), *style.modules["encoder"].modules()]:
            if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d | torch.nn.Linear):
                m.weight.normal_(0, 0.1, generator=g)
    return style


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[BicycleGAN, Path]:
    style = trained_looking(BicycleGAN(TINY))
    folder = tmp_path_factory.mktemp("art") / "default"
    res = export_style(load_engine(), style, ExportOptions(out_dir=folder, profile=SMALL))
    assert res.passed
    return style, folder


def sessions(style: BicycleGAN, folder: Path, runtime: str) -> dict:
    specs = {s.name: SMALL.apply(s) for s in style.graphs()}
    if runtime == "torch":
        return {n: TorchSession(s, SessionOptions()) for n, s in specs.items()}
    return {n: OrtSession(s, folder / f"{n}.onnx", SessionOptions()) for n, s in specs.items()}


def requests(n: int, size: tuple[int, int] = (100, 120), seed0: int = 10, style_image: bool = False) -> list[StyleRequest]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        images = {"image": rng.random((*size, 3), dtype=np.float32)}
        if style_image:
            images["style"] = rng.random((60, 80, 3), dtype=np.float32)
        out.append(StyleRequest(images, seed=seed0 + i, id=f"r{i}"))
    return out


def test_export_parity_at_min_opt_max_for_both_graphs(exported) -> None:
    style, folder = exported
    m = Manifest.load(folder)
    gen, enc = m.graphs["generator"], m.graphs["encoder"]
    assert gen.exporter == enc.exporter == "torchscript"
    assert [t["name"] for t in gen.spec["inputs"]] == ["image", "z"] and [t["name"] for t in enc.spec["outputs"]] == ["mu", "logvar"]
    for point, (image_shape, z_shape) in {"min": ([1, 3, 128, 128], [1, 8]), "opt": ([2, 3, 128, 128], [2, 8]), "max": ([4, 3, 256, 256], [4, 8])}.items():
        assert gen.parity[point]["shapes"] == {"image": image_shape, "z": z_shape}
        stats = gen.parity[point]["outputs"]["output"]
        assert stats["passed"] and stats["max_abs"] <= 1e-4 and stats["psnr"] >= 80, (point, stats)
        assert enc.parity[point]["shapes"]["image"] == [image_shape[0], 3, 128, 128]  # the encoder's one size
        for out in ("mu", "logvar"):
            assert enc.parity[point]["outputs"][out]["passed"] and enc.parity[point]["outputs"][out]["max_abs"] <= 1e-4
    assert m.verify_files(folder) == []


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime"])
def test_a_batch_equals_its_single_requests(exported, runtime: str) -> None:
    style, folder = exported
    sess = sessions(style, folder, runtime)
    reqs = requests(5)  # 5 requests x 2 samples = 10 rows: chunks of 8 + 2 rows (the batch Dim's max is 8)
    calls = []
    run = sess["generator"].run
    sess["generator"].run = lambda feeds: calls.append(tuple(feeds["z"].shape)) or run(feeds)  # type: ignore[method-assign]
    cfg = Config(n_samples=2)
    batched = style.infer(sess, reqs, cfg)
    assert calls == [(8, 8), (2, 8)]
    for req, got in zip(reqs, batched, strict=True):
        [alone] = style.infer(sess, [req], cfg)
        assert got.seed == alone.seed == req.seed
        for a, b in zip(got.images, alone.images, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)
    mixed = style.infer(sess, requests(2, style_image=True), cfg)  # encoded requests batch alike
    for req, got in zip(requests(2, style_image=True), mixed, strict=True):
        np.testing.assert_allclose(got.image, style.infer(sess, [req], cfg)[0].image, atol=1e-5, rtol=0)


def test_z_sources_seeds_and_sync(exported) -> None:
    style, folder = exported
    sess = sessions(style, folder, "torch")
    reqs = requests(2)
    res = style.infer(sess, reqs, Config(n_samples=3))
    a = res[0]
    assert len(a.images) == 3 and a.image.shape == (100, 360, 3) and a.info["z_source"] == "random"
    assert torch.equal(torch.tensor(a.info["z"]), draw_z(10, 3, 8))  # the request's seed, host-drawn
    assert all(np.abs(a.images[0] - a.images[k]).max() > 1e-2 for k in (1, 2))  # different z, different images
    again = style.infer(sess, reqs, Config(n_samples=3))[0]  # the same call again: bitwise the same
    assert all(np.array_equal(x, y) for x, y in zip(a.images, again.images, strict=True))  # same seed, same images
    assert res[1].info["z"] != a.info["z"]  # another seed
    synced = style.infer(sess, reqs, Config(n_samples=3, sync=True, sync_seed=7))
    assert synced[0].info["z"] == synced[1].info["z"] == draw_z(7, 3, 8).tolist() and synced[0].seed == 7
    [unseeded] = style.infer(sess, [StyleRequest(reqs[0].images)], Config(n_samples=1))
    assert unseeded.seed == DEFAULT_SEED and unseeded.images is None and unseeded.image.shape == (100, 120, 3)
    z = [[0.5] * 8, [-0.5] * 8]
    [explicit] = style.infer(sess, reqs[:1], Config(z=z))
    assert explicit.info["z_source"] == "explicit" and explicit.seed is None and explicit.info["z"] == z and len(explicit.images) == 2
    with pytest.raises(ValueError, match="nz=8"):
        style.infer(sess, reqs[:1], Config(z=[0.1] * 5))


def test_encode_then_decode_the_mean_is_the_cvae_path(exported) -> None:
    """z = E(B).mu (eps = 0 in mu + eps * exp(logvar / 2)) then G(A, z): what training's cVAE-GAN path computes."""
    style, folder = exported
    [req] = requests(1, size=(128, 128), style_image=True)
    for runtime in ("torch", "onnxruntime"):
        [res] = style.infer(sessions(style, folder, runtime), [req], Config())
        assert res.info["z_source"] == "encoded" and res.images is None and res.seed is None
        A = to_tensor(req.image("image"))
        B = resize(to_tensor(req.image("style")), (128, 128))
        with torch.no_grad():
            mu, logvar = style.modules["encoder"](B)
            want = ((style.modules["generator"](A, mu)[0].permute(1, 2, 0) + 1) / 2).clamp(0, 1).numpy()
        np.testing.assert_allclose(res.info["z"], mu.tolist(), atol=1e-4)
        assert np.abs(res.image - want).max() <= 1e-4
    [explicit] = style.infer(sessions(style, folder, "torch"), [req], Config(z=mu[0].tolist()))
    np.testing.assert_allclose(explicit.image, res.image, atol=1e-4)


def test_interpolation_strip(exported) -> None:
    style, folder = exported
    sess = sessions(style, folder, "torch")
    [req] = requests(1)
    [strip] = style.infer(sess, [req], Config(frames=5, grid=True, grid_cols=3))
    assert strip.images is None and strip.image.shape == (200, 360, 3) and strip.info["z_source"] == "random-interpolation"
    ends = draw_z(req.seed, 2, 8)
    zs = torch.tensor(strip.info["z"])
    assert zs.shape == (5, 8) and torch.allclose(zs[0], ends[0], atol=1e-6) and torch.allclose(zs[-1], ends[1], atol=1e-6)
    [pair] = style.infer(sess, [req], Config(n_samples=2))
    np.testing.assert_allclose(strip.image[:100, :120], pair.images[0], atol=1e-5)  # first frame = first draw
    assert np.all(strip.image[100:, 240:] == 1.0)  # the empty cell of the second row is white
    lin = interpolate(ends[0], ends[1], 3, "linear")
    assert torch.allclose(lin[1], (ends[0] + ends[1]) / 2, atol=1e-6)
    slerp = interpolate(ends[0], ends[1], 3)
    assert not torch.allclose(slerp[1], lin[1], atol=1e-3)
    [from_example] = style.infer(sess, requests(1, style_image=True), Config(frames=3))
    assert from_example.info["z_source"] == "encoded-interpolation" and len(from_example.images) == 3


def test_same_seed_same_images_on_every_runtime(exported) -> None:
    style, folder = exported
    reqs = requests(2)
    by_rt = {rt: style.infer(sessions(style, folder, rt), reqs, Config(n_samples=2)) for rt in ("torch", "onnxruntime")}
    for a, b in zip(by_rt["torch"], by_rt["onnxruntime"], strict=True):
        assert a.info["z"] == b.info["z"]
        for x, y in zip(a.images, b.images, strict=True):
            np.testing.assert_allclose(x, y, atol=1e-4)


# -- the CLI ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from styleengine.weights import save_checkpoint

    style = trained_looking(BicycleGAN(TINY))
    path = tmp_path_factory.mktemp("weights") / "tiny"
    return save_checkpoint(path, style.state_dict(), style="bicyclegan", model_config=style.model_config.model_dump())


def test_cli_export_and_infer_on_torch_and_onnxruntime(engine_cli, tmp_path: Path, photo: Path, example: Path, tiny_weights: Path) -> None:
    profile = tmp_path / "small.yaml"
    profile.write_text("dims:\n  batch: {min: 1, opt: 1, max: 4}\n  height: {min: 128, opt: 128, max: 256}\n  width: {min: 128, opt: 128, max: 256}\n")
    art = tmp_path / "art"
    code, out, err = engine_cli("export", "bicyclegan", "--weights", tiny_weights, "--profile", profile, "--out", art)
    assert code == 0, err
    assert "parity ok" in err and set(Manifest.load(art).graphs) == {"generator", "encoder"}
    outputs: dict[str, list[np.ndarray]] = {}
    for runtime in ("torch", "onnxruntime"):
        code, out, err = engine_cli(
            "infer", "bicyclegan", photo, "--weights", tiny_weights, "--runtime", runtime, "--artifacts", art, "--seed", "7",
            "--set", "n_samples=3", "-o", tmp_path / runtime,
        )
        assert code == 0, err
        dests = [Path(line) for line in out.strip().splitlines()]
        assert dests == [tmp_path / runtime / f"photo.bicyclegan.sample-{k}.png" for k in (1, 2, 3)]
        outputs[runtime] = [read_image(d).array for d in dests]
    assert outputs["torch"][0].shape == (90, 130, 3)
    for a, b in zip(outputs["torch"], outputs["onnxruntime"], strict=True):
        assert np.abs(a - b).max() <= 1 / 255 + 1e-6  # same up to PNG rounding
    assert np.abs(outputs["torch"][0] - outputs["torch"][1]).max() > 0.05
    code, out, err = engine_cli(
        "infer", "bicyclegan", photo, "--weights", tiny_weights, "--runtime", "onnxruntime", "--artifacts", art,
        "--image", f"style={example}", "--set", "frames=4", "--set", "grid=true", "-o", tmp_path / "grid",
    )
    assert code == 0, err
    [dest] = [Path(line) for line in out.strip().splitlines()]
    assert dest == tmp_path / "grid" / "photo.bicyclegan.png" and read_image(dest).array.shape == (90, 4 * 130, 3)
    manifest = json.loads((art / "manifest.json").read_text())
    assert manifest["model_config"]["netG"] == "unet_128" and manifest["weights"]["sha256"]


def test_cli_refuses_random_weights_and_names_the_way_out(engine_cli, photo: Path) -> None:
    code, _, err = engine_cli("infer", "bicyclegan", photo)
    assert code == 1 and "engine pull bicyclegan:edges2shoes" in err and "--allow-random-weights" in err

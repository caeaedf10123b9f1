"""Export parity, the pipeline over Sessions (batching, seeds, sizes) on torch and ONNX Runtime, the CLI."""

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
from styleengine.runtime.base import SessionOptions
from styleengine.runtime.onnxruntime import OrtSession
from styleengine.runtime.torch import TorchSession
from styleengine.style import StyleRequest
from styleengine_pix2pix import DEFAULT_SEED, Pix2Pix

REPO = Path(__file__).resolve().parents[3]
#: Small dims for tests: max shapes stay cheap (unet_128 / resnet).
SMALL = ExportProfile(name="test-small", dims={"batch": {"min": 1, "opt": 1, "max": 4}, "height": {"min": 128, "opt": 128, "max": 256}, "width": {"min": 128, "opt": 128, "max": 256}})


@pytest.fixture(scope="module")
def engine():  # noqa: ANN201
    return load_engine()


@pytest.fixture(scope="module")
def exported(engine, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Pix2Pix, Path]]:
    """The tiny model exported in both variants (random weights, seeded init), validated at min/opt/max."""
    out = {}
    for variant in ("eval", "reference"):
        style = Pix2Pix({"netG": "unet_128", "ngf": 4}, variant=variant)
        folder = tmp_path_factory.mktemp("art") / variant
        res = export_style(engine, style, ExportOptions(out_dir=folder, profile=SMALL))
        assert res.passed
        out[variant] = (style, folder)
    return out


def sessions(style: Pix2Pix, folder: Path, runtime: str) -> dict:
    [spec] = style.graphs()
    if runtime == "torch":
        return {"generator": TorchSession(spec, SessionOptions())}
    return {"generator": OrtSession(spec, folder / "generator.onnx", SessionOptions())}


def requests(n: int, size: tuple[int, int] = (100, 120), seed0: int = 10) -> list[StyleRequest]:
    rng = np.random.default_rng(0)
    return [StyleRequest({"image": rng.random((*size, 3), dtype=np.float32)}, seed=seed0 + i, id=f"r{i}") for i in range(n)]


@pytest.mark.parametrize("variant", ["eval", "reference"])
def test_export_parity_at_min_opt_max(exported, variant: str) -> None:
    style, folder = exported[variant]
    m = Manifest.load(folder)
    rec = m.graphs["generator"]
    assert m.variant == variant and rec.exporter == "torchscript"
    names = ["image"] + (["dropout_0", "dropout_1"] if variant == "reference" else [])
    assert rec.spec["inputs"][0]["name"] == "image" and [t["name"] for t in rec.spec["inputs"]] == names
    for point, image_shape in (("min", [1, 3, 128, 128]), ("opt", [1, 3, 128, 128]), ("max", [4, 3, 256, 256])):
        stats = rec.parity[point]["outputs"]["output"]
        assert rec.parity[point]["shapes"]["image"] == image_shape
        assert stats["passed"] and stats["max_abs"] <= 1e-4 and stats["psnr"] >= 80, (point, stats)
    if variant == "reference":
        assert rec.parity["max"]["shapes"]["dropout_1"] == [4, 32, 16, 16]  # Derived: height / 16
    assert m.verify_files(folder) == []


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime"])
def test_reference_batch_of_four_equals_four_single_runs_exactly(exported, runtime: str) -> None:
    style, folder = exported["reference"]
    sess = sessions(style, folder, runtime)
    reqs = requests(4)
    batched = style.infer(sess, reqs, style.Config())
    assert {r.info["size"][0] for r in batched} == {128}  # one stack of four
    for req, got in zip(reqs, batched, strict=True):
        [alone] = style.infer(sess, [req], style.Config())
        # Same masks, same per-image statistics: equal up to float32 accumulation order in the conv kernels
        # (bitwise equal for this batch of 4 on torch and ONNX Runtime on x86; ~1e-7 apart for odd batches).
        np.testing.assert_allclose(got.image, alone.image, atol=1e-6, rtol=0)
        assert got.seed == req.seed
    assert not np.array_equal(batched[0].image, batched[1].image)


def test_same_seed_same_image_on_every_runtime(exported) -> None:
    style, folder = exported["reference"]
    reqs = requests(3)
    by_rt = {rt: style.infer(sessions(style, folder, rt), reqs, style.Config()) for rt in ("torch", "onnxruntime")}
    for a, b in zip(by_rt["torch"], by_rt["onnxruntime"], strict=True):
        np.testing.assert_allclose(a.image, b.image, atol=1e-4)
    sess = sessions(style, folder, "torch")
    reseeded = style.infer(sess, [StyleRequest(reqs[0].images, seed=999)], style.Config())[0]
    assert not np.allclose(reseeded.image, by_rt["torch"][0].image, atol=1e-3)  # dropout masks follow the seed
    unseeded = style.infer(sess, [StyleRequest(reqs[0].images, seed=None)], style.Config())[0]
    default = style.infer(sess, [StyleRequest(reqs[0].images, seed=DEFAULT_SEED)], style.Config())[0]
    assert unseeded.seed == DEFAULT_SEED and np.array_equal(unseeded.image, default.image)


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime"])
def test_eval_variant_is_deterministic_and_batch_independent(exported, runtime: str) -> None:
    style, folder = exported["eval"]
    sess = sessions(style, folder, runtime)
    reqs = requests(3)
    batched = style.infer(sess, reqs, style.Config())
    for req, got in zip(reqs, batched, strict=True):
        [alone] = style.infer(sess, [StyleRequest(req.images, seed=12345)], style.Config())  # seed is ignored
        np.testing.assert_allclose(got.image, alone.image, atol=1e-6)


def test_sizes_are_fitted_and_restored(exported) -> None:
    style, folder = exported["eval"]
    sess = sessions(style, folder, "onnxruntime")
    rng = np.random.default_rng(3)
    shapes = [(100, 120), (200, 90), (256, 256), (37, 300)]
    reqs = [StyleRequest({"image": rng.random((*s, 3), dtype=np.float32)}) for s in shapes]
    res = style.infer(sess, reqs, style.Config())
    assert [r.image.shape[:2] for r in res] == shapes
    assert [r.info["size"] for r in res] == [[128, 128], [256, 128], [256, 256], [128, 256]]  # nearest multiples in [128, 256]
    assert all(r.image.dtype == np.float32 and 0 <= r.image.min() and r.image.max() <= 1 for r in res)
    [fixed] = style.infer(sess, reqs[1:2], style.Config(size=256))  # the reference test.py: square at load_size
    assert fixed.info["size"] == [256, 256] and fixed.image.shape[:2] == (200, 90)


def test_more_requests_than_the_batch_dim_are_chunked(tiny: dict) -> None:
    style = Pix2Pix(tiny, variant="reference")
    sess = {"generator": TorchSession(style.graphs()[0], SessionOptions())}
    calls = []
    run = sess["generator"].run
    sess["generator"].run = lambda feeds: calls.append(feeds["image"].shape[0]) or run(feeds)  # type: ignore[method-assign]
    res = style.infer(sess, requests(10), style.Config())
    assert len(res) == 10 and calls == [8, 2]


def test_repository_profiles_apply() -> None:
    for path in sorted((REPO / "export" / "profiles").glob("pix2pix*.yaml")):
        profile = ExportProfile.load(path)
        netG = "unet_256" if "small" not in path.name and "demo" not in path.name else "unet_128"
        [spec] = Pix2Pix({"netG": netG, "ngf": 2}, variant="reference").graphs()
        applied = profile.apply(spec)
        assert applied.dims["height"].multiple_of == spec.dims["height"].multiple_of, path


# -- the CLI ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from styleengine.weights import save_checkpoint

    style = Pix2Pix({"netG": "unet_128", "ngf": 4})
    with torch.no_grad():  # non-trivial BN statistics, as after training
        for m in style.modules["generator"].modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 2.0)
    path = tmp_path_factory.mktemp("weights") / "tiny"
    return save_checkpoint(path, style.state_dict(), style="pix2pix", model_config=style.model_config.model_dump())


@pytest.mark.parametrize("variant", ["eval", "reference"])
def test_cli_export_and_infer_on_torch_and_onnxruntime(engine_cli, tmp_path: Path, photo: Path, tiny_weights: Path, variant: str) -> None:
    profile = tmp_path / "small.yaml"
    profile.write_text("dims:\n  batch: {min: 1, opt: 1, max: 2}\n  height: {min: 128, opt: 128, max: 256}\n  width: {min: 128, opt: 128, max: 256}\n")
    art = tmp_path / "art"
    code, out, err = engine_cli("export", "p2p", "--weights", tiny_weights, "--variant", variant, "--profile", profile, "--out", art)
    assert code == 0, err
    assert "parity ok" in err and Manifest.load(art).variant == variant
    outputs = {}
    for runtime in ("torch", "onnxruntime"):
        code, out, err = engine_cli(
            "infer", "pix2pix", photo, "--weights", tiny_weights, "--variant", variant, "--runtime", runtime,
            "--artifacts", art, "--seed", "7", "-o", tmp_path / runtime,
        )
        assert code == 0, err
        dest = Path(out.strip().splitlines()[-1])
        assert dest == tmp_path / runtime / "photo.pix2pix.png"
        outputs[runtime] = read_image(dest).array
    assert outputs["torch"].shape == (90, 130, 3)
    assert np.abs(outputs["torch"] - outputs["onnxruntime"]).max() <= 1 / 255 + 1e-6  # same up to PNG rounding
    manifest = json.loads((art / "manifest.json").read_text())
    assert manifest["model_config"]["netG"] == "unet_128" and manifest["weights"]["sha256"]


def test_cli_refuses_random_weights_and_names_the_way_out(engine_cli, photo: Path) -> None:
    code, _, err = engine_cli("infer", "pix2pix", photo)
    assert code == 1 and "engine pull pix2pix:facades_label2photo" in err and "--allow-random-weights" in err

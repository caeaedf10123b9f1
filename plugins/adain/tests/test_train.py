"""Training: tiny folders, a few steps, loss going down, identical resume, encoder rules, preflight, the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from adain_helpers import SmallAdaIN, engine, smooth_image

from styleengine.data import DatasetError, save_image
from styleengine.nn.vgg import NormalisedVGG
from styleengine.preprocess import to_tensor
from styleengine.style import WeightsRequiredError
from styleengine.training import TrainContext
from styleengine.training.checkpoint import latest_checkpoint
from styleengine_adain.config import STYLE_WEIGHT
from styleengine_adain.nets import init_random_encoder_
from styleengine_adain.style import TrainConfig
from styleengine_adain.train import FolderStream

TINY = {"batch_size": 2, "load_size": 48, "crop_size": 32, "num_workers": 2}  # the reference lr (1e-4)


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("adain_data")
    for key, n, seed in (("content", 3, 10), ("style", 2, 20)):
        (root / key).mkdir()
        for i in range(n):
            save_image(root / key / f"{i}.png", smooth_image(64, 56 + 8 * i, seed + i))
    torch.save(init_random_encoder_(NormalisedVGG(upto="relu4_1")).state_dict(), root / "vgg_normalised.pth")
    return root


def context(out: Path, folders: dict[str, Path] | Path, **kw) -> TrainContext:
    root = Path(folders)
    kw = {"sample_every": 100, "checkpoint_every": 100, **kw}
    return TrainContext(out_dir=out, data={"content": root / "content", "style": root / "style"}, cpu=True, show_progress=False, **kw)


def eval_loss(style: SmallAdaIN, folders: Path) -> float:
    """Weighted loss on a fixed batch (the same for every call)."""
    content = torch.cat([to_tensor(smooth_image(32, 32, 50 + i), (0, 1)) for i in range(2)])
    style_img = torch.cat([to_tensor(smooth_image(32, 32, 60 + i), (0, 1)) for i in range(2)])
    with torch.no_grad():
        loss_c, loss_s = style.net().loss(content, style_img)
    return float(loss_c + STYLE_WEIGHT * loss_s)


def test_short_run_lowers_the_loss_and_resumes_identically(folders, tmp_path):
    cfg = TrainConfig(vgg=str(folders / "vgg_normalised.pth"), **TINY)
    straight = SmallAdaIN()
    straight.modules["encoder"].load_state_dict(torch.load(folders / "vgg_normalised.pth", weights_only=True))
    before = eval_loss(straight, folders)
    result = straight.train(cfg, context(tmp_path / "a", folders, max_steps=4, sample_every=2, checkpoint_every=3))
    assert result.steps == 4 and not result.interrupted and len(result.history) == 4
    assert eval_loss(straight, folders) < before
    assert [h["lr"] for h in result.history][:2] == [1e-4, pytest.approx(1e-4 / (1 + 5e-5))]
    assert sorted(p.name for p in (tmp_path / "a" / "samples").iterdir()) == ["step-0000002.png", "step-0000004.png"]
    assert sorted(p.name for p in (tmp_path / "a" / "checkpoints").glob("step-*")) == ["step-0000003", "step-0000004"]
    assert latest_checkpoint(tmp_path / "a" / "checkpoints").name == "step-0000004"

    # stop at step 2 (a checkpoint), then resume in a new process-like setting: new Style, new context
    first = SmallAdaIN()
    first.train(cfg, context(tmp_path / "b", folders, max_steps=2))
    resumed = SmallAdaIN()
    again = resumed.train(TrainConfig(**TINY), context(tmp_path / "b", folders, max_steps=4, resume=True))
    assert again.steps == 4 and [h["step"] for h in again.history] == [3, 4]
    assert [h["loss"] for h in again.history] == [h["loss"] for h in result.history[2:]]
    for key, value in straight.modules["decoder"].state_dict().items():
        assert torch.equal(value, resumed.modules["decoder"].state_dict()[key]), key

    # the final checkpoint is an engine checkpoint: --weights accepts it
    loaded = SmallAdaIN()
    loaded.load_weights(result.checkpoint)
    assert eval_loss(loaded, folders) == eval_loss(straight, folders)


def test_data_order_is_a_function_of_seed_and_step(folders):
    files = sorted((folders / "content").iterdir())
    a = FolderStream(files, 2, 48, 32, seed=0, stream=0)
    b = FolderStream(files, 2, 48, 32, seed=0, stream=0)
    plans = [a.plan(s) for s in range(6)]
    assert [b.plan(s) for s in reversed(range(6))] == plans[::-1]
    # each epoch (3 files) is a permutation: steps 0..2 draw every file twice
    drawn = [p for plan in plans[:3] for p, _, _ in plan]
    assert sorted(drawn) == sorted(files * 2)
    assert all(0 <= top <= 16 and 0 <= left <= 16 for plan in plans for _, top, left in plan)
    assert a.sample(*plans[0][0]).shape == (3, 32, 32)


def test_encoder_must_be_real_unless_allowed(folders, tmp_path):
    with pytest.raises(WeightsRequiredError, match=r"--set vgg=.*allow_random_encoder"):
        SmallAdaIN().train(TrainConfig(**TINY), context(tmp_path / "x", folders, max_steps=1))
    with pytest.warns(UserWarning, match="RANDOM encoder"):
        res = SmallAdaIN().train(TrainConfig(allow_random_encoder=True, **TINY), context(tmp_path / "y", folders, max_steps=1))
    assert res.steps == 1


def test_preflight_of_both_folders(folders, tmp_path):
    root = tmp_path / "data"
    for key in ("content", "style"):
        (root / key).mkdir(parents=True)
        for p in (folders / key).iterdir():
            (root / key / p.name).write_bytes(p.read_bytes())
    (root / "style" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    cfg = TrainConfig(vgg=str(folders / "vgg_normalised.pth"), **TINY)
    with pytest.raises(DatasetError, match="broken.png"):
        SmallAdaIN().train(cfg, context(tmp_path / "run", root, max_steps=1))
    res = SmallAdaIN().train(cfg, context(tmp_path / "run2", root, max_steps=1, on_bad_file="skip"))
    assert res.steps == 1


def test_config_validation():
    with pytest.raises(ValueError, match="larger than load_size"):
        TrainConfig(load_size=64, crop_size=128)
    with pytest.raises(ValueError):
        TrainConfig(crop_size=30)  # not a multiple of 8
    cfg = TrainConfig()
    assert (cfg.lr, cfg.lr_decay, cfg.batch_size, cfg.style_weight, cfg.content_weight, cfg.load_size, cfg.crop_size) == (
        1e-4, 5e-5, 8, 10.0, 1.0, 512, 256)


def test_cli_train_takes_content_and_style_folders(folders, tmp_path, capsys):
    args = ["train", "adain", "--content", folders / "content", "--style", folders / "style", "--set", "batch_size=1",
            "--set", "load_size=32", "--set", "crop_size=16", "--max-steps", "2", "--out", tmp_path / "run", "--no-progress", "--cpu"]
    code, out, err = engine(capsys, *args, "--set", f"vgg={folders / 'vgg_normalised.pth'}")
    assert code == 0, err
    assert Path(out.strip().splitlines()[-1]).name == "step-0000002"
    code, out, err = engine(capsys, *args)
    assert code == 1 and "vgg_normalised.pth" in err and "Traceback" not in err

"""Training: dataset formats, preflight, the reference's augmentation and schedule, checkpoints, resume,
Ctrl-C, and the final checkpoint with ``--weights``."""

from __future__ import annotations

import json
import random
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from styleengine.data import DatasetError
from styleengine.data.paired import PairDataset, discover, epoch_batches, get_params, prepare, transform
from styleengine.training import TrainContext
from styleengine.training.gan import linear_rule
from styleengine_pix2pix import Pix2Pix, TrainConfig


def context(out: Path, data: Path, **kw) -> TrainContext:  # noqa: ANN003
    kw.setdefault("show_progress", False)
    kw.setdefault("sample_every", 1000)
    kw.setdefault("checkpoint_every", 1000)
    return TrainContext(out_dir=out, data={"data": data}, **kw)


def train(cfg: TrainConfig, ctx: TrainContext):  # noqa: ANN201
    return Pix2Pix(cfg.model).train(cfg, ctx)


def test_cli_train_then_infer_with_the_final_checkpoint(engine_cli, tmp_path: Path, make_aligned, photo: Path, tiny_train: dict) -> None:
    data = make_aligned(tmp_path / "facades", n=4, phases=("train", "val", "test"))
    sets = [a for k, v in tiny_train.items() for a in ("--set", f"{k}={v}")]
    code, out, err = engine_cli("train", "pix2pix", "--data", data, *sets, "--out", tmp_path / "run", "--sample-every", "2", "--no-progress")
    assert code == 0, err
    ckpt = Path(out.strip().splitlines()[-1])
    assert ckpt == tmp_path / "run" / "checkpoints" / "step-0000004"  # 2 epochs x 2 batches of 2
    assert "training finished after 4 steps" in err and "G_GAN" in err and "D_fake" in err
    weights = load_file(str(ckpt / "model.safetensors"))
    assert "generator.model.model.0.weight" in weights and "discriminator.model.0.weight" in weights
    config = json.loads((ckpt / "config.json").read_text())
    assert config["style"] == "pix2pix" and config["model"]["netG"] == "unet_128" and config["model"]["ngf"] == 4
    grid = Image.open(tmp_path / "run" / "samples" / "step-0000002.png")
    assert grid.size == (3 * 130 + 2, 2 * 130 + 2)  # rows of input | output | target
    log = [json.loads(line) for line in (tmp_path / "run" / "loss_log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 4 and set(log[-1]) >= {"G_GAN", "G_L1", "D_real", "D_fake", "lr", "epoch"}
    code, out, err = engine_cli("infer", "pix2pix", photo, "--weights", ckpt, "-o", tmp_path / "out")
    assert code == 0, err
    style = Pix2Pix()
    style.load_weights(ckpt)  # the discriminator is set aside, the generator loads
    assert style.discriminator_state is not None and style.model_config.ngf == 4


def test_resume_continues_exactly(tmp_path: Path, make_aligned, tiny_train: dict) -> None:
    """4 steps straight == 2 steps, stop, resume for 2 more: bitwise, weights and optimiser state
    (across an epoch boundary: 3 pairs, batch 2 -> 2 steps per epoch, so the LR schedule steps too)."""
    data = make_aligned(tmp_path / "data", n=3)
    cfg = TrainConfig(**{**tiny_train, "n_epochs": 1, "n_epochs_decay": 3})
    straight = train(cfg, context(tmp_path / "a", data, max_steps=4))
    first = train(cfg, context(tmp_path / "b", data, max_steps=2))
    assert first.steps == 2 and first.checkpoint.name == "step-0000002"
    resumed = train(cfg, context(tmp_path / "b", data, max_steps=4, resume=True))
    assert straight.steps == resumed.steps == 4
    for name in ("model.safetensors", "training_state.safetensors"):
        a, b = load_file(str(straight.checkpoint / name)), load_file(str(resumed.checkpoint / name))
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    state = json.loads((resumed.checkpoint / "training_state.json").read_text())
    assert state["step"] == 4 and state["epoch"] == 2 and state["extra"]["epoch_step"] == 0
    assert straight.metrics == resumed.metrics


def test_ctrl_c_saves_and_stops_then_resume_finishes(tmp_path: Path, make_aligned, tiny_train: dict) -> None:
    data = make_aligned(tmp_path / "data", n=4)
    cfg = TrainConfig(**tiny_train)

    def interrupt(step: int, losses: dict) -> None:
        if step == 1:
            signal.raise_signal(signal.SIGINT)  # what Ctrl-C sends; the context's handler sets `interrupted`

    ctx = context(tmp_path / "run", data, extra={"on_step": interrupt})
    res = train(cfg, ctx)
    assert res.interrupted and res.steps == 1 and res.checkpoint.name == "step-0000001"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    done = train(cfg, context(tmp_path / "run", data, resume=True))
    assert not done.interrupted and done.steps == 4


def test_separate_folders_and_direction(tmp_path: Path, make_separate, tiny_train: dict) -> None:
    data = make_separate(tmp_path / "data", n=3)
    pairs, problems, layout = discover(data)
    assert layout == "separate folders A + B" and not problems and [p.a.name for p in pairs] == ["000.png", "001.png", "002.png"]
    base = {**tiny_train, "preprocess": "none", "no_flip": True}
    ab = PairDataset(prepare(data, TrainConfig(**base), "fail"), TrainConfig(**base), multiple=128, input_nc=3, output_nc=3, seed=0)
    ba_cfg = TrainConfig(**base, direction="BtoA")
    ba = PairDataset(prepare(data, ba_cfg, "fail"), ba_cfg, multiple=128, input_nc=3, output_nc=3, seed=0)
    (x_ab, y_ab), (x_ba, y_ba) = ab[(0, 0)], ba[(0, 0)]
    assert x_ab.shape == (3, 128, 128)  # "none": rounded to the generator's multiple
    assert torch.equal(x_ab, y_ba) and torch.equal(y_ab, x_ba)
    assert (x_ab + y_ab).abs().mean() < 0.15 < (x_ab - y_ab).abs().mean()  # B is the inverted A (up to JPEG)
    res = train(TrainConfig(**tiny_train, direction="BtoA"), context(tmp_path / "run", data, max_steps=1))
    assert json.loads((res.checkpoint / "config.json").read_text())["model"]["direction"] == "BtoA"


def test_layouts_are_discovered(tmp_path: Path, make_aligned, make_separate) -> None:
    make_aligned(tmp_path / "aligned", n=2, phases=("train", "val"))
    assert discover(tmp_path / "aligned")[2] == "aligned A|B images in train/"
    assert discover(tmp_path / "aligned", "val")[2] == "aligned A|B images in val/"
    make_separate(tmp_path / "nested" / "train", n=2)
    assert discover(tmp_path / "nested")[2] == "separate folders train/A + train/B"
    make_separate(tmp_path / "flat", n=2)
    assert discover(tmp_path / "flat")[2] == "separate folders A + B"
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no training pairs found"):
        discover(tmp_path / "empty")


def test_bad_files_are_reported_by_path(tmp_path: Path, make_separate, tiny_train: dict, caplog: pytest.LogCaptureFixture) -> None:
    data = make_separate(tmp_path / "data", n=4)
    corrupt = data / "A" / "001.png"
    corrupt.write_bytes(corrupt.read_bytes()[:60])  # truncated PNG
    orphan = data / "A" / "extra.png"
    Image.new("RGB", (8, 8)).save(orphan)
    cfg = TrainConfig(**tiny_train)
    with pytest.raises(DatasetError) as err:
        train(cfg, context(tmp_path / "run", data))
    msg = str(err.value)
    assert str(corrupt) in msg and str(orphan) in msg and "no matching file in" in msg and "2 bad" in msg
    assert {b.path for b in err.value.bad} == {corrupt, orphan}
    assert not (tmp_path / "run" / "checkpoints").exists()  # nothing ran
    res = train(cfg, context(tmp_path / "run", data, on_bad_file="skip", max_steps=1))
    assert res.steps == 1
    assert str(corrupt) in caplog.text and str(orphan) in caplog.text


def test_reference_augmentation(tiny_train: dict) -> None:
    cfg = TrainConfig(**tiny_train)  # resize_and_crop 136 -> 128, flips
    img = Image.fromarray(np.arange(40 * 60 * 3, dtype=np.uint8).reshape(40, 60, 3))
    params = get_params(cfg, img.size, random.Random(3))
    x = transform(img, cfg, params, 128, grayscale=False)
    assert x.shape == (3, 128, 128) and -1 <= x.min() and x.max() <= 1
    resized = img.resize((136, 136), Image.BICUBIC)
    cx, cy = params["crop_pos"]
    crop = np.asarray(resized.crop((cx, cy, cx + 128, cy + 128)), dtype=np.float32)
    if params["flip"]:
        crop = crop[:, ::-1]
    np.testing.assert_allclose(x.numpy(), (crop.transpose(2, 0, 1) / 255 - 0.5) / 0.5, atol=1e-6)
    flips = {get_params(cfg, img.size, random.Random(s))["flip"] for s in range(20)}
    assert flips == {True, False}
    assert transform(img, cfg, params, 128, grayscale=True).shape == (1, 128, 128)
    # a pair always gets the same crop and flip: one draw per (seed, epoch, index)
    assert epoch_batches(5, 2, seed=1, epoch=0) == epoch_batches(5, 2, seed=1, epoch=0) != epoch_batches(5, 2, seed=1, epoch=1)
    assert [len(b) for b in epoch_batches(5, 2, seed=1, epoch=0)] == [2, 2, 1]


def test_linear_schedule_is_the_references() -> None:
    rule = linear_rule(n_epochs=3, n_epochs_decay=3)
    # reference: lr_l = 1 - max(0, epoch + epoch_count - n_epochs) / (n_epochs_decay + 1), epoch_count = 1
    assert [round(rule(e), 6) for e in range(6)] == [1.0, 1.0, 1.0, 0.75, 0.5, 0.25]


def test_lr_decays_per_epoch_during_training(tmp_path: Path, make_aligned, tiny_train: dict) -> None:
    data = make_aligned(tmp_path / "data", n=2)
    cfg = TrainConfig(**{**tiny_train, "n_epochs": 1, "n_epochs_decay": 2, "lr": 1e-3})
    res = train(cfg, context(tmp_path / "run", data, log_every=1))
    assert [(h["epoch"], round(h["lr"], 8)) for h in res.history] == [(1, round(1e-3 * 2 / 3, 8)), (2, round(1e-3 / 3, 8)), (3, 0.0)]

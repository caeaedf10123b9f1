"""Training: the reference's losses and batch split, a short CPU run lowering the losses, sample grids, checkpoints,
exact resume (saved step and RNG), Ctrl-C, preflight, and the final checkpoint with --weights."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError
from safetensors.torch import load_file

from styleengine.data import DatasetError
from styleengine.training import TrainContext
from styleengine_bicyclegan import BicycleGAN, TrainConfig
from styleengine_bicyclegan.train import LOSS_NAMES


def context(out: Path, data: Path, **kw) -> TrainContext:  # noqa: ANN003
    kw.setdefault("show_progress", False)
    kw.setdefault("sample_every", 1000)
    kw.setdefault("checkpoint_every", 1000)
    return TrainContext(out_dir=out, data={"data": data}, **kw)


def train(cfg: TrainConfig, ctx: TrainContext):  # noqa: ANN201
    return BicycleGAN(cfg.model).train(cfg, ctx)


def test_cli_train_then_infer_with_the_final_checkpoint(engine_cli, tmp_path: Path, make_aligned, photo: Path, tiny_train: dict) -> None:
    data = make_aligned(tmp_path / "shoes", n=4)
    sets = [a for k, v in tiny_train.items() for a in ("--set", f"{k}={v}")]
    code, out, err = engine_cli("train", "bicyclegan", "--data", data, *sets, "--out", tmp_path / "run", "--sample-every", "2", "--no-progress")
    assert code == 0, err
    ckpt = Path(out.strip().splitlines()[-1])
    assert ckpt == tmp_path / "run" / "checkpoints" / "step-0000004"  # 2 epochs x 2 batches of 2
    assert "training finished after 4 steps" in err and all(name in err for name in LOSS_NAMES)
    weights = load_file(str(ckpt / "model.safetensors"))
    for prefix in ("generator.model.down.0.weight", "encoder.fc.0.weight", "discriminator.model_0.0.weight", "discriminator2.model_1.0.weight"):
        assert prefix in weights
    state = json.loads((ckpt / "training_state.json").read_text())
    assert set(state["optimizers"]) == {"generator", "encoder", "discriminator", "discriminator2"} and state["rng"]
    config = json.loads((ckpt / "config.json").read_text())
    assert config["style"] == "bicyclegan" and config["model"]["netG"] == "unet_128" and config["model"]["use_dropout"] is True
    grid = Image.open(tmp_path / "run" / "samples" / "step-0000002.png")
    # one row per input (batch of 2): A | B | encoded | 4 random z, 128 px cells with 2 px gaps
    assert grid.size == (7 * 130 + 2, 2 * 130 + 2)
    log = [json.loads(line) for line in (tmp_path / "run" / "loss_log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 4 and set(log[-1]) >= {*LOSS_NAMES, "lr", "epoch"}
    code, out, err = engine_cli("infer", "bicyclegan", photo, "--weights", ckpt, "--set", "n_samples=2", "-o", tmp_path / "out")
    assert code == 0, err
    assert [Path(p).name for p in out.split()] == ["photo.bicyclegan.sample-1.png", "photo.bicyclegan.sample-2.png"]
    style = BicycleGAN()
    style.load_weights(ckpt)  # the discriminators are set aside, G and E load
    assert set(style.training_state) == {"discriminator", "discriminator2"} and style.model_config.ngf == 4


def test_a_short_run_lowers_the_losses(tmp_path: Path, make_aligned, tiny_train: dict) -> None:
    data = make_aligned(tmp_path / "data", n=8)
    cfg = TrainConfig(**{**tiny_train, "batch_size": 4, "niter": 10, "niter_decay": 0, "lr": 2e-3, "no_flip": True, "use_dropout": False})
    res = train(cfg, context(tmp_path / "run", data, log_every=1, max_steps=16, sample_every=8))
    hist = res.history
    assert len(hist) == 16 and all(np.isfinite([h[k] for h in hist for k in LOSS_NAMES]))
    first, last = hist[:3], hist[-3:]
    mean = lambda rows, k: float(np.mean([r[k] for r in rows]))  # noqa: E731
    assert mean(last, "G_L1") < 0.8 * mean(first, "G_L1")  # the cVAE reconstruction learns
    assert mean(last, "D") < mean(first, "D") and mean(last, "D2") < mean(first, "D2")  # both discriminators learn
    assert sorted(p.name for p in (tmp_path / "run" / "samples").iterdir()) == ["step-0000008.png", "step-0000016.png"]


def test_resume_continues_from_the_saved_step_with_the_saved_rng(tmp_path: Path, make_aligned, tiny_train: dict) -> None:
    """4 steps straight == 2 steps, stop, resume for 2 more: bitwise, weights and optimiser state (across an epoch
    boundary: 5 pairs, batch 2 -> 2 full batches per epoch, the odd one skipped, so the LR schedule steps too).
    eps, z_random and dropout come from the global RNG: equality needs the RNG state saved and restored."""
    data = make_aligned(tmp_path / "data", n=5)
    cfg = TrainConfig(**{**tiny_train, "niter": 1, "niter_decay": 3})
    straight = train(cfg, context(tmp_path / "a", data, max_steps=4))
    first = train(cfg, context(tmp_path / "b", data, max_steps=2))
    assert first.steps == 2 and first.checkpoint.name == "step-0000002"
    torch.manual_seed(12345)  # whatever happens to the RNG in between, resume restores the saved state
    torch.rand(100)
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
            signal.raise_signal(signal.SIGINT)

    res = train(cfg, context(tmp_path / "run", data, extra={"on_step": interrupt}))
    assert res.interrupted and res.steps == 1 and res.checkpoint.name == "step-0000001"
    done = train(cfg, context(tmp_path / "run", data, resume=True))
    assert not done.interrupted and done.steps == 4


def test_odd_batch_sizes_are_refused_clearly(engine_cli, tmp_path: Path, make_aligned, tiny_train: dict) -> None:
    with pytest.raises(ValidationError, match="batch_size must be even, got 3: BicycleGAN trains half of each batch"):
        TrainConfig(**{**tiny_train, "batch_size": 3})
    data = make_aligned(tmp_path / "data", n=2)
    code, _, err = engine_cli("train", "bicyclegan", "--data", data, "--set", "batch_size=5", "--out", tmp_path / "run")
    assert code != 0 and "batch_size must be even" in err and "Traceback" not in err


def test_bad_files_are_reported_by_path_before_training(tmp_path: Path, make_aligned, tiny_train: dict) -> None:
    data = make_aligned(tmp_path / "data", n=4)
    corrupt = data / "train" / "001.png"
    corrupt.write_bytes(corrupt.read_bytes()[:60])  # truncated PNG
    with pytest.raises(DatasetError) as err:
        train(TrainConfig(**tiny_train), context(tmp_path / "run", data))
    assert str(corrupt) in str(err.value)
    assert not (tmp_path / "run" / "checkpoints").exists()  # nothing ran
    res = train(TrainConfig(**tiny_train), context(tmp_path / "run", data, on_bad_file="skip", max_steps=1))
    assert res.steps == 1


def test_losses_follow_the_reference_formulas(tiny_train: dict) -> None:
    """One step by hand: the KL sum, L1 x 10, latent L1 x 0.5 on E's mean, LSGAN summed over D's scales; E gets no
    gradient from the latent loss (it is frozen for G alone), G does."""
    from styleengine.nn import GANLoss, define_D_multiscale
    from styleengine_bicyclegan.train import optimize

    class Acc:  # the accelerate calls optimize makes, for one process
        device = torch.device("cpu")

        def autocast(self):  # noqa: ANN201
            return torch.autocast("cpu", enabled=False)

        def backward(self, loss, **kw):  # noqa: ANN001, ANN003, ANN201
            loss.backward(**kw)

    cfg = TrainConfig(**{**tiny_train, "lambda_GAN": 0, "lambda_GAN2": 0, "lambda_L1": 0, "lambda_kl": 0, "use_dropout": False})
    style = BicycleGAN(cfg.model)
    G, E = style.modules["generator"], style.modules["encoder"]
    Ds = {"discriminator": define_D_multiscale(3, 4, "basic_128_multi", "instance", 2), "discriminator2": define_D_multiscale(3, 4, "basic_128_multi", "instance", 2)}
    nets = {"generator": G, "encoder": E, **Ds}
    opts = {k: torch.optim.SGD(m.parameters(), lr=0.0) for k, m in nets.items()}  # lr 0: inspect gradients only
    A, B = torch.rand(2, 3, 128, 128) * 2 - 1, torch.rand(2, 3, 128, 128) * 2 - 1
    torch.manual_seed(3)
    out = optimize(nets, nets, opts, Acc(), GANLoss("lsgan"), cfg, style.model_config, A, B)
    assert out["G_L1"] == out["kl"] == out["G_GAN"] == out["D"] == 0.0 and out["z_L1"] > 0  # only the latent loss on
    assert all(p.grad is None or not p.grad.any() for p in E.parameters())  # E frozen for the latent loss
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in G.parameters())
    torch.manual_seed(3)  # the same draws: eps first, then z_random, as the reference's forward
    mu, logvar = E(B[:1])
    eps = torch.randn_like(mu)
    z_random = torch.randn(1, 8)
    with torch.no_grad():
        want = torch.nn.functional.l1_loss(E(G(A[:1], z_random))[0], z_random) * 0.5
    assert abs(out["z_L1"] - float(want)) < 1e-5
    full = TrainConfig(**{**tiny_train, "use_dropout": False})
    torch.manual_seed(3)
    out = optimize(nets, nets, opts, Acc(), GANLoss("lsgan"), full, style.model_config, A, B)
    with torch.no_grad():
        kl = float(torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) * -0.5 * 0.01)
        l1 = float(torch.nn.functional.l1_loss(G(A[:1], eps * torch.exp(0.5 * logvar) + mu), B[:1]) * 10)
        d_real = sum(float(((p - 1) ** 2).mean()) for p in Ds["discriminator"](B[:1]))
    assert abs(out["kl"] - kl) < 1e-6 and abs(out["G_L1"] - l1) < 1e-5
    assert out["D"] > d_real  # fake + real terms, the real one summed over both scales


def test_update_order(tmp_path: Path, make_aligned, tiny_train: dict) -> None:
    """The reference updates G and E first, then the Ds; D_first (what the issue described) gives another run."""
    data = make_aligned(tmp_path / "data", n=2)
    runs = {}
    for order in ("reference", "D_first"):
        cfg = TrainConfig(**{**tiny_train, "update_order": order, "use_dropout": False})
        res = train(cfg, context(tmp_path / order, data, max_steps=2))
        runs[order] = load_file(str(res.checkpoint / "model.safetensors"))
    a, b = runs["reference"], runs["D_first"]
    assert a.keys() == b.keys()
    assert not torch.equal(a["generator.model.down.0.weight"], b["generator.model.down.0.weight"])
    assert TrainConfig().update_order == "reference"

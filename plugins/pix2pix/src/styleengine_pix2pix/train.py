"""pix2pix training, as the reference's ``Pix2PixModel.optimize_parameters`` and ``train.py``.

Per step (one batch): ``fake_B = G(real_A)``; D is updated on ``(real_A, fake_B.detach())`` as fake and
``(real_A, real_B)`` as real with ``loss_D = (D_fake + D_real) / 2``; then, with D frozen, G on
``G_GAN + lambda_L1 * L1(fake_B, real_B)``.  Adam (lr 2e-4, betas (0.5, 0.999)) for both; the learning
rate stays constant for ``n_epochs`` epochs and decays linearly over ``n_epochs_decay`` more
(``LambdaLR`` stepped at the end of each epoch, as the reference's ``linear`` policy with epoch_count 1).

Through accelerate (``ctx.accelerator()``): device, mixed precision, and several processes with
``accelerate launch`` (each process takes its slice of a global batch of ``batch_size x processes``).
Deviations forced by DDP, all numerically neutral: D's fake and real halves are back-propagated
separately (the first under ``no_sync``) instead of as one sum, and G's adversarial term calls the
unwrapped D, whose parameters are frozen.

Checkpoints (``ctx.save``) hold the generator and the discriminator (``generator.*`` /
``discriminator.*``; ``--weights`` loads the generator and sets the discriminator aside for fine-tuning),
both optimisers, both schedulers (and the fp16 grad scaler), step, epoch, position in the epoch, and
the RNG states: ``--resume`` continues exactly as if never stopped.  Ctrl-C finishes the step, saves
and returns.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import torch
from torch import nn

from styleengine.nn import GANLoss, define_D, init_weights, load_into
from styleengine.training import TrainResult
from styleengine.training.samples import save_grid

from .config import TrainConfig, check_crop
from .data import PairDataset, epoch_batches, prepare, steps_per_epoch

log = logging.getLogger(__name__)

LOSS_NAMES = ("G_GAN", "G_L1", "D_real", "D_fake")


def linear_rule(n_epochs: int, n_epochs_decay: int):  # noqa: ANN201
    """The reference's ``linear`` policy (``epoch_count`` = 1): factor 1 for ``n_epochs`` epochs, then
    ``1 - k / (n_epochs_decay + 1)`` in the k-th decay epoch."""

    def rule(epoch: int) -> float:
        return 1.0 - max(0, epoch + 1 - n_epochs) / float(n_epochs_decay + 1)

    return rule


def set_requires_grad(net: nn.Module, flag: bool) -> None:
    for p in net.parameters():
        p.requires_grad = flag


def _training_generator(style: Any) -> nn.Module:
    """The generator to train: plain BatchNorm, whatever the style's variant."""
    if style.variant == "eval":
        return style.modules["generator"]
    plain = type(style)(style.model_config, variant="eval")
    plain.modules["generator"].load_state_dict(style.modules["generator"].state_dict())
    return plain.modules["generator"]


def train(style: Any, cfg: TrainConfig, ctx: Any) -> TrainResult:
    mc = style.model_config
    asked = cfg.model
    clash = {k: (getattr(asked, k), getattr(mc, k)) for k in asked.model_fields_set if getattr(asked, k) != getattr(mc, k)}
    if clash:
        raise ValueError(
            "the training config asks for "
            + ", ".join(f"{k}={a}" for k, (a, _) in clash.items())
            + f" but the weights given are {', '.join(f'{k}={b}' for k, (_, b) in clash.items())}; drop those settings"
        )
    check_crop(cfg, mc)
    data = prepare(ctx.data_dir("data"), cfg, ctx.on_bad_file, progress=ctx.show_progress)  # before the first step

    acc = ctx.accelerator()  # seeds every RNG with ctx.seed
    rank, world = acc.process_index, acc.num_processes
    G = _training_generator(style)
    if style.weights_path is None:  # fresh run: the reference's initialisation, seeded by --seed
        init_weights(G, cfg.init_type, cfg.init_gain, generator=torch.Generator().manual_seed(ctx.seed))
    D = define_D(
        mc.input_nc + mc.output_nc, cfg.ndf, cfg.netD, cfg.n_layers_D, mc.norm, cfg.init_type, cfg.init_gain,
        generator=torch.Generator().manual_seed(ctx.seed + 1),
    )
    if style.discriminator_state:
        try:
            load_into(D, style.discriminator_state)
        except ValueError as exc:
            log.warning("discriminator in the weights does not fit netD=%s (%s); starting it fresh", cfg.netD, str(exc).splitlines()[0])
    G.train()
    D.train()
    opt_G = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    opt_D = torch.optim.Adam(D.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    rule = linear_rule(cfg.n_epochs, cfg.n_epochs_decay)
    sched_G = torch.optim.lr_scheduler.LambdaLR(opt_G, rule)
    sched_D = torch.optim.lr_scheduler.LambdaLR(opt_D, rule)
    G, D, opt_G, opt_D = acc.prepare(G, D, opt_G, opt_D)
    G_raw, D_raw = acc.unwrap_model(G), acc.unwrap_model(D)
    criterion_gan = GANLoss(cfg.gan_mode).to(acc.device)
    criterion_l1 = nn.L1Loss()

    modules = {"generator": G_raw, "discriminator": D_raw}
    optimizers = {"G": opt_G, "D": opt_D}
    schedulers: dict[str, Any] = {"G": sched_G, "D": sched_D}
    if getattr(acc, "scaler", None) is not None:
        schedulers["grad_scaler"] = acc.scaler

    per_epoch = steps_per_epoch(len(data.pairs), cfg.batch_size, world)
    total = (cfg.n_epochs + cfg.n_epochs_decay) * per_epoch
    step, epoch, epoch_step = 0, 0, 0
    state = ctx.resume_into(modules=modules, optimizers=optimizers, schedulers=schedulers)
    if state:
        step, epoch = state["step"], state["epoch"]
        epoch_step = int(state["extra"].get("epoch_step", 0))
        if state["extra"].get("pairs") not in (None, len(data.pairs)):
            log.warning("resuming with %d pairs; the checkpoint was trained on %s", len(data.pairs), state["extra"]["pairs"])
    limit = min(total, ctx.max_steps or total)

    dataset = PairDataset(data, cfg, multiple=mc.size_multiple, input_nc=mc.input_nc, output_nc=mc.output_nc, seed=ctx.seed)
    losses = {k: float("nan") for k in LOSS_NAMES}
    history: list[dict[str, float]] = []
    on_step = ctx.extra.get("on_step")
    log_file = ctx.out_dir / "loss_log.jsonl"
    ctx.out_dir.mkdir(parents=True, exist_ok=True)

    def save() -> Any:
        path = None
        if acc.is_main_process:
            path = ctx.save(
                step, style=style.name, model_config=mc.model_dump(mode="json"), modules=modules, optimizers=optimizers,
                schedulers=schedulers, epoch=epoch,
                extra={"epoch_step": epoch_step, "pairs": len(data.pairs), "losses": losses, "train_config": cfg.model_dump(mode="json")},
            )
        acc.wait_for_everyone()
        return path

    if acc.is_main_process:
        log.info("%d pairs, %d steps/epoch, %d epochs: %d steps (training to %d)", len(data.pairs), per_epoch, cfg.n_epochs + cfg.n_epochs_decay, total, limit)
    checkpoint = None
    with ctx.catch_interrupt(), ctx.progress(limit, initial=min(step, limit)) as bar:
        while step < limit and not ctx.interrupted:
            batches = epoch_batches(len(data.pairs), cfg.batch_size, ctx.seed, epoch, rank, world)
            loader = torch.utils.data.DataLoader(
                dataset, batch_sampler=batches[epoch_step:], num_workers=cfg.num_workers,
                # a private generator: creating an iterator must not draw from the global RNG (dropout's)
                generator=torch.Generator().manual_seed(ctx.seed * 100_003 + epoch),
            )
            for real_A, real_B in loader:
                real_A, real_B = real_A.to(acc.device), real_B.to(acc.device)
                losses = optimize(G, D, D_raw, opt_G, opt_D, acc, criterion_gan, criterion_l1, cfg.lambda_L1, real_A, real_B)
                fake_B = losses.pop("fake_B")
                step += 1
                epoch_step += 1
                if epoch_step == len(batches):  # end of epoch: the reference updates the learning rate here
                    sched_G.step()
                    sched_D.step()
                    epoch, epoch_step = epoch + 1, 0
                lr = opt_G.param_groups[0]["lr"]
                bar.set_postfix({**{k: f"{v:.3f}" for k, v in losses.items()}, "epoch": epoch}, refresh=False)
                bar.update(1)
                if step % ctx.log_every == 0 or step == limit:
                    record = {"step": step, "epoch": epoch, "lr": lr, **losses}
                    history.append(record)
                    if acc.is_main_process:
                        with log_file.open("a") as fh:
                            fh.write(json.dumps(record) + "\n")
                if step % ctx.sample_every == 0 and acc.is_main_process:
                    rows = [[real_A[i], fake_B[i], real_B[i]] for i in range(min(cfg.sample_rows, real_A.shape[0]))]
                    save_grid(ctx.samples_dir / f"step-{step:07d}.png", rows)
                if on_step is not None:
                    on_step(step, losses)
                if step % ctx.checkpoint_every == 0 and step < limit:
                    save()
                if step >= limit or ctx.interrupted:
                    break
        checkpoint = save()
    G_raw.eval()
    if style.modules["generator"] is not G_raw:
        style.modules["generator"].load_state_dict(G_raw.state_dict())
    if checkpoint is not None:
        from styleengine.weights import sha256_path

        style.weights_path, style.weights_sha256 = checkpoint, sha256_path(checkpoint)
    metrics = {k: v for k, v in losses.items() if not math.isnan(v)}
    return TrainResult(checkpoint, step, metrics, interrupted=ctx.interrupted, history=history)


def optimize(
    G: nn.Module, D: nn.Module, D_raw: nn.Module, opt_G: Any, opt_D: Any, acc: Any, gan: GANLoss, l1: nn.Module,
    lambda_L1: float, real_A: torch.Tensor, real_B: torch.Tensor,
) -> dict[str, Any]:
    """One ``optimize_parameters`` step of the reference; returns the four losses and ``fake_B``."""
    with acc.autocast():
        fake_B = G(real_A)
    # D: fake pairs (G detached) and real pairs
    set_requires_grad(D_raw, True)
    opt_D.zero_grad()
    with acc.no_sync(D), acc.autocast():
        loss_D_fake = gan(D(torch.cat((real_A, fake_B.detach()), 1)), False)
    acc.backward(loss_D_fake * 0.5)
    with acc.autocast():
        loss_D_real = gan(D(torch.cat((real_A, real_B), 1)), True)
    acc.backward(loss_D_real * 0.5)
    opt_D.step()
    # G: fool D (frozen, unwrapped: no DDP reduction for it) and stay close to the target in L1
    set_requires_grad(D_raw, False)
    opt_G.zero_grad()
    with acc.autocast():
        loss_G_GAN = gan(D_raw(torch.cat((real_A, fake_B), 1)), True)
        loss_G_L1 = l1(fake_B.float(), real_B) * lambda_L1
    acc.backward(loss_G_GAN + loss_G_L1)
    opt_G.step()
    return {
        "G_GAN": float(loss_G_GAN.detach()),
        "G_L1": float(loss_G_L1.detach()),
        "D_real": float(loss_D_real.detach()),
        "D_fake": float(loss_D_fake.detach()),
        "fake_B": fake_B.detach(),
    }

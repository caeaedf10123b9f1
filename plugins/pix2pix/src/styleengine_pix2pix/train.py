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

import logging
from typing import Any

import torch
from torch import nn

from styleengine.data.paired import PairDataset, prepare
from styleengine.nn import GANLoss, define_D, init_weights, load_into
from styleengine.training import TrainResult
from styleengine.training.gan import linear_rule, set_requires_grad
from styleengine.training.loop import Progress, run_epochs
from styleengine.training.samples import save_grid

from .config import TrainConfig, check_crop

log = logging.getLogger(__name__)

LOSS_NAMES = ("G_GAN", "G_L1", "D_real", "D_fake")


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
    state = ctx.resume_into(modules=modules, optimizers=optimizers, schedulers=schedulers)
    dataset = PairDataset(data, cfg, multiple=mc.size_multiple, input_nc=mc.input_nc, output_nc=mc.output_nc, seed=ctx.seed)

    def step(real_A: torch.Tensor, real_B: torch.Tensor) -> dict[str, Any]:
        return optimize(G, D, D_raw, opt_G, opt_D, acc, criterion_gan, criterion_l1, cfg.lambda_L1, real_A, real_B)

    def end_epoch() -> None:
        sched_G.step()
        sched_D.step()

    def sample(prog: Progress, batch: tuple[torch.Tensor, ...], out: Any) -> None:
        (real_A, real_B), fake_B = batch, out["fake_B"]
        rows = [[real_A[i], fake_B[i], real_B[i]] for i in range(min(cfg.sample_rows, real_A.shape[0]))]
        save_grid(ctx.samples_dir / f"step-{prog.step:07d}.png", rows)

    def save(prog: Progress) -> Any:
        return ctx.save(
            prog.step, style=style.name, model_config=mc.model_dump(mode="json"), modules=modules, optimizers=optimizers,
            schedulers=schedulers, epoch=prog.epoch,
            extra={"epoch_step": prog.epoch_step, "pairs": len(data.pairs), "losses": prog.losses, "train_config": cfg.model_dump(mode="json")},
        )

    prog, checkpoint = run_epochs(
        ctx, acc, dataset=dataset, n_items=len(data.pairs), batch_size=cfg.batch_size, epochs=cfg.n_epochs + cfg.n_epochs_decay,
        loss_names=LOSS_NAMES, train_step=step, end_epoch=end_epoch, lr=lambda: opt_G.param_groups[0]["lr"], save=save,
        sample=sample, state=state, num_workers=cfg.num_workers,
    )
    G_raw.eval()
    if style.modules["generator"] is not G_raw:
        style.modules["generator"].load_state_dict(G_raw.state_dict())
    if checkpoint is not None:
        from styleengine.weights import sha256_path

        style.weights_path, style.weights_sha256 = checkpoint, sha256_path(checkpoint)
    return TrainResult(checkpoint, prog.step, prog.metrics, interrupted=ctx.interrupted, history=prog.history)


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

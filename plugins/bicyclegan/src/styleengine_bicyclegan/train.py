"""BicycleGAN training, as the reference's ``BiCycleGANModel.optimize_parameters`` and ``train.py``.

Each batch (even size, enforced by :class:`~.config.TrainConfig`) is split in halves, as the reference does:
the first half ``(A1, B1)`` trains the **cVAE-GAN** path, the second half's B2 only serves as D2's real images.

* forward: ``mu, logvar = E(B1)``; ``z_encoded = mu + eps * exp(logvar / 2)``; ``z_random ~ N(0, 1)``;
  ``fake_encoded = G(A1, z_encoded)``; ``fake_random = G(A1, z_random)`` (the reference feeds A1 here too);
  ``mu2 = E(fake_random).mu``;
* **G and E** (D and D2 frozen): ``lambda_GAN * D(fake_encoded) + lambda_GAN2 * D2(fake_random)`` (LSGAN,
  summed over the discriminators' scales), ``lambda_L1 * |fake_encoded - B1|`` and the KL term
  ``-lambda_kl / 2 * sum(1 + logvar - mu^2 - exp(logvar))``, back-propagated with the graph kept; then, with E
  frozen, the **cLR-GAN** latent loss ``lambda_z * |mu2 - z_random|`` into G alone; then both optimisers step;
* **D and D2**: ``D(fake_encoded.detach())`` fake and ``D(B1)`` real; ``D2(fake_random.detach())`` fake and
  ``D2(B2)`` real (``conditional_D``: the pairs with A), each ``fake + real``.

That is the reference's order: ``forward(); update_G_and_E(); update_D()`` (junyanz/BicycleGAN
``models/bicycle_gan_model.py``, unchanged since its first release); the Ds are updated last, on the fakes of
this step's forward pass.  (The issue text says "D first": the reference does not; ``update_order=reference``, the
default, follows the reference, ``update_order=D_first`` updates D and D2 first, then G and E against them.)  Adam (lr 2e-4, betas (0.5, 0.999)) for each of G, E, D, D2; the learning rate is constant for
``niter`` epochs and decays linearly over ``niter_decay`` (``LambdaLR`` per epoch, the ``linear`` policy with
epoch_count 1).  A batch that is not full is skipped, as the reference's ``is_train`` check does.

Random numbers: eps, z_random and dropout come from torch's global RNG, seeded by ``--seed`` through accelerate
and saved with every checkpoint, so ``--resume`` continues with exactly the numbers an uninterrupted run would
have drawn.  Sample grids use a private generator (fixed z per run) and never touch the global RNG.

Through accelerate (``ctx.accelerator()``): device and mixed precision, **one process**: the step calls G and E
twice each and back-propagates twice (G alone for the latent loss), as the reference, which DDP cannot reduce;
``accelerate launch`` with several processes is refused with that reason.

Checkpoints (``ctx.save``): ``generator.*``, ``encoder.*``, ``discriminator.*``, ``discriminator2.*`` (the last
two set aside by ``--weights`` for fine-tuning), every optimiser and scheduler, step, epoch, position in the
epoch and the RNG states.  Ctrl-C finishes the step, saves and returns.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from styleengine.data.paired import PairDataset, prepare
from styleengine.nn import GANLoss, define_D_multiscale, init_weights, load_into, multiscale_gan_loss
from styleengine.training import TrainResult
from styleengine.training.gan import linear_rule, set_requires_grad
from styleengine.training.loop import Progress, run_epochs
from styleengine.training.rng import derived_generator
from styleengine.training.samples import save_grid

from .config import TrainConfig, check_sizes

log = logging.getLogger(__name__)

#: The reference's ``loss_names``.
LOSS_NAMES = ("G_GAN", "D", "G_GAN2", "D2", "G_L1", "z_L1", "kl")


def _with_dropout(style: Any, use_dropout: bool) -> None:
    """Dropout has no weights: switching it rebuilds the networks with the same tensors."""
    if style.model_config.use_dropout == use_dropout:
        return
    tensors = style.state_dict()
    style.model_config = style.model_config.model_copy(update={"use_dropout": use_dropout})
    style._modules = None
    style.modules["generator"].load_state_dict({k.partition(".")[2]: v for k, v in tensors.items() if k.startswith("generator.")})
    style.modules["encoder"].load_state_dict({k.partition(".")[2]: v for k, v in tensors.items() if k.startswith("encoder.")})


def train(style: Any, cfg: TrainConfig, ctx: Any) -> TrainResult:
    mc = style.model_config
    asked = cfg.model
    clash = {
        k: (getattr(asked, k), getattr(mc, k)) for k in asked.model_fields_set - {"use_dropout"} if getattr(asked, k) != getattr(mc, k)
    }
    if clash:
        raise ValueError(
            "the training config asks for " + ", ".join(f"{k}={a}" for k, (a, _) in clash.items())
            + f" but the weights given are {', '.join(f'{k}={b}' for k, (_, b) in clash.items())}; drop those settings"
        )
    check_sizes(cfg, mc)
    data = prepare(ctx.data_dir("data"), cfg, ctx.on_bad_file, progress=ctx.show_progress)  # before the first step
    _with_dropout(style, cfg.use_dropout)
    mc = style.model_config

    acc = ctx.accelerator()  # seeds every RNG with ctx.seed
    if acc.num_processes > 1:
        raise ValueError(
            f"bicyclegan trains in one process (got {acc.num_processes}): the reference's step runs G and E twice and "
            "back-propagates twice (the latent loss into G alone), which DistributedDataParallel cannot reduce; "
            "run `engine train` without `accelerate launch` (one GPU or the CPU)"
        )
    G, E = style.modules["generator"], style.modules["encoder"]
    if style.weights_path is None:  # fresh run: the reference's initialisation (xavier, gain 0.02), seeded by --seed
        init_weights(G, cfg.init_type, cfg.init_gain, generator=derived_generator(ctx.seed, 1))
        init_weights(E, cfg.init_type, cfg.init_gain, generator=derived_generator(ctx.seed, 2))
    d_in = mc.input_nc + mc.output_nc if cfg.conditional_D else mc.output_nc
    Ds: dict[str, nn.Module] = {}
    for key, netD, k in (("discriminator", cfg.netD, 3), ("discriminator2", cfg.netD2, 4)):
        if key == "discriminator2" and cfg.use_same_D:
            continue
        D = define_D_multiscale(d_in, cfg.ndf, netD, mc.norm, cfg.num_Ds)
        init_weights(D, cfg.init_type, cfg.init_gain, generator=derived_generator(ctx.seed, k))
        if key in style.training_state:
            try:
                load_into(D, style.training_state[key])
            except ValueError as exc:
                log.warning("%s in the weights does not fit netD=%s (%s); starting it fresh", key, netD, str(exc).splitlines()[0])
        Ds[key] = D
    nets = {"generator": G, "encoder": E, **Ds}
    for net in nets.values():
        net.train()
    betas = (cfg.beta1, 0.999)
    opts = {name: torch.optim.Adam(net.parameters(), lr=cfg.lr, betas=betas) for name, net in nets.items()}
    rule = linear_rule(cfg.niter, cfg.niter_decay)
    scheds: dict[str, Any] = {name: torch.optim.lr_scheduler.LambdaLR(o, rule) for name, o in opts.items()}
    prepared = acc.prepare(*nets.values(), *opts.values())
    wrapped = dict(zip(nets, prepared[: len(nets)], strict=True))
    opts = dict(zip(opts, prepared[len(nets) :], strict=True))
    raw = {name: acc.unwrap_model(m) for name, m in wrapped.items()}
    if getattr(acc, "scaler", None) is not None:
        scheds["grad_scaler"] = acc.scaler
    state = ctx.resume_into(modules=raw, optimizers=opts, schedulers=scheds)
    dataset = PairDataset(data, cfg, multiple=mc.size_multiple, input_nc=mc.input_nc, output_nc=mc.output_nc, seed=ctx.seed, salt="bicyclegan")
    gan = GANLoss(cfg.gan_mode).to(acc.device)
    # fixed z for the sample grids: the same codes at every step, from a private generator
    sample_z = torch.randn(cfg.sample_z, mc.nz, generator=derived_generator(ctx.seed, 5)).to(acc.device)

    def step(real_A: torch.Tensor, real_B: torch.Tensor) -> dict[str, Any]:
        return optimize(wrapped, raw, opts, acc, gan, cfg, mc, real_A, real_B)

    def end_epoch() -> None:
        for name, s in scheds.items():
            if name != "grad_scaler":
                s.step()

    def sample(prog: Progress, batch: tuple[torch.Tensor, ...], out: Any) -> None:
        real_A, real_B = batch
        rows = sample_rows(raw["generator"], raw["encoder"], real_A[: cfg.sample_rows], real_B[: cfg.sample_rows], sample_z, mc.encoder_size)
        save_grid(ctx.samples_dir / f"step-{prog.step:07d}.png", rows)

    def save(prog: Progress) -> Any:
        return ctx.save(
            prog.step, style=style.name, model_config=mc.model_dump(mode="json"), modules=raw, optimizers=opts, schedulers=scheds,
            epoch=prog.epoch,
            extra={"epoch_step": prog.epoch_step, "pairs": len(data.pairs), "losses": prog.losses, "train_config": cfg.model_dump(mode="json")},
        )

    prog, checkpoint = run_epochs(
        ctx, acc, dataset=dataset, n_items=len(data.pairs), batch_size=cfg.batch_size, epochs=cfg.niter + cfg.niter_decay,
        loss_names=LOSS_NAMES, train_step=step, end_epoch=end_epoch, lr=lambda: opts["generator"].param_groups[0]["lr"], save=save,
        sample=sample, state=state, num_workers=cfg.num_workers, drop_last=True,
    )
    raw["generator"].eval()
    raw["encoder"].eval()
    style.training_state = {k: raw[k].state_dict() for k in Ds}
    if checkpoint is not None:
        from styleengine.weights import sha256_path

        style.weights_path, style.weights_sha256 = checkpoint, sha256_path(checkpoint)
    return TrainResult(checkpoint, prog.step, prog.metrics, interrupted=ctx.interrupted, history=prog.history)


def _fit(x: torch.Tensor, side: int) -> torch.Tensor:
    """The encoder's one input size (crops are that size already unless preprocess=none)."""
    return x if tuple(x.shape[-2:]) == (side, side) else F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False, antialias=True)


def optimize(
    nets: dict[str, nn.Module], raw: dict[str, nn.Module], opts: dict[str, Any], acc: Any, gan: GANLoss, cfg: TrainConfig, mc: Any,
    real_A: torch.Tensor, real_B: torch.Tensor,
) -> dict[str, Any]:
    """One ``optimize_parameters`` step of the reference; returns the seven losses and the fakes."""
    G, E = nets["generator"], nets["encoder"]
    D = nets["discriminator"]
    D2 = D if cfg.use_same_D else nets["discriminator2"]
    frozen = [raw["discriminator"], raw.get("discriminator2")]
    half = real_A.shape[0] // 2
    if half == 0:
        raise ValueError("a training batch needs at least 2 pairs (one encoded, one random)")
    A1, B1, A2, B2 = real_A[:half], real_B[:half], real_A[half:], real_B[half:]
    side = mc.encoder_size
    zero = torch.zeros((), device=real_A.device)

    # -- forward ---------------------------------------------------------------------------------------
    with acc.autocast():
        mu, logvar = E(_fit(B1, side))
        mu, logvar = mu.float(), logvar.float()
        z_encoded = torch.randn_like(mu) * torch.exp(0.5 * logvar) + mu
        z_random = torch.randn(half, mc.nz, device=real_A.device)
        fake_encoded = G(A1, z_encoded)
        fake_random = G(A1, z_random)
        mu2 = E(_fit(fake_random, side))[0].float() if cfg.lambda_z > 0 else None
    if cfg.conditional_D:
        fake_data_enc, real_data_enc = torch.cat([A1, fake_encoded], 1), torch.cat([A1, B1], 1)
        fake_data_rand, real_data_rand = torch.cat([A1, fake_random], 1), torch.cat([A2, B2], 1)
    else:
        fake_data_enc, real_data_enc, fake_data_rand, real_data_rand = fake_encoded, B1, fake_random, B2

    def update_G_and_E() -> dict[str, torch.Tensor]:
        set_requires_grad(frozen, False)
        opts["encoder"].zero_grad()
        opts["generator"].zero_grad()
        with acc.autocast():
            loss_G_GAN = multiscale_gan_loss(gan, D(fake_data_enc), True) * cfg.lambda_GAN if cfg.lambda_GAN > 0 else zero
            loss_G_GAN2 = multiscale_gan_loss(gan, D2(fake_data_rand), True) * cfg.lambda_GAN2 if cfg.lambda_GAN2 > 0 else zero
        loss_kl = torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) * (-0.5 * cfg.lambda_kl) if cfg.lambda_kl > 0 else zero
        loss_G_L1 = F.l1_loss(fake_encoded.float(), B1) * cfg.lambda_L1 if cfg.lambda_L1 > 0 else zero
        loss_G = loss_G_GAN + loss_G_GAN2 + loss_G_L1 + loss_kl
        if loss_G.requires_grad:  # (every one of its weights may be 0)
            acc.backward(loss_G, retain_graph=True)
        loss_z_L1 = zero
        if mu2 is not None:  # G alone: E frozen, the latent regression flows through it into G
            set_requires_grad(raw["encoder"], False)
            loss_z_L1 = F.l1_loss(mu2, z_random) * cfg.lambda_z
            acc.backward(loss_z_L1)
            set_requires_grad(raw["encoder"], True)
        opts["encoder"].step()
        opts["generator"].step()
        return {"G_GAN": loss_G_GAN, "G_GAN2": loss_G_GAN2, "G_L1": loss_G_L1, "z_L1": loss_z_L1, "kl": loss_kl}

    def backward_D(net: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        with acc.autocast():
            loss = multiscale_gan_loss(gan, net(fake.detach()), False) + multiscale_gan_loss(gan, net(real), True)
        acc.backward(loss)
        return loss

    def update_D() -> dict[str, torch.Tensor]:
        set_requires_grad(frozen, True)
        loss_D = loss_D2 = zero
        if cfg.lambda_GAN > 0:
            opts["discriminator"].zero_grad()
            loss_D = backward_D(D, real_data_enc, fake_data_enc)
            if cfg.use_same_D:
                loss_D2 = backward_D(D, real_data_rand, fake_data_rand)
            opts["discriminator"].step()
        if cfg.lambda_GAN2 > 0 and not cfg.use_same_D:
            opts["discriminator2"].zero_grad()
            loss_D2 = backward_D(D2, real_data_rand, fake_data_rand)
            opts["discriminator2"].step()
        return {"D": loss_D, "D2": loss_D2}

    # the reference: G and E (then G alone), then the Ds; D_first: the Ds first, then G and E on the updated Ds
    first, second = (update_G_and_E, update_D) if cfg.update_order == "reference" else (update_D, update_G_and_E)
    found = {**first(), **second()}
    losses = {k: found[k] for k in LOSS_NAMES}
    return {**{k: float(v.detach()) for k, v in losses.items()}, "fake_encoded": fake_encoded.detach(), "fake_random": fake_random.detach()}


@torch.no_grad()
def sample_rows(G: nn.Module, E: nn.Module, real_A: torch.Tensor, real_B: torch.Tensor, zs: torch.Tensor, side: int) -> list[list[torch.Tensor]]:
    """Rows of ``A | B | G(A, E(B).mu) | G(A, z_1) ... G(A, z_k)`` in eval mode (no dropout), modes restored."""
    modes = G.training, E.training
    G.eval()
    E.eval()
    try:
        mu = E(_fit(real_B, side))[0]
        encoded = G(real_A, mu)
        n, k = real_A.shape[0], zs.shape[0]
        randoms = G(real_A.repeat_interleave(k, 0), zs.repeat(n, 1)).view(n, k, *real_B.shape[1:])
        return [[real_A[i], real_B[i], encoded[i], *randoms[i]] for i in range(n)]
    finally:
        G.train(modes[0])
        E.train(modes[1])

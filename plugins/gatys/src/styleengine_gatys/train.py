"""``engine train gatys --style IMAGE --data CONTENT_DIR``: Johnson et al.'s fast style network, as
pytorch/examples ``fast_neural_style`` trains it, through :mod:`styleengine.training`.

The reference, step for step: content images resized (short side) to ``image_size`` and centre-cropped, as
0-255 tensors; the style image (``style_size`` x ``style_size`` if given, else its own size) through VGG-16
once, its Gram matrices at relu1_2, relu2_2, relu3_3, relu4_3 kept; each batch ``y = TransformerNet(x)``,
``content_weight * mse(relu2_2(y), relu2_2(x)) + style_weight * sum_l mse(G_l(y), G_l(style))`` with
ImageNet-normalised inputs (``normalize_batch``), Adam at ``lr``, ``epochs`` passes over the data in batches
of ``batch_size`` (the last, smaller batch kept, as the reference's DataLoader).

The engine adds: a seeded data order that ``--resume`` continues exactly (:func:`styleengine.training.loop.run_epochs`),
atomic safetensors checkpoints of the transformer (``transformer.*``: load with ``--variant fast --weights DIR``)
with the optimiser state, sample grids (content | output), progress, Ctrl-C saves and stops.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import torch

from styleengine.data import read_image
from styleengine.data.folders import find_images
from styleengine.data.preflight import preflight_images
from styleengine.preprocess import resize, to_tensor
from styleengine.style import WeightsRequiredError
from styleengine.training import TrainResult
from styleengine.training.loop import run_epochs
from styleengine.training.samples import save_grid

from .config import FAST_CONTENT_LAYER, FAST_STYLE_LAYERS
from .importer import VGG_HOW_TO_GET
from .nets import fast_losses, gram_matrix, init_random_vgg_, normalize_batch

log = logging.getLogger(__name__)

RANDOM_VGG16_WARNING = (
    "gatys train: the VGG-16 loss network is RANDOM (allow_random_vgg=true): the network learns no style; "
    "tests only. Pass --set vgg=vgg16-397923af.pth (torchvision's VGG-16) for real runs"
)


def load_square_255(path: Path, size: int | None) -> torch.Tensor:
    """The reference's ``load_image(path, size)`` + ``ToTensor`` + ``mul(255)``: ``(1, 3, S, S)`` or the image's size."""
    t = to_tensor(read_image(path).array, (0.0, 1.0))
    if size is not None:
        t = resize(t, (size, size))
    return t * 255.0


class ContentImages(torch.utils.data.Dataset):
    """Content images: short side resized to ``size``, centre crop ``size`` x ``size``, 0-255 (the reference's
    ``Resize``, ``CenterCrop``, ``ToTensor``, ``mul(255)``).  Keys are ``(epoch, index)`` from ``epoch_batches``."""

    def __init__(self, files: list[Path], size: int) -> None:
        self.files, self.size = files, size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: Any) -> tuple[torch.Tensor]:
        i = key[1] if isinstance(key, tuple) else key
        t = to_tensor(read_image(self.files[i]).array, (0.0, 1.0))
        h, w = t.shape[-2:]
        f = self.size / min(h, w)
        nh, nw = max(self.size, int(round(h * f))), max(self.size, int(round(w * f)))
        t = resize(t, (nh, nw))
        top, left = (nh - self.size) // 2, (nw - self.size) // 2
        return (t[0, :, top : top + self.size, left : left + self.size] * 255.0,)


def _style_file(ctx: Any, cfg: Any) -> Path:
    src = cfg.style_image or ctx.data.get("style")
    if src is None:
        raise ValueError("gatys train needs the style image: --style IMAGE (or --set style_image=PATH)")
    p = Path(src)
    if p.is_dir():
        found = find_images(p)
        if len(found) != 1:
            raise ValueError(f"--style {p}: a folder must hold exactly one image (found {len(found)}); pass the image itself")
        p = found[0]
    if not p.is_file():
        raise FileNotFoundError(f"style image not found: {p}")
    return p


def loss_network(cfg: Any) -> tuple[torch.nn.Module, bool]:
    """The frozen VGG-16 up to relu4_3 and whether it is random."""
    from styleengine.nn.vgg import VGG16Features, load_torchvision_vgg16

    if cfg.vgg:
        return load_torchvision_vgg16(cfg.vgg, upto="relu4_3").requires_grad_(False).eval(), False
    if not cfg.allow_random_vgg:
        raise WeightsRequiredError(
            "training the fast network needs VGG-16 weights for its loss: pass --set vgg=PATH/vgg16-397923af.pth "
            "(https://download.pytorch.org/models/vgg16-397923af.pth); --set allow_random_vgg=true trains against a random VGG (tests only)"
        )
    warnings.warn(RANDOM_VGG16_WARNING, UserWarning, stacklevel=3)
    log.warning(RANDOM_VGG16_WARNING)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return init_random_vgg_(VGG16Features(upto="relu4_3")).eval(), True


def train(style: Any, cfg: Any, ctx: Any) -> TrainResult:
    from .style import GatysStyle

    fast = style if style.variant == "fast" else GatysStyle(style.model_config, variant="fast")
    net = fast.modules["transformer"]
    vgg, random_vgg = loss_network(cfg)
    folder = ctx.data_dir("data")
    report = preflight_images(find_images(folder), full_decode=cfg.preflight == "full", progress=ctx.show_progress)
    files = report.apply(ctx.on_bad_file)
    if not files:
        raise ValueError(f"--data {folder}: no usable images")
    style_path = _style_file(ctx, cfg)
    log.info("gatys train: %d content images, style %s", len(files), style_path)

    acc = ctx.accelerator()
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    state = ctx.resume_into(modules={"transformer": net}, optimizers={"adam": opt})
    net.train()
    net, opt = acc.prepare(net, opt)
    vgg = vgg.to(acc.device)
    with torch.no_grad():
        style255 = load_square_255(style_path, cfg.style_size).to(acc.device)
        feats = vgg(normalize_batch(style255), list(FAST_STYLE_LAYERS), normalize=False)
        grams = {k: gram_matrix(v) for k, v in feats.items()}

    def train_step(x: torch.Tensor) -> dict[str, Any]:
        opt.zero_grad()
        y = net(x)
        c, s = fast_losses(vgg, x, y, grams, FAST_CONTENT_LAYER, cfg.content_weight, cfg.style_weight)
        total = c + s
        acc.backward(total)
        opt.step()
        return {"loss": total.detach(), "content": c.detach(), "style": s.detach(), "x": x, "y": y.detach()}

    def sample(prog: Any, batch: tuple[torch.Tensor, ...], out: Any) -> None:
        k = min(cfg.samples, batch[0].shape[0])
        rows = [[out["x"][i], out["y"][i].clamp(0, 255)] for i in range(k)]
        save_grid(ctx.samples_dir / f"step-{prog.step:07d}.png", rows, value_range=(0.0, 255.0))

    def save(prog: Any) -> Path:
        return ctx.save(
            prog.step, style=style.name, model_config=style.model_config.model_dump(mode="json"),
            modules={"transformer": acc.unwrap_model(net)}, optimizers={"adam": opt}, epoch=prog.epoch,
            extra={**prog.metrics, "epoch_step": prog.epoch_step, "pairs": len(files), "random_vgg": random_vgg,
                   "style_image": str(style_path)},
        )

    try:
        prog, checkpoint = run_epochs(
            ctx, acc, dataset=ContentImages(files, cfg.image_size), n_items=len(files), batch_size=cfg.batch_size,
            epochs=cfg.epochs, loss_names=("loss", "content", "style"), train_step=train_step, end_epoch=lambda: None,
            lr=lambda: cfg.lr, save=save, sample=sample, state=state, num_workers=cfg.num_workers,
        )
    finally:
        acc.unwrap_model(net).eval()
    if fast is not style:
        style._fast = fast  # the trained network, for callers that keep the style instance
    return TrainResult(checkpoint, prog.step, prog.metrics, interrupted=ctx.interrupted, history=prog.history)

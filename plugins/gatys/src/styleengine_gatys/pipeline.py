"""The two inference pipelines of the ``gatys`` style.

**Optimisation** (variant ``default``, torch only: there is no graph to export).  For each request:

1. sizes: the result's long side is ``image_size`` (0 = the content's own); with ``scales = k`` the image is
   first optimised at ``size / scale_factor**(k-1)``, then upsampled (bilinear) and optimised again at each
   larger size up to the full one, every scale running ``num_iterations`` (coarse-to-fine: the coarse scales
   lay out the large structures cheaply, the fine ones add detail; how high-resolution neural style is done);
2. at each scale: content targets at ``content_layers`` of the resized content, style targets the blend
   ``sum_k w_k Gram(style_k)`` at ``style_layers``, each style image resized to ``ceil(style_scale * size)``
   on its long side (neural-style's rule);
3. the image (in ``pixel_scale`` units: 0-255 as neural-style, so its learning rate and TV weight mean the
   same; 0-1 for the tutorial preset) starts from neural-style's noise (the mean pixel plus 0.001 * N(0, 1) in
   0-255 units, from a ``torch.Generator`` seeded with the request's seed, on the CPU whatever the device, so
   a seed gives the same start everywhere), the content image or the ``init_image``;
4. L-BFGS (lr 1, history ``lbfgs_num_correction`` or 100, no tolerance stops: neural-style's ``tolX = tolFun
   = -1``), stepped one iteration at a time (torch's L-BFGS keeps its history between ``step`` calls, so the
   iterates equal one ``step`` with ``max_iter = num_iterations``), or Adam;
5. between iterations: :func:`styleengine.cancel.check` (the server's cancel or timeout stops the work there),
   progress with the losses every ``print_iter`` iterations and an intermediate image every ``save_every``
   (:func:`styleengine.cancel.progress`; on a terminal without a token, a tqdm bar);
6. clamp (at the end, or after every step), then ``original_colors`` (result luminance with the content's
   chroma in YUV, as neural-style's ``-original_colors 1``).  The result has the size the options ask for
   (long side ``image_size``), as both references write it.

**Fast** (variant ``fast``): the ``transformer`` graph on whatever Session the request is served by,
batched like every feed-forward style.
"""

from __future__ import annotations

import logging
import math
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from styleengine import cancel
from styleengine.nn.vgg import VGG_MEAN
from styleengine.preprocess import SizeError, from_tensor, resize, to_tensor
from styleengine.style import StyleRequest, StyleResult

from .config import Config
from .nets import content_loss, gram_matrix, style_loss, tv_loss, vgg_features

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)

RANDOM_VGG_WARNING = (
    "gatys: no loss-network weights loaded: optimising against a seeded RANDOM VGG, so results are texture-like "
    "only (colours and fine statistics of the style, no content structure). Pass --weights PATH with torchvision's "
    "vgg19-dcbb9e9d.pth (or vgg16) or AdaIN's vgg_normalised.pth, or set STYLEENGINE_GATYS_VGG=PATH"
)
_warned = False


def warn_random_vgg() -> None:
    """Say once per process that the loss network is random."""
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(RANDOM_VGG_WARNING, UserWarning, stacklevel=3)
        log.warning(RANDOM_VGG_WARNING)


# -- sizes and colours --------------------------------------------------------------------------------------


def long_side_size(h: int, w: int, long: int) -> tuple[int, int]:
    """``(h, w)`` scaled so the long side is ``long`` (aspect kept, each side at least 1), as Lua's
    ``image.scale(img, long)``."""
    f = long / max(h, w)
    return max(1, int(round(h * f))), max(1, int(round(w * f)))


def scale_sizes(h: int, w: int, image_size: int, scales: int, factor: float, min_side: int = 16) -> list[tuple[int, int]]:
    """The sizes of a coarse-to-fine run, coarsest first, ending at the full size (long side ``image_size``,
    or the content's own with 0).  Coarse scales never go below ``min_side`` on the short side; duplicates drop."""
    full = long_side_size(h, w, image_size) if image_size else (h, w)
    long = max(full)
    out: list[tuple[int, int]] = []
    for k in range(scales - 1, -1, -1):
        size = long_side_size(*full, max(1, int(round(long / factor**k)))) if k else full
        if min(size) < min_side and k:
            continue
        if not out or out[-1] != size:
            out.append(size)
    return out


def resize_long(t: torch.Tensor, long: int) -> torch.Tensor:
    return resize(t, long_side_size(t.shape[-2], t.shape[-1], long))


def rgb_to_yuv(x: torch.Tensor) -> torch.Tensor:
    """``(N, 3, H, W)`` RGB -> YUV (the BT.601 matrix of Torch's ``image.rgb2yuv``)."""
    m = x.new_tensor([[0.299, 0.587, 0.114], [-0.14713, -0.28886, 0.436], [0.615, -0.51499, -0.10001]])
    return torch.einsum("ij,njhw->nihw", m, x)


def yuv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    m = x.new_tensor([[1.0, 0.0, 1.13983], [1.0, -0.39465, -0.58060], [1.0, 2.03211, 0.0]])
    return torch.einsum("ij,njhw->nihw", m, x)


def original_colors(generated01: torch.Tensor, content01: torch.Tensor) -> torch.Tensor:
    """The generated image's luminance (Y) with the content's chroma (U, V); clamped to [0, 1]."""
    content01 = resize(content01, tuple(generated01.shape[-2:]))
    y = rgb_to_yuv(generated01)[:, :1]
    uv = rgb_to_yuv(content01)[:, 1:]
    return yuv_to_rgb(torch.cat([y, uv], 1)).clamp(0, 1)


def blend_weights(weights: Sequence[float] | None, k: int) -> list[float]:
    """neural-style's ``-style_blend_weights``: default equal; normalised to sum 1."""
    if weights is None:
        return [1.0 / k] * k
    if len(weights) != k:
        raise ValueError(f"style_blend_weights has {len(weights)} value(s) but the request has {k} style image(s)")
    total = float(sum(weights))
    if total <= 0:
        raise ValueError("style_blend_weights must have a positive sum")
    return [float(w) / total for w in weights]


# -- the optimisation ---------------------------------------------------------------------------------------


@dataclass
class Record:
    """One iteration of the log: scale index, iteration (1-based, per scale), global step, the losses evaluated
    at the image *before* that iteration's update."""

    scale: int
    iteration: int
    step: int
    losses: dict[str, float]


@dataclass
class OptimisationResult:
    image: torch.Tensor  # (1, 3, H, W) in [0, 1]
    log: list[Record] = field(default_factory=list)
    final_losses: dict[str, float] = field(default_factory=dict)
    sizes: list[tuple[int, int]] = field(default_factory=list)
    seed: int = 0
    previews: int = 0


class Objective:
    """The total loss at one scale: targets computed once, ``__call__(x)`` -> (total, parts)."""

    def __init__(self, vgg: nn.Module, cfg: Config, content01: torch.Tensor, styles01: Sequence[torch.Tensor],
                 weights: Sequence[float]) -> None:
        self.vgg, self.cfg = vgg, cfg
        self.content_layers = list(dict.fromkeys(cfg.content_layers))
        self.style_layers = list(dict.fromkeys(cfg.style_layers))
        self.taps = list(dict.fromkeys([*self.content_layers, *self.style_layers]))
        pool = cfg.pooling
        with torch.no_grad():
            fc = vgg_features(vgg, content01, self.content_layers, pool)
            self.content_targets = {k: v.detach() for k, v in fc.items()}
            grams: dict[str, torch.Tensor] = {}
            for w, s in zip(weights, styles01, strict=True):
                fs = vgg_features(vgg, s, self.style_layers, pool)
                for k in self.style_layers:
                    g = w * gram_matrix(fs[k])
                    grams[k] = g if k not in grams else grams[k] + g
            self.style_targets = grams

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg = self.cfg
        feats = vgg_features(self.vgg, x / cfg.pixel_scale, self.taps, cfg.pooling)
        c = sum(content_loss(feats[k], self.content_targets[k], cfg.content_weight, cfg.normalize_gradients) for k in self.content_layers)
        s = sum(style_loss(feats[k], self.style_targets[k], cfg.style_weight, cfg.normalize_gradients) for k in self.style_layers)
        t = tv_loss(x, cfg.tv_weight) if cfg.tv_weight > 0 else x.new_zeros(())
        return c + s + t, {"content": c, "style": s, "tv": t}


def random_init(shape: Sequence[int], seed: int, pixel_scale: float) -> torch.Tensor:
    """neural-style's ``-init random``: 0.001 * N(0, 1) in Caffe's mean-subtracted 0-255 space, i.e. the mean
    pixel plus that noise, expressed in ``pixel_scale`` units.  Drawn on the CPU from its own generator."""
    g = torch.Generator().manual_seed(int(seed))
    noise = torch.randn(tuple(shape), generator=g) * 0.001
    mean = torch.tensor(VGG_MEAN).view(1, 3, 1, 1) * 255.0
    return (mean + noise) * (pixel_scale / 255.0)


def _progress_bar(total: int) -> Any:
    """A tqdm bar on a terminal, unless a token that does not ask for one is current (the server's); else None."""
    token = cancel.current()
    if (token is not None and not getattr(token, "show_progress", False)) or not sys.stderr.isatty():
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="gatys", dynamic_ncols=True)


def optimise(
    vgg: nn.Module,
    cfg: Config,
    content01: torch.Tensor,
    styles01: Sequence[torch.Tensor],
    *,
    seed: int,
    init01: torch.Tensor | None = None,
    device: torch.device | str = "cpu",
    on_iteration: Callable[[Record], None] | None = None,
) -> OptimisationResult:
    """Run the whole (multi-scale) optimisation; images ``(1, 3, H, W)`` in [0, 1] on any device."""
    device = torch.device(device)
    ps = float(cfg.pixel_scale)
    h, w = content01.shape[-2:]
    sizes = scale_sizes(h, w, cfg.image_size, cfg.scales, cfg.scale_factor)
    weights = blend_weights(cfg.style_blend_weights, len(styles01))
    total = cfg.num_iterations * len(sizes)
    result = OptimisationResult(image=content01, sizes=sizes, seed=seed)
    bar = _progress_bar(total)
    x: torch.Tensor | None = None
    step = 0
    try:
        for si, size in enumerate(sizes):
            cancel.check()
            long = max(size)
            content_s = resize(content01, size).to(device)
            style_long = int(math.ceil(cfg.style_scale * long))
            styles_s = [resize_long(s, style_long).to(device) for s in styles01]
            objective = Objective(vgg, cfg, content_s, styles_s, weights)
            if x is None:
                if cfg.init == "image":
                    start = resize(init01 if init01 is not None else content01, size) * ps
                else:
                    start = random_init((1, 3, *size), seed, ps)
            else:
                start = F.interpolate(x.detach(), size=size, mode="bilinear", align_corners=False)
            x = start.to(device=device, dtype=torch.float32).clone().requires_grad_(True)
            if cfg.optimizer == "lbfgs":
                opt: torch.optim.Optimizer = torch.optim.LBFGS(
                    [x], lr=1.0, max_iter=1, history_size=cfg.lbfgs_num_correction or 100,
                    tolerance_grad=-1.0, tolerance_change=-1.0,
                )
            else:
                opt = torch.optim.Adam([x], lr=cfg.learning_rate)
            parts: dict[str, float] = {}

            def closure() -> torch.Tensor:
                opt.zero_grad(set_to_none=False)
                loss, p = objective(x)
                loss.backward()
                parts.update({k: float(v.detach()) for k, v in p.items()}, total=float(loss.detach()))
                return loss

            for it in range(1, cfg.num_iterations + 1):
                cancel.check()
                opt.step(closure)
                if cfg.clamp == "every_step":
                    with torch.no_grad():
                        x.clamp_(0.0, ps)
                step += 1
                rec = Record(si, it, step, dict(parts))
                result.log.append(rec)
                if on_iteration is not None:
                    on_iteration(rec)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{parts['total']:.4g}", scale=f"{si + 1}/{len(sizes)}", refresh=False)
                report = cfg.print_iter and it % cfg.print_iter == 0
                preview = cfg.save_every and it % cfg.save_every == 0
                if report or preview or it == cfg.num_iterations:
                    info: dict[str, Any] = dict(step=step, total=total, losses=dict(parts), stage=f"scale {si + 1}/{len(sizes)} {size[1]}x{size[0]}",
                                                scale=si + 1, scales=len(sizes), iteration=it)
                    if preview:
                        info["preview"] = from_tensor((x.detach() / ps).clamp(0, 1), (0.0, 1.0))
                        result.previews += 1
                    cancel.progress(**info)
                    if report:
                        log.info("gatys: scale %d/%d iteration %d/%d: total %.6g (content %.6g, style %.6g, tv %.6g)", si + 1,
                                 len(sizes), it, cfg.num_iterations, parts["total"], parts["content"], parts["style"], parts["tv"])
        assert x is not None
        with torch.no_grad():
            if cfg.clamp != "none":
                x.clamp_(0.0, ps)
            loss, p = objective(x)
            result.final_losses = {**{k: float(v) for k, v in p.items()}, "total": float(loss)}
            out = (x.detach() / ps).clamp(0, 1).float()
            if cfg.original_colors:
                out = original_colors(out, content01.to(out.device))
        result.image = out.cpu()
        return result
    finally:
        if bar is not None:
            bar.close()


# -- requests ---------------------------------------------------------------------------------------------------


def request_images(req: StyleRequest, lo: int, hi: int) -> tuple[np.ndarray, list[np.ndarray], np.ndarray | None]:
    if "content" not in req.images:
        raise ValueError("gatys: the request has no content image")
    content = req.image("content")
    styles = req.images.get("style")
    if styles is None or (isinstance(styles, list) and not styles):
        raise ValueError("gatys: the request has no style image (give one or several under 'style')")
    styles = list(styles) if isinstance(styles, list | tuple) else [styles]
    init = req.images.get("init_image")
    if isinstance(init, list):
        init = init[0] if init else None
    for what, img in [("content", content), *(("style", s) for s in styles), *((("init_image", init),) if init is not None else ())]:
        hh, ww = img.shape[:2]
        if min(hh, ww) < lo or max(hh, ww) > hi:
            raise SizeError(f"gatys: {what} image is {ww}x{hh}; sides must be within [{lo}, {hi}]")
    return content, styles, init


def request_seed(req: StyleRequest, cfg: Config) -> int:
    """The request's seed (neural-style's ``-seed``), else a fresh one (its ``-seed -1``)."""
    if req.seed is not None:
        return int(req.seed)
    return int(np.random.SeedSequence().generate_state(1)[0] >> 1)


def run_optimisation(vgg: nn.Module, requests: Sequence[StyleRequest], cfg: Config, *, device: Any, lo: int, hi: int,
                     random_vgg: bool) -> list[StyleResult]:
    if random_vgg:
        warn_random_vgg()
    results = []
    for req in requests:  # one optimisation per request: nothing to batch
        t0 = time.perf_counter()
        content, styles, init = request_images(req, lo, hi)
        if cfg.style_blend_weights is not None and len(cfg.style_blend_weights) != len(styles):
            raise ValueError(f"gatys: style_blend_weights has {len(cfg.style_blend_weights)} value(s) but the request has {len(styles)} style image(s)")
        seed = request_seed(req, cfg)
        c = to_tensor(content, (0.0, 1.0))
        s = [to_tensor(im, (0.0, 1.0)) for im in styles]
        i = to_tensor(init, (0.0, 1.0)) if init is not None else None
        out = optimise(vgg, cfg, c, s, seed=seed, init01=i, device=device)
        info = {"losses": out.final_losses, "sizes": [list(z) for z in out.sizes], "iterations": len(out.log),
                "random_vgg": random_vgg, "seed": seed}
        results.append(StyleResult(image=from_tensor(out.image, (0.0, 1.0)), seed=seed, timings={"optimise_ms": (time.perf_counter() - t0) * 1000}, info=info))
    return results


def run_fast(sessions: Mapping[str, Any], requests: Sequence[StyleRequest], max_batch: int, multiple: int = 4) -> list[StyleResult]:
    """The ``transformer`` graph on each content image, same-size images stacked (up to ``max_batch``).  Sides
    that are not multiples of 4 are reflect-padded up and the output cropped back (the network halves twice)."""
    from collections import defaultdict

    sess = sessions["transformer"]
    tensors, shapes = [], []
    for req in requests:
        if "content" not in req.images:
            raise ValueError("gatys: the request has no content image")
        t = to_tensor(req.image("content"), (0.0, 1.0))
        h, w = t.shape[-2:]
        ph, pw = (-h) % multiple, (-w) % multiple
        if ph or pw:
            t = F.pad(t, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "replicate")
        tensors.append(t)
        shapes.append((h, w))
    groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for k, t in enumerate(tensors):
        groups[tuple(t.shape)].append(k)
    outs: list[torch.Tensor | None] = [None] * len(tensors)
    for idx in groups.values():
        for j in range(0, len(idx), max_batch):
            chunk = idx[j : j + max_batch]
            cancel.check()
            y = sess.run({"image": torch.cat([tensors[k] for k in chunk])})["stylized"]
            for n, k in enumerate(chunk):
                outs[k] = y[n : n + 1]
    res = []
    for (h, w), y in zip(shapes, outs, strict=True):
        assert y is not None
        res.append(StyleResult(image=from_tensor(y[..., :h, :w].float().cpu(), (0.0, 1.0))))
    return res

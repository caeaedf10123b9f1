"""The work AdaIN does *between* its two graphs, in plain torch, so it runs the same on every runtime.

The exported graphs are only the encoder (image -> relu4_1) and the decoder (features -> image).  Everything
else happens here, on the tensors the Sessions return (CPU, or CUDA for GPU sessions):

* the size rule (:func:`working_size`): the short side goes to ``content_size`` / ``style_size`` as the
  references' ``--content_size 512`` (0 keeps the image's size), both sides are rounded to multiples of 8
  (the encoder pools three times, the decoder upsamples three times, so a multiple of 8 comes back at exactly
  its size) and the result is kept inside the graphs' accepted range;
* colour preservation (:func:`styleengine.nn.adain_ops.coral` on the style *image*, before encoding, as
  ``test.py``/``test.lua`` do; it needs an SVD, which is why it is not in a graph);
* AdaIN from cached statistics, style interpolation, the foreground/background mask and the alpha blend
  (:func:`target_features`), with the reference's arithmetic in the reference's order, so a pipeline on torch
  sessions reproduces :class:`~styleengine_adain.nets.AdaINNet` bit for bit.

* the style-feature cache (:class:`StyleFeatureCache`): The style-feature cache: relu4_1 statistics of each style image, computed once and reused.
  
  AdaIN only needs a style image's per-channel mean and standard deviation at relu4_1 (also for
  interpolation and for the masked foreground/background variant: the *style* statistics are always
  taken over the whole style image).  A served style (the same painting for thousands of photos) then
  costs no encoder pass after the first request: each request runs the encoder once, on its content.
  
  Entries are keyed by :func:`image_key` -- sha256 of the style image's float32 pixels and shape -- plus
  everything that changes the statistics: the style size settings (``style_size``, ``crop``, the working
  size range) and the encoder session (runtime, device, precision), since ONNX Runtime and torch features
  differ in the last bits.  ``preserve_color`` recolours the style with the *content's* colours, so such
  requests bypass the cache.  The cache is bounded (least recently used entries are dropped) and
  thread-safe; the Style instance owns one and clears it whenever its weights change.

:func:`run` is the whole inference over Sessions, what :meth:`AdaINStyle.infer` calls.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import OrderedDict, defaultdict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from styleengine.nn.adain_ops import calc_mean_std, coral, masked_mean_std
from styleengine.preprocess import SizeError, from_tensor, resize, to_tensor
from styleengine.style import StyleRequest, StyleResult

from .config import MULTIPLE, Config

if TYPE_CHECKING:
    from .style import AdaINStyle

Stats = tuple[torch.Tensor, torch.Tensor]


def _round_to(v: float, m: int) -> int:
    return int(math.floor(v / m + 0.5)) * m


def working_size(h: int, w: int, size: int, lo: int, hi: int, multiple: int = MULTIPLE) -> tuple[int, int]:
    """The (height, width) an ``h`` x ``w`` image is processed at.

    1. scale so the short side is ``size`` (``size == 0``: keep the image's scale), keeping the aspect ratio;
    2. if the long side then exceeds ``hi``, scale down so it fits; if the short side is below ``lo``, scale up;
    3. round each side to the nearest multiple of ``multiple`` and clamp it to ``[lo, hi]`` (rounded inwards).
    """
    if h < 1 or w < 1:
        raise ValueError(f"image has no pixels ({w}x{h})")
    lo_m = -(-lo // multiple) * multiple
    hi_m = hi // multiple * multiple
    short, long = min(h, w), max(h, w)
    f = size / short if size > 0 else 1.0
    if long * f > hi_m:
        f = hi_m / long
    if short * f < lo_m:
        f = lo_m / short
    return tuple(min(max(_round_to(v * f, multiple), lo_m), hi_m) for v in (h, w))  # type: ignore[return-value]


def center_crop_square(t: torch.Tensor) -> torch.Tensor:
    """The central ``s`` x ``s`` square of an NCHW tensor, ``s`` the short side (the references' ``--crop``)."""
    h, w = t.shape[-2:]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return t[..., top : top + s, left : left + s]


def prepare_image(img: np.ndarray, size: int, lo: int, hi: int, *, crop: bool = False) -> torch.Tensor:
    """A request image (HxWx3 float in [0, 1]) as a ``(1, 3, H, W)`` tensor at its working size, values in [0, 1]."""
    t = to_tensor(img, (0.0, 1.0))
    if crop:
        t = center_crop_square(t)
    return resize(t, working_size(t.shape[-2], t.shape[-1], size, lo, hi))


def mask_tensor(img: np.ndarray) -> torch.Tensor:
    """A mask image (HxWx3 or HxW in [0, 1]) as ``(1, 1, H, W)`` grey values (mean of the channels)."""
    arr = np.asarray(img, dtype=np.float32)
    if arr.ndim == 3:
        arr = arr.mean(axis=2)
    if arr.ndim != 2:
        raise ValueError(f"mask must be an HxW or HxWx3 image, got shape {arr.shape}")
    return torch.from_numpy(np.ascontiguousarray(arr))[None, None]


def feature_mask(mask: torch.Tensor, size: Sequence[int], device: torch.device | str | None = None) -> torch.Tensor:
    """The mask on the relu4_1 grid: nearest-neighbour resize (Lua ``image.scale(..., 'simple')``), then >= 0.5."""
    small = F.interpolate(mask.float(), size=tuple(size), mode="nearest")
    return (small >= 0.5).to(device) if device is not None else small >= 0.5


def adain(content_feat: torch.Tensor, content_stats: Stats, style_stats: Stats) -> torch.Tensor:
    """AdaIN with precomputed statistics; the same operations, in the same order, as
    :func:`styleengine.nn.adain_ops.adaptive_instance_normalization` (so results are bit-identical)."""
    content_mean, content_std = content_stats
    style_mean, style_std = style_stats
    normalized = (content_feat - content_mean) / content_std
    return normalized * style_std + style_mean


def normalise_weights(weights: Sequence[float] | None, k: int) -> list[float] | None:
    """Interpolation weights divided by their sum (both references do).  ``None`` with one style."""
    if weights is None:
        return None if k == 1 else [1.0 / k] * k
    if len(weights) != k:
        raise ValueError(f"style_weights has {len(weights)} value(s) but the request has {k} style image(s)")
    total = float(sum(weights))
    if total <= 0 or min(weights) < 0:
        raise ValueError(f"style_weights must be non-negative with a positive sum, got {list(weights)}")
    return [float(w) / total for w in weights]


def target_features(
    content_feat: torch.Tensor,
    style_stats: Sequence[Stats],
    *,
    weights: Sequence[float] | None = None,
    mask: torch.Tensor | None = None,
    alpha: float = 1.0,
) -> torch.Tensor:
    """The decoder's input for one request (``content_feat``: ``(1, 512, h, w)``).

    * one style, no weights: ``AdaIN(f(c), f(s))`` (``test.py``'s ``style_transfer``);
    * weights (already normalised): ``sum_k w_k AdaIN(f(c), f(s_k))``, accumulated from zero in order, as
      ``test.py``/``test.lua``;
    * ``mask`` (bool, on the relu4_1 grid): the first style inside the mask and the second outside, each
      AdaIN-ed with the content statistics of its own region only (``test.lua -mask``).  With a single style
      the outside keeps the content features (the foreground alone is stylised);
    * finally ``feat * alpha + f(c) * (1 - alpha)``.
    """
    if not style_stats:
        raise ValueError("at least one style image is needed")
    if mask is not None:
        if len(style_stats) > 2 or weights is not None:
            raise ValueError("a mask takes one style (foreground only) or two (foreground, background), without style_weights")
        mask = mask.to(content_feat.device)
        fg = adain(content_feat, masked_mean_std(content_feat, mask), style_stats[0])
        if len(style_stats) == 2:
            bg = adain(content_feat, masked_mean_std(content_feat, ~mask), style_stats[1])
        else:
            bg = content_feat
        feat = torch.where(mask, fg, bg)
    else:
        content_stats = calc_mean_std(content_feat)
        if weights is None:
            if len(style_stats) != 1:
                raise ValueError(f"{len(style_stats)} styles need interpolation weights")
            feat = adain(content_feat, content_stats, style_stats[0])
        else:
            feat = torch.zeros_like(content_feat)
            for w, stats in zip(weights, style_stats, strict=True):
                feat = feat + w * adain(content_feat, content_stats, stats)
    return feat * alpha + content_feat * (1 - alpha)


# -- the style-feature cache ----------------------------------------------------------------------
def image_key(img: np.ndarray) -> str:
    """sha256 of an image's float32 pixels and shape (the request's array, before any resizing)."""
    arr = np.ascontiguousarray(img, dtype=np.float32)
    h = hashlib.sha256()
    h.update(repr(arr.shape).encode())
    h.update(memoryview(arr).cast("B"))
    return h.hexdigest()


@dataclass(frozen=True)
class CacheStats:
    hits: int
    misses: int
    size: int
    maxsize: int


class StyleFeatureCache:
    """A thread-safe LRU mapping of keys to (mean, std) relu4_1 statistics."""

    def __init__(self, maxsize: int = 128) -> None:
        if maxsize < 0:
            raise ValueError(f"cache size must be >= 0, got {maxsize}")
        self.maxsize = maxsize
        self._data: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            value = self._data.get(key)
            if value is None:
                self._misses += 1
                return None
            self._data.move_to_end(key)
            self._hits += 1
            return value

    def put(self, key: Hashable, value: Any) -> None:
        if self.maxsize == 0:
            return
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._data

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(self._hits, self._misses, len(self._data), self.maxsize)


# -- the whole inference over Sessions ----------------------------------------------------------------------
def run_grouped(session: Any, in_name: str, out_name: str, tensors: Sequence[torch.Tensor], max_batch: int) -> list[torch.Tensor]:
    """Run ``session`` on one-sample tensors, stacking those of the same shape (up to ``max_batch``)."""
    groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for i, t in enumerate(tensors):
        groups[tuple(t.shape[1:])].append(i)
    out: list[torch.Tensor | None] = [None] * len(tensors)
    for idx in groups.values():
        for k in range(0, len(idx), max_batch):
            chunk = idx[k : k + max_batch]
            res = session.run({in_name: torch.cat([tensors[i] for i in chunk])})[out_name]
            for j, i in enumerate(chunk):
                out[i] = res[j : j + 1]
    return out  # type: ignore[return-value]


def session_id(style: AdaINStyle, session: Any) -> tuple[Any, ...]:
    """What makes an encoder's statistics differ: runtime, device, precision and the weights' version."""
    return (getattr(session, "runtime", "?"), str(getattr(session, "device", "?")), getattr(session, "precision", None), style.weights_version)


def check_request(style: AdaINStyle, req: StyleRequest) -> tuple[np.ndarray, list[np.ndarray], np.ndarray | None]:
    """(content, styles, mask) of a request, with its sizes checked against the style's limits."""
    if "content" not in req.images:
        raise ValueError("adain: the request has no content image")
    content = req.image("content")
    styles = req.images.get("style")
    if styles is None or (isinstance(styles, list) and not styles):
        raise ValueError("adain: the request has no style image (give one or several under 'style')")
    styles = list(styles) if isinstance(styles, list | tuple) else [styles]
    mask = req.images.get("mask")
    if isinstance(mask, list):
        mask = mask[0] if mask else None
    lo_side, hi_side = style.inputs.min_side, style.inputs.max_side
    for what, img in [("content", content), *(("style", s) for s in styles), *((("mask", mask),) if mask is not None else ())]:
        h, w = img.shape[:2]
        if min(h, w) < lo_side or max(h, w) > hi_side:
            raise SizeError(f"adain: {what} image is {w}x{h}; sides must be within [{lo_side}, {hi_side}]")
    return content, styles, mask


def run(style: AdaINStyle, sessions: Mapping[str, Any], batch: Sequence[StyleRequest], cfg: Config) -> list[StyleResult]:
    """Encode each content once, each style once (or from the cache), AdaIN between, decode, restore."""
    t0 = time.perf_counter()
    enc, dec = sessions["encoder"], sessions["decoder"]
    lo, hi = style.size_range
    max_batch = style.batch.max
    checked = [check_request(style, req) for req in batch]
    for _, styles, mask in checked:
        if mask is not None and (len(styles) > 2 or cfg.style_weights is not None):
            raise ValueError("adain: with a mask give one style (foreground only) or two (foreground, background), and no style_weights")
    weights = [normalise_weights(cfg.style_weights, len(s)) if m is None else None for _, s, m in checked]
    contents = [prepare_image(c, cfg.content_size, lo, hi) for c, _, _ in checked]
    t1 = time.perf_counter()
    content_feats = run_grouped(enc, "image", "features", contents, max_batch)
    t2 = time.perf_counter()

    sid = session_id(style, enc)
    settings = (cfg.style_size, cfg.crop, lo, hi)
    infos: list[dict[str, Any]] = []
    targets = []
    for (_, styles, mask), w, content, fc in zip(checked, weights, contents, content_feats, strict=True):
        stats, hits, misses = [], 0, 0
        for s in styles:
            key = None if cfg.preserve_color else (image_key(s), settings, sid)
            cached = style.style_cache.get(key) if key is not None else None
            if cached is None:
                st = prepare_image(s, cfg.style_size, lo, hi, crop=cfg.crop)
                if cfg.preserve_color:
                    st = coral(st, content)
                cached = calc_mean_std(enc.run({"image": st})["features"])
                if key is not None:
                    style.style_cache.put(key, cached)
                    misses += 1
            else:
                hits += 1
            stats.append(cached)
        fmask = feature_mask(mask_tensor(mask), fc.shape[-2:], fc.device) if mask is not None else None
        targets.append(target_features(fc, stats, weights=w, mask=fmask, alpha=cfg.alpha))
        infos.append(
            {
                "working_size": list(content.shape[-2:]),
                "styles": len(styles),
                "style_weights": w,
                "mask": mask is not None,
                "style_cache": "bypass" if cfg.preserve_color else ("hit" if not misses else "miss" if not hits else "partial"),
                "style_cache_hits": hits,
                "style_cache_misses": misses,
            }
        )
    t3 = time.perf_counter()
    images = run_grouped(dec, "features", "image", targets, max_batch)
    t4 = time.perf_counter()
    results = []
    for (content, _, _), out, info, req in zip(checked, images, infos, batch, strict=True):
        out = resize(out.float().cpu(), tuple(content.shape[:2]))
        img = from_tensor(out, (0.0, 1.0)).astype(np.float32, copy=False)
        results.append(StyleResult(img, seed=req.seed, info=info))
    t5 = time.perf_counter()
    timings = {
        "prepare_ms": (t1 - t0) * 1e3,
        "encode_content_ms": (t2 - t1) * 1e3,
        "styles_ms": (t3 - t2) * 1e3,
        "decode_ms": (t4 - t3) * 1e3,
        "finish_ms": (t5 - t4) * 1e3,
        "total_ms": (t5 - t0) * 1e3,
    }
    for r in results:
        r.timings = dict(timings)
    return results

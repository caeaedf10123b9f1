"""Adaptive instance normalisation and CORAL colour transfer, as in AdaIN's reference code.

Reproduces ``function.py`` of naoto0804/pytorch-AdaIN (the PyTorch port of xunhuang1995/AdaIN-style):

* :func:`calc_mean_std` -- per-sample, per-channel mean and standard deviation over H x W.  The
  variance is torch's default *unbiased* estimator (divide by H*W - 1); ``eps`` is added to the
  variance before the square root.
* :func:`adaptive_instance_normalization` -- normalise the content features with their own statistics,
  then scale and shift them by the style features' std and mean (eq. 8 of the paper).
* :func:`coral` -- CORAL colour alignment: whiten ``source``'s channels (per-channel standardisation,
  then the inverse square root of ``X X^T + I``) and re-colour them with ``target``'s
  ``sqrt(Y Y^T + I)``, std and mean.  The reference's ``preserve_color`` option calls
  ``coral(style, content)`` -- the *content's* colour statistics are put on the *style image* before
  stylisation -- so the output keeps the content's colours.

Batch awareness (the reference handles one image at a time where noted):

* ``calc_mean_std`` / ``adaptive_instance_normalization`` already work per sample in the reference; here
  a style batch of 1 also broadcasts over a content batch of N (the reference asserts equal batches).
* ``coral`` takes ``(C, H, W)`` like the reference or ``(N, C, H, W)``; a target batch of 1 broadcasts.
  Source and target may differ in size.  The reference is CPU float32 only and 3 channels only; here any
  device, any channel count, half precision is computed in float32 and cast back.
* :func:`masked_mean_std` / :func:`masked_adaptive_instance_normalization` implement the statistics over
  a spatial region that the Lua reference's ``-mask`` option computes by gathering the masked columns.
"""

from __future__ import annotations

import torch

__all__ = [
    "calc_mean_std",
    "adaptive_instance_normalization",
    "masked_mean_std",
    "masked_adaptive_instance_normalization",
    "coral",
]


def _check_4d(name: str, t: torch.Tensor) -> None:
    if t.dim() != 4:
        raise ValueError(f"{name} must be a 4-D (N, C, H, W) tensor, got shape {tuple(t.shape)}")


def calc_mean_std(feat: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample, per-channel ``(mean, std)`` of ``(N, C, H, W)`` features, each shaped ``(N, C, 1, 1)``.

    ``std = sqrt(var_unbiased + eps)`` -- exactly the reference's definition.
    """
    _check_4d("feat", feat)
    n, c = feat.shape[:2]
    flat = feat.reshape(n, c, -1)
    std = (flat.var(dim=2) + eps).sqrt().reshape(n, c, 1, 1)
    mean = flat.mean(dim=2).reshape(n, c, 1, 1)
    return mean, std


def adaptive_instance_normalization(content_feat: torch.Tensor, style_feat: torch.Tensor) -> torch.Tensor:
    """AdaIN(x, y) = std(y) * (x - mean(x)) / std(x) + mean(y), statistics per sample and channel.

    ``style_feat`` may have a different spatial size; its batch must equal the content's or be 1.
    """
    _check_4d("content_feat", content_feat)
    _check_4d("style_feat", style_feat)
    if content_feat.shape[1] != style_feat.shape[1] or style_feat.shape[0] not in (1, content_feat.shape[0]):
        raise ValueError(
            f"AdaIN: content {tuple(content_feat.shape)} and style {tuple(style_feat.shape)} features need the "
            "same channel count and the same batch size (or a style batch of 1)"
        )
    style_mean, style_std = calc_mean_std(style_feat)
    content_mean, content_std = calc_mean_std(content_feat)
    normalized = (content_feat - content_mean) / content_std
    return normalized * style_std + style_mean


def masked_mean_std(feat: torch.Tensor, mask: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`calc_mean_std` restricted to the positions where ``mask`` (``(N, 1, H, W)``, 0/1) is 1.

    Same estimator as :func:`calc_mean_std` (unbiased variance + eps, the PyTorch port's convention; the
    Lua original's AdaIN layer divides by n).  A region of fewer than two positions has no unbiased
    variance; its variance is taken as 0 (std = sqrt(eps)) instead of NaN.
    """
    _check_4d("feat", feat)
    _check_4d("mask", mask)
    mask = mask.to(feat.dtype)
    count = mask.sum(dim=(2, 3), keepdim=True)
    mean = (feat * mask).sum(dim=(2, 3), keepdim=True) / count.clamp(min=1)
    sq = ((feat - mean) ** 2 * mask).sum(dim=(2, 3), keepdim=True)
    var = sq / (count - 1).clamp(min=1)
    return mean, (var + eps).sqrt()


def masked_adaptive_instance_normalization(content_feat: torch.Tensor, style_feat: torch.Tensor,
                                           mask: torch.Tensor) -> torch.Tensor:
    """AdaIN with the content statistics taken over the ``mask`` region only (``(N, 1, H, W)``, 0/1).

    This is the Lua reference's spatial control: it gathers the content feature columns inside the
    region, applies AdaIN to them alone with the whole style image's statistics, and scatters them
    back.  Values outside the region are returned too but are meaningless; combine regions with
    ``torch.where``.
    """
    _check_4d("content_feat", content_feat)
    style_mean, style_std = calc_mean_std(style_feat)
    content_mean, content_std = masked_mean_std(content_feat, mask)
    return (content_feat - content_mean) / content_std * style_std + style_mean


def _flatten_mean_std(feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(N, C, H, W)`` -> flattened ``(N, C, H*W)``, per-channel mean and unbiased std ``(N, C, 1)``."""
    flat = feat.reshape(feat.shape[0], feat.shape[1], -1)
    return flat, flat.mean(dim=-1, keepdim=True), flat.std(dim=-1, keepdim=True)


def _mat_sqrt(x: torch.Tensor) -> torch.Tensor:
    """Square root of (a batch of) symmetric positive-definite matrices via SVD: ``U diag(sqrt(S)) V^T``."""
    u, s, vh = torch.linalg.svd(x)
    return u @ torch.diag_embed(s.sqrt()) @ vh


def coral(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Return ``source`` re-coloured to ``target``'s channel means and covariance (CORAL).

    Accepts ``(C, H, W)`` (as the reference) or ``(N, C, H, W)``; the result has ``source``'s shape and
    dtype.  As in the reference, covariances are ``Z Z^T + I`` of the per-channel standardised pixels
    ``Z`` (not divided by the pixel count), so the match is exact up to an O(1/(H*W)) term.
    """
    single = source.dim() == 3
    if single:
        source = source.unsqueeze(0)
    if target.dim() == 3:
        target = target.unsqueeze(0)
    _check_4d("source", source)
    _check_4d("target", target)
    if source.shape[1] != target.shape[1] or target.shape[0] not in (1, source.shape[0]):
        raise ValueError(
            f"coral: source {tuple(source.shape)} and target {tuple(target.shape)} need the same channel "
            "count and the same batch size (or a target batch of 1)"
        )
    out_dtype = source.dtype
    work = torch.promote_types(out_dtype, torch.float32)
    src, tgt = source.to(work), target.to(work)
    eye = torch.eye(src.shape[1], dtype=work, device=src.device)

    src_f, src_mean, src_std = _flatten_mean_std(src)
    src_norm = (src_f - src_mean) / src_std
    src_cov_eye = src_norm @ src_norm.transpose(1, 2) + eye

    tgt_f, tgt_mean, tgt_std = _flatten_mean_std(tgt)
    tgt_norm = (tgt_f - tgt_mean) / tgt_std
    tgt_cov_eye = tgt_norm @ tgt_norm.transpose(1, 2) + eye

    transfer = _mat_sqrt(tgt_cov_eye) @ (torch.linalg.inv(_mat_sqrt(src_cov_eye)) @ src_norm)
    out = (transfer * tgt_std + tgt_mean).reshape(source.shape).to(out_dtype)
    return out[0] if single else out

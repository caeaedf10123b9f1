"""Helpers shared by the gatys tests (importable: conftest puts this folder on sys.path)."""

from __future__ import annotations

import numpy as np
import torch


def smooth_image(h: int, w: int, seed: int) -> np.ndarray:
    """A float32 HxWx3 image in [0, 1] with correlated colours and some structure (not white noise)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.nn.functional.interpolate(torch.rand(1, 3, max(h // 6, 2), max(w // 6, 2), generator=g), size=(h, w),
                                           mode="bicubic", align_corners=False)[0]
    mix = torch.rand(3, 3, generator=g) + torch.eye(3)
    img = (mix @ base.reshape(3, -1)).reshape(3, h, w) / mix.sum(1, keepdim=True).reshape(3, 1, 1)
    img = img + 0.15 * torch.rand(3, h, w, generator=g)
    return img.clamp(0, 1).permute(1, 2, 0).numpy().astype(np.float32)

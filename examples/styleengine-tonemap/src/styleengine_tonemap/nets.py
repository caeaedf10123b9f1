"""The style's own torch module (blocks two styles share would live in ``styleengine.nn``).

``ToneMapNet``: a per-pixel colour network (1x1 convolutions) plus, optionally, a local-context branch that
sees the image at ``1/context`` resolution, so the mapping can depend on the neighbourhood's brightness
(local tone mapping) while staying cheap at any size.  The output is the input plus a learned correction,
clipped to [0, 1].  Because of the context branch the sides must be multiples of ``context``: the style's
input contract pads the image up to one and crops the output back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ToneMapNet(nn.Module):
    """``image`` (N, 3, H, W) RGB in [0, 1] -> ``graded`` (N, 3, H, W) in [0, 1]; H, W multiples of ``context``."""

    def __init__(self, hidden: int = 16, context: int = 4) -> None:
        super().__init__()
        self.context = context
        self.pixel = nn.Conv2d(3, hidden, 1)
        self.local = nn.Conv2d(3, hidden, 3, padding=1, padding_mode="replicate") if context else None
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(hidden, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, 3, 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        features = self.pixel(image)
        if self.local is not None:
            small = F.avg_pool2d(image, self.context)
            features = features + F.interpolate(self.local(small), scale_factor=self.context, mode="nearest")
        return (image + self.head(features)).clamp(0.0, 1.0)

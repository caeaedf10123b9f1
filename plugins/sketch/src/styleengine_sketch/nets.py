"""The sketch graph in plain torch: luma, blurred negative, colour dodge.

Step by step what scikit-image computes for the demo's original filter:

* luma ``0.2125 R + 0.7154 G + 0.0721 B`` (``skimage.color.rgb2gray``, ITU-R BT.709 weights);
* ``skimage.filters.gaussian(1 - luma, sigma)``: a separable Gaussian whose radius is
  ``int(truncate * sigma + 0.5)`` and whose taps ``exp(-x^2 / 2 sigma^2)`` sum to 1 (scipy.ndimage's
  ``gaussian_filter1d``), edges extended by repeating the border pixel (``mode="nearest"``: replicate padding);
* colour dodge ``luma / max(1 - blurred, 1e-3)``, clipped to [0, 1].

The exponent (``Config.gamma``) is applied by the pipeline, so one exported graph serves every value.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: ``skimage.color.rgb2gray``'s weights.
LUMA = (0.2125, 0.7154, 0.0721)
#: The dodge's denominator floor (keeps white areas white instead of dividing by zero).
DODGE_FLOOR = 1e-3


def gaussian_taps(sigma: float, truncate: float) -> torch.Tensor:
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    taps = torch.exp(-0.5 * (x / sigma) ** 2)
    return (taps / taps.sum()).float()


class SketchFilter(nn.Module):
    """``image`` (N, 3, H, W) RGB in [0, 1] -> ``dodge`` (N, 3, H, W): the clipped colour dodge, grey as RGB."""

    def __init__(self, sigma: float = 3.0, truncate: float = 4.0) -> None:
        super().__init__()
        taps = gaussian_taps(sigma, truncate)
        self.radius = (taps.numel() - 1) // 2
        # Buffers, not parameters, and not saved: the filter is fixed by its config.
        self.register_buffer("luma", torch.tensor(LUMA).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("taps_h", taps.view(1, 1, 1, -1), persistent=False)
        self.register_buffer("taps_v", taps.view(1, 1, -1, 1), persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        grey = (image * self.luma).sum(1, keepdim=True)
        r = self.radius
        neg = F.pad(1.0 - grey, (r, r, r, r), mode="replicate")
        blurred = F.conv2d(F.conv2d(neg, self.taps_h), self.taps_v)
        dodge = (grey / torch.clamp(1.0 - blurred, min=DODGE_FLOOR)).clamp(0.0, 1.0)
        return dodge.expand(-1, 3, -1, -1)

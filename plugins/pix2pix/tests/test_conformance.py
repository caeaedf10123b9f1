"""The engine's conformance suite, for both variants of a tiny pix2pix (unet_128, ngf 4)."""

from __future__ import annotations

from styleengine.testing import StyleConformance
from styleengine_pix2pix import Pix2Pix


class TestPix2PixEval(StyleConformance):
    style_class = Pix2Pix
    model_config = {"netG": "unet_128", "ngf": 4}
    variant = "eval"
    image_size = (96, 150)  # resized to 128 x 128, restored to 96 x 150


class TestPix2PixReference(StyleConformance):
    style_class = Pix2Pix
    model_config = {"netG": "unet_128", "ngf": 4}
    variant = "reference"
    image_size = (96, 150)
    # per-image statistics and per-seed masks: a batch equals its single runs up to float32 rounding (torch's
    # CPU ConvTranspose2d accumulates differently for odd batch sizes: ~1e-7; even ones are bitwise equal here)
    batch_atol = 1e-6

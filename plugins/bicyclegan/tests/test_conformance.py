"""The engine's conformance suite for a tiny BicycleGAN (unet_128 / ngf 4, resnet_128 encoder).

The suite's requests carry every image field, so the optional ``style`` example is there too: z is the
encoder's mean of it, one output per request, whose size is the request's."""

from __future__ import annotations

from styleengine.testing import StyleConformance
from styleengine_bicyclegan import BicycleGAN


class TestBicycleGAN(StyleConformance):
    style_class = BicycleGAN
    model_config = {"netG": "unet_128", "ngf": 4, "nef": 4, "netE": "resnet_128"}
    image_size = (96, 150)  # resized to 128 x 128, restored to 96 x 150
    params = {"n_samples": 1}

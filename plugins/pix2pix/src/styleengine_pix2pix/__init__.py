"""``pix2pix``: conditional-GAN image-to-image translation (Isola et al., "Image-to-Image Translation
with Conditional Adversarial Networks", CVPR 2017), faithful to junyanz/pytorch-CycleGAN-and-pix2pix.

The plugin's rooms: :mod:`.style` (the Style), :mod:`.config` (configs), :mod:`.nets` (the exported
generator graph), :mod:`.pipeline` (inference over Sessions), :mod:`.train`, :mod:`.data` (paired
datasets), :mod:`.importer` (reference checkpoints and releases).  See the plugin README.
"""

from __future__ import annotations

from typing import Any

import styleengine

from .config import DEFAULT_SEED, Config, ModelConfig, TrainConfig
from .importer import PRETRAINED
from .style import Pix2Pix

__all__ = ["DEFAULT_SEED", "PRETRAINED", "Config", "ModelConfig", "Pix2Pix", "TrainConfig", "register_styles"]
__version__ = "0.1.0"

@styleengine.hookimpl
def register_styles(register: Any) -> None:
    register(Pix2Pix)

"""``bicyclegan``: multimodal image-to-image translation (Zhu et al., "Toward Multimodal Image-to-Image
Translation", NeurIPS 2017), faithful to junyanz/BicycleGAN.

The plugin's rooms: :mod:`.style` (the Style), :mod:`.config` (configs), :mod:`.nets` (the exported
``generator`` and ``encoder`` graphs), :mod:`.pipeline` (inference over Sessions), :mod:`.train`,
:mod:`.importer` (reference checkpoints and releases).  See the plugin README.
"""

from __future__ import annotations

from typing import Any

import styleengine

from .config import DEFAULT_SEED, Config, ModelConfig, TrainConfig
from .importer import PRETRAINED
from .style import BicycleGAN

__all__ = ["DEFAULT_SEED", "PRETRAINED", "BicycleGAN", "Config", "ModelConfig", "TrainConfig", "register_styles"]
__version__ = "0.1.0"


@styleengine.hookimpl
def register_styles(register: Any) -> None:
    register(BicycleGAN)

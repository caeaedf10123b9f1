"""styleengine-adain: arbitrary style transfer with adaptive instance normalisation (Huang & Belongie, 2017).

The plugin's rooms: :mod:`.style` (the ``adain`` Style), :mod:`.config` (configs and the reference's training
defaults), :mod:`.nets` (decoder, encoder-AdaIN-decoder network, training loss, export wrappers),
:mod:`.pipeline` (size rule, AdaIN arithmetic between the two graphs, the style-feature cache, inference over
Sessions), :mod:`.importer` (the reference's checkpoints and release), :mod:`.train`.
"""

from __future__ import annotations

from typing import Any

import styleengine

from .config import Config, ModelConfig, TrainConfig
from .style import AdaINStyle

__all__ = ["AdaINStyle", "Config", "ModelConfig", "TrainConfig", "register_styles"]


@styleengine.hookimpl
def register_styles(register: Any) -> None:
    register(AdaINStyle)

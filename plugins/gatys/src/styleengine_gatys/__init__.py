"""styleengine-gatys: neural style by optimisation (Gatys, Ecker & Bethge, CVPR 2016) and its fast
feed-forward network (Johnson, Alahi & Fei-Fei, ECCV 2016).

The plugin's rooms: :mod:`.style` (the ``gatys`` Style, variants ``default`` = optimisation and ``fast`` =
TransformerNet), :mod:`.config` (per-request options with jcjohnson/neural-style's flags and defaults, the
``tutorial`` preset, the training options of pytorch/examples ``fast_neural_style``), :mod:`.nets` (losses,
Gram matrix, TransformerNet), :mod:`.pipeline` (the optimisation, multi-scale, colour transfer),
:mod:`.importer` (loss-network weights and published ``fast_neural_style`` models), :mod:`.train`.
"""

from __future__ import annotations

from typing import Any

import styleengine

from .config import Config, ModelConfig, TrainConfig
from .style import GatysStyle

__all__ = ["Config", "GatysStyle", "ModelConfig", "TrainConfig", "register_styles"]


@styleengine.hookimpl
def register_styles(register: Any) -> None:
    register(GatysStyle)

"""``tonemap``: a learnable colour / tone-mapping network (the template third-party styleengine plugin).

This module is what the entry point names: the ``register_styles`` hookimpl and the public names, nothing else.
"""

from __future__ import annotations

from typing import Any

import styleengine

from .config import Config, ModelConfig, TrainConfig
from .style import Tonemap

__all__ = ["Config", "ModelConfig", "Tonemap", "TrainConfig", "register_styles"]
__version__ = "0.1.0"


@styleengine.hookimpl
def register_styles(register: Any) -> None:
    register(Tonemap)

"""DreamBooth for styleengine: the ``dreambooth`` style (alias ``db``).

Registered through the ``styleengine`` entry-point group like any third-party plugin.  See README.md.
"""

from __future__ import annotations

import styleengine

from .config import Config, ModelConfig, TrainConfig
from .style import DreamBoothStyle

__all__ = ["Config", "DreamBoothStyle", "ModelConfig", "TrainConfig"]


@styleengine.hookimpl
def register_styles(register):  # noqa: ANN001, ANN201 - the hookspec types it
    register(DreamBoothStyle)

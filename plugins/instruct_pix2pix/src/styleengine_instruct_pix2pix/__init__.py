"""InstructPix2Pix for styleengine: the ``instruct_pix2pix`` style (aliases ``instruct-pix2pix``, ``ip2p``).

Registered through the ``styleengine`` entry-point group like any third-party plugin.  See README.md.
"""

from __future__ import annotations

import styleengine

from .style import HUB_REF, Config, InstructPix2PixStyle, ModelConfig, TrainConfig

__all__ = ["HUB_REF", "Config", "InstructPix2PixStyle", "ModelConfig", "TrainConfig"]


@styleengine.hookimpl
def register_styles(register):  # noqa: ANN001, ANN201 - the hookspec types it
    register(InstructPix2PixStyle)

"""``sketch``: a fixed photo -> pencil-sketch filter (colour dodge of the grey image by its blurred negative).

It needs no weights, runs on every runtime (one exportable graph) and is cheap: the offline teacher that
``make demo`` distils into pix2pix with ``engine distill``.  See the plugin README.
"""

from __future__ import annotations

from typing import Any

import styleengine

from .config import Config, ModelConfig
from .style import Sketch

__all__ = ["Config", "ModelConfig", "Sketch", "register_styles"]
__version__ = "0.1.0"


@styleengine.hookimpl
def register_styles(register: Any) -> None:
    register(Sketch)

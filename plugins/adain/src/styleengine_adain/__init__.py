"""styleengine-adain: arbitrary style transfer with adaptive instance normalisation (Huang & Belongie, 2017).

* :mod:`styleengine_adain.net` -- the decoder, the encoder-AdaIN-decoder network, its training loss and the
  reference-checkpoint importers;
* :mod:`styleengine_adain.style` -- the ``adain`` Style (graphs, pipeline, importers, training entry);
* :mod:`styleengine_adain.pipeline` -- the size rule and the AdaIN arithmetic between the two graphs;
* :mod:`styleengine_adain.cache` -- the per-style-image feature cache;
* :mod:`styleengine_adain.train` -- the training loop.
"""

from __future__ import annotations

from typing import Any

import styleengine

from .style import AdaINStyle, Config, ModelConfig, TrainConfig

__all__ = ["AdaINStyle", "Config", "ModelConfig", "TrainConfig", "register_styles"]


@styleengine.hookimpl
def register_styles(register: Any) -> None:
    register(AdaINStyle)

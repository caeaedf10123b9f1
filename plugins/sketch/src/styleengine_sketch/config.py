"""The sketch filter's options: the blur (architecture: it sizes the graph's kernel) and the darkening
exponent (per request)."""

from __future__ import annotations

from pydantic import Field

from styleengine.style import StyleConfig


class ModelConfig(StyleConfig):
    """Built into the graph: the Gaussian kernel of the blurred negative."""

    sigma: float = Field(3.0, ge=0.5, le=20.0, description="standard deviation (px) of the Gaussian blur of the negative")
    truncate: float = Field(4.0, ge=1.0, le=8.0, description="kernel radius in standard deviations (scipy/scikit-image's truncate)")


class Config(StyleConfig):
    """Per request."""

    gamma: float = Field(2.0, ge=0.25, le=8.0, description="exponent applied to the dodged image (larger: darker strokes)")

"""Synthetic requests for a style: images, texts and seeds as its InputContract asks.

Images are deterministic (a seed) mixtures of smooth colour gradients and noise: content a real
photograph's statistics are closer to than flat grey, so data-dependent work (and PNG decoding on the
HTTP path) is representative.  Latency does not depend on what the pixels show for these networks.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["contract_of", "synthetic_image", "make_requests", "png_bytes", "with_size", "DEFAULT_TEXT", "SIZE_PLACEHOLDER"]

DEFAULT_TEXT = "turn it into a watercolour painting of a lighthouse at dusk"

#: A parameter given as this string takes the benchmark's image size (``--set resolution={size}``), for
#: styles that work at a resolution of their own rather than the image's.
SIZE_PLACEHOLDER = "{size}"


def with_size(params: Mapping[str, Any], size: int) -> dict[str, Any]:
    return {k: size if v == SIZE_PLACEHOLDER else v for k, v in params.items()}


def contract_of(style: Any) -> Any:
    """A style's InputContract: an instance's refined one where it has it (pix2pix: the size multiple
    follows the model), else the class's (field names, seeding and value range are the same)."""
    from ..style import InputContract

    refined = getattr(style, "input_contract", None)
    return refined if isinstance(refined, InputContract) else style.inputs


def synthetic_image(height: int, width: int | None = None, seed: int = 0) -> np.ndarray:
    """float32 H×W×3 in [0, 1]."""
    width = width or height
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.empty((height, width, 3), np.float32)
    for c in range(3):
        fx, fy, ph = rng.uniform(0.5, 4.0), rng.uniform(0.5, 4.0), rng.uniform(0, 2 * np.pi)
        img[..., c] = 0.5 + 0.35 * np.sin(2 * np.pi * (fx * x / width + fy * y / height) + ph)
    img += rng.normal(0.0, 0.08, size=img.shape).astype(np.float32)
    return np.clip(img, 0.0, 1.0)


def make_requests(style: Any, batch: int, size: int, *, seed: int = 0, texts: Mapping[str, str] | None = None) -> list[Any]:
    """``batch`` StyleRequests of ``size``×``size`` images for every required image field."""
    from ..style import StyleRequest

    contract = contract_of(style)
    texts = dict(texts or {})
    reqs = []
    for i in range(batch):
        images: dict[str, Any] = {}
        for k, f in enumerate(contract.images):
            if not f.required:
                continue
            img = synthetic_image(size, size, seed=seed * 1000 + i * 10 + k)
            images[f.name] = [img] if f.multiple else img
        tx = {t.name: texts.get(t.name, DEFAULT_TEXT) for t in contract.texts if t.required or t.name in texts}
        reqs.append(StyleRequest(images=images, texts=tx, seed=(seed + i) if contract.seeded else None, id=f"bench-{i}"))
    return reqs


def png_bytes(img: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()

"""Conditioning images for ControlNets, computed in the pipeline from the content image.

``canny`` is OpenCV's Canny edge detector on the 8-bit RGB image, edges replicated to three channels,
as the ControlNet canny references do (diffusers' ControlNet examples, LSAST's ``test.py``): white edges
on black, float32 in [0, 1] ready for the ``controlnet_cond`` input.
"""

from __future__ import annotations

import numpy as np

__all__ = ["canny"]


def canny(image: np.ndarray, low: int = 100, high: int = 200) -> np.ndarray:
    """Canny edges of an HxWx3 RGB image (uint8, or float in [0, 1]) → HxWx3 float32 in {0, 1}.

    ``low`` / ``high`` are ``cv2.Canny``'s hysteresis thresholds (reference: 100 / 200).  Float input is
    quantised to uint8 by rounding first (the references hand cv2 a uint8 array)."""
    try:
        import cv2
    except ImportError as exc:  # pragma: no cover - part of the diffusion extra
        raise ImportError("canny conditioning needs OpenCV: pip install 'styleengine[diffusion]' (opencv-python-headless)") from exc
    if not 0 <= low <= high:
        raise ValueError(f"canny thresholds must satisfy 0 <= low <= high, got low={low}, high={high}")
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"canny expects an HxWx3 RGB image, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = np.clip(np.rint(arr.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
    edges = cv2.Canny(np.ascontiguousarray(arr), int(low), int(high))
    return np.repeat(edges[:, :, None], 3, axis=2).astype(np.float32) / 255.0

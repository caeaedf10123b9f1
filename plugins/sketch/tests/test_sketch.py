"""The sketch filter: conformance, parity with scikit-image's computation, options, no weights needed."""

from __future__ import annotations

import numpy as np
import pytest

from styleengine.testing import StyleConformance
from styleengine_sketch import Sketch


class TestSketchConformance(StyleConformance):
    style_class = Sketch
    image_size = (40, 56)
    export_points = ("min", "opt")  # max is 8 x 1024 x 1024: minutes of ONNX Runtime on two cores


def _skimage_sketch(rgb: np.ndarray, sigma: float, gamma: float) -> np.ndarray:
    """The filter as scikit-image computes it (what the demo used before the style existed)."""
    from skimage import color, filters

    grey = color.rgb2gray(rgb)
    blurred_negative = filters.gaussian(1.0 - grey, sigma=sigma)
    return np.clip(grey / np.maximum(1.0 - blurred_negative, 1e-3), 0.0, 1.0) ** gamma


def _run(style: Sketch, images: list[np.ndarray], **params: float) -> list[np.ndarray]:
    from styleengine.runtime.base import SessionOptions
    from styleengine.runtime.torch import TorchSession
    from styleengine.style import StyleRequest

    sessions = {s.name: TorchSession(s, SessionOptions()) for s in style.graphs()}
    reqs = [StyleRequest(images={"image": im}) for im in images]
    return [r.image for r in style.infer(sessions, reqs, style.Config(**params))]


@pytest.mark.parametrize(("sigma", "gamma"), [(3.0, 2.0), (1.5, 1.0)])
def test_equals_skimage(sigma: float, gamma: float) -> None:
    from skimage import data

    rgb = (data.astronaut()[::8, ::8] / 255.0).astype(np.float32)  # 64 x 64, the border matters at this size
    [got] = _run(Sketch({"sigma": sigma}), [rgb], gamma=gamma)
    want = _skimage_sketch(rgb, sigma, gamma)
    assert got.shape == (64, 64, 3)
    np.testing.assert_allclose(got, np.repeat(want[..., None], 3, -1), atol=2e-5)


def test_needs_no_weights_and_has_nothing_to_save() -> None:
    style = Sketch()
    style.require_weights(allow_random=False)  # no WeightsRequiredError
    assert style.state_dict() == {}


def test_tiny_image_is_resized_into_the_graph_and_back() -> None:
    rng = np.random.default_rng(0)
    [out] = _run(Sketch(), [rng.random((9, 13, 3), dtype=np.float32)])
    assert out.shape == (9, 13, 3) and 0.0 <= out.min() and out.max() <= 1.0


def test_config_bounds() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        Sketch.Config(gamma=0.0)
    with pytest.raises(ValidationError):
        Sketch.ModelConfig(sigma=100.0)

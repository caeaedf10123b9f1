"""Property-based fuzzing (hypothesis, bounded) of the decode-and-validate path every upload goes through:
whatever the bytes, filename and content type, :func:`styleengine.data.decode_image` returns a finite float
image inside the limits or raises one of the engine's own :class:`ImageDecodeError`s (with an HTTP status
below 500) — never another exception.  Inputs: random bytes, and valid PNG / JPEG / WebP files with bytes
flipped, cut, or spliced."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from imaging import encode, noise
from PIL import Image

from styleengine.data import ImageLimits, decode_image
from styleengine.data.errors import ImageDecodeError

LIMITS = ImageLimits(max_bytes=64 * 1024, max_pixels=128 * 128, max_side=256)
SEEDS = {fmt: encode(Image.fromarray(noise(16, 24, i)), fmt) for i, fmt in enumerate(("PNG", "JPEG", "WEBP"))}
SETTINGS = settings(max_examples=1000, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


def check(data: bytes, filename: str | None = None, content_type: str | None = None) -> None:
    try:
        out = decode_image(data, limits=LIMITS, filename=filename, content_type=content_type)
    except ImageDecodeError as exc:
        assert 400 <= exc.http_status < 500 and exc.code and exc.detail
        return
    arr = out.array
    assert arr.ndim == 3 and arr.shape[2] == 3 and arr.shape[0] * arr.shape[1] <= LIMITS.max_pixels
    assert np.isfinite(arr).all() and arr.min() >= 0 and arr.max() <= 1


@SETTINGS
@given(st.binary(max_size=4096))
def test_random_bytes(data):
    check(data)


@st.composite
def mutated(draw):
    fmt = draw(st.sampled_from(sorted(SEEDS)))
    data = bytearray(SEEDS[fmt])
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "splice"]))
        i = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[i] ^= draw(st.integers(1, 255))
        elif kind == "cut":
            del data[i:]
        elif kind == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=64))
        else:
            other = SEEDS[draw(st.sampled_from(sorted(SEEDS)))]
            data[i:] = other[draw(st.integers(0, len(other) - 1)):]
    return bytes(data)


@SETTINGS
@given(mutated(), st.sampled_from([None, "a.png", "a.jpg", "a.webp", "a.gif", "../x", ""]),
       st.sampled_from([None, "image/png", "image/jpeg", "image/webp", "text/plain", "application/octet-stream", ""]))
def test_mutated_images(data, filename, content_type):
    check(data, filename, content_type)


@pytest.mark.parametrize("fmt", sorted(SEEDS))
def test_the_seeds_decode(fmt):
    check(SEEDS[fmt])
    assert decode_image(SEEDS[fmt], limits=LIMITS) is not None

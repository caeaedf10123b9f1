"""Image input/output for serving and training: a decoder with limits, dataset folder readers, preflight.

See :mod:`styleengine.data.decode` for the decoding rules (format allow-list, limits, EXIF orientation,
alpha on a white background, 16-bit scaling) and :mod:`styleengine.data.errors` for the error types.
"""

from __future__ import annotations

from .decode import (
    DEFAULT_LIMITS,
    SUPPORTED_FORMATS,
    DecodedImage,
    ImageInfo,
    ImageLimits,
    decode_image,
    encode_image,
    from_uint8,
    probe_image,
    read_image,
    save_image,
    sniff_format,
    to_uint8,
)
from .errors import (
    AnimatedImageError,
    CorruptImageError,
    DatasetError,
    EmptyImageError,
    FormatMismatchError,
    ImageDecodeError,
    ImageTooLargeError,
    TooManyPixelsError,
    TruncatedImageError,
    UnsupportedFormatError,
)
from .folders import IMAGE_SUFFIXES, find_images, match_pairs
from .preflight import BadFile, OnBadFile, PreflightReport, preflight_images

__all__ = [
    "DEFAULT_LIMITS",
    "IMAGE_SUFFIXES",
    "SUPPORTED_FORMATS",
    "AnimatedImageError",
    "BadFile",
    "CorruptImageError",
    "DatasetError",
    "DecodedImage",
    "EmptyImageError",
    "FormatMismatchError",
    "ImageDecodeError",
    "ImageInfo",
    "ImageLimits",
    "ImageTooLargeError",
    "OnBadFile",
    "PreflightReport",
    "TooManyPixelsError",
    "TruncatedImageError",
    "UnsupportedFormatError",
    "decode_image",
    "encode_image",
    "find_images",
    "from_uint8",
    "match_pairs",
    "preflight_images",
    "probe_image",
    "read_image",
    "save_image",
    "sniff_format",
    "to_uint8",
]

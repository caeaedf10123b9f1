"""Errors raised by the image decoder and the dataset readers.

Every way an image can be refused has its own class, so that callers can tell them apart without parsing
messages:

* the HTTP server turns an :class:`ImageDecodeError` into a 4xx JSON body with :meth:`~ImageDecodeError.to_dict`
  (``code`` is short and machine-readable, ``http_status`` is the status to answer with, ``detail`` is the
  human message), never a 500;
* training data loaders catch them per file, and :mod:`styleengine.data.preflight` collects them into a report.

All of them subclass :class:`ValueError` (bad input, not a bug), so code that only knows "the value was
bad" still works.  ``detail`` names the problem and the limit or observed value; ``source`` (a path, when the
bytes came from a file) is prefixed to ``str(error)`` but kept out of ``detail`` so that a server never echoes
file-system paths to clients.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from .preflight import BadFile

__all__ = [
    "AnimatedImageError",
    "CorruptImageError",
    "DatasetError",
    "EmptyImageError",
    "FormatMismatchError",
    "ImageDecodeError",
    "ImageTooLargeError",
    "TooManyPixelsError",
    "TruncatedImageError",
    "UnsupportedFormatError",
]


class ImageDecodeError(ValueError):
    """Base class: the bytes are not an image this engine accepts."""

    code: ClassVar[str] = "invalid_image"
    http_status: ClassVar[int] = 400

    def __init__(self, detail: str, *, source: str | None = None) -> None:
        self.detail = detail
        self.source = source
        super().__init__(f"{source}: {detail}" if source else detail)

    def to_dict(self) -> dict[str, Any]:
        """The JSON body a server answers with (no file-system path in it)."""
        return {"error": self.code, "detail": self.detail, "status": self.http_status}


class EmptyImageError(ImageDecodeError):
    """Zero bytes."""

    code = "empty_image"
    http_status = 400


class ImageTooLargeError(ImageDecodeError):
    """More bytes than ``ImageLimits.max_bytes``."""

    code = "image_too_large"
    http_status = 413


class TooManyPixelsError(ImageDecodeError):
    """The header declares more pixels (or a longer side) than the limits allow: a decompression bomb
    or simply too big to process.  Raised before any pixel data is decoded."""

    code = "too_many_pixels"
    http_status = 413


class UnsupportedFormatError(ImageDecodeError):
    """The magic bytes are not one of the allowed formats (not an image at all, GIF, BMP, TIFF, ...)."""

    code = "unsupported_format"
    http_status = 415


class FormatMismatchError(ImageDecodeError):
    """The file extension or Content-Type declares another format than the magic bytes show."""

    code = "format_mismatch"
    http_status = 415


class TruncatedImageError(ImageDecodeError):
    """The data ends before the image does."""

    code = "truncated_image"
    http_status = 400


class CorruptImageError(ImageDecodeError):
    """The data has a valid signature but cannot be decoded (bad checksum, broken stream, ...)."""

    code = "corrupt_image"
    http_status = 400


class AnimatedImageError(ImageDecodeError):
    """A multi-frame WebP or APNG: style transfer takes a still image, and silently using frame 0 of an
    animation would surprise the user more than a clear refusal."""

    code = "animated_image"
    http_status = 422


class DatasetError(ValueError):
    """A dataset cannot be used as asked: bad files under the "fail" policy, or nothing usable left.

    ``bad`` lists every offending file (:class:`~styleengine.data.preflight.BadFile`).
    """

    def __init__(self, message: str, bad: Sequence[BadFile] = ()) -> None:
        self.bad: list[BadFile] = list(bad)
        super().__init__(message)

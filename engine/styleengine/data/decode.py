"""Image decoding with limits: the one decoder behind the HTTP server and the training data loaders.

``decode_image(data)`` turns untrusted bytes into a float32 ``H x W x 3`` RGB array in ``[0, 1]``, or raises
a specific :class:`~styleengine.data.errors.ImageDecodeError` (each with a ``code`` and an HTTP status).  The
checks run cheapest first, and nothing is decoded before the header has been checked:

1. empty data;
2. byte limit (``read_image`` checks the file size before reading it);
3. magic bytes against the format allow-list.  We read the signature ourselves instead of trusting a file
   name, a Content-Type or Pillow's plugin guessing, and then open the data with *only* that Pillow plugin;
4. the declared extension / Content-Type, when they name an image format, must agree with the bytes
   (``photo.png`` holding a JPEG is refused: that is usually a client bug worth surfacing).  Names and types
   that say nothing (``blob``, ``upload.bin``, ``application/octet-stream``) are ignored;
5. size from the header (Pillow's ``Image.open`` is lazy): pixel count and longest side, so a 100 kB PNG
   that claims 100000 x 100000 pixels is refused in microseconds.  Pillow's own decompression-bomb check
   fires inside ``Image.open`` for sizes above ``2 * Image.MAX_IMAGE_PIXELS``; it is reported the same way.
   We do not touch the ``warnings`` filters to also catch ``DecompressionBombWarning`` (they are
   process-global and the server decodes on worker threads); our own limit, checked right after, is the
   authority and by default is stricter than Pillow's.  If an application turns that warning into an error,
   it is reported as :class:`TooManyPixelsError` too;
6. animation: a multi-frame WebP or APNG is refused.  JPEG files with several "frames" are MPO (phone
   cameras append depth maps or gain maps); only the primary image is used, which is what viewers show;
7. the full decode.  ``ImageFile.LOAD_TRUNCATED_IMAGES`` is left alone (it is global state, and silently
   grey-filling the missing rows would hide broken uploads): a short file is a :class:`TruncatedImageError`;
8. EXIF orientation is applied (``ImageOps.exif_transpose``) so the model sees the picture the way every
   viewer shows it; ``width``/``height`` are the oriented size;
9. mode conversion to RGB:

   * alpha (RGBA, LA, PA, palette or grey/RGB with a ``tRNS`` transparent colour) is composited onto
     ``limits.background``, **white by default**: that is how browsers and viewers show transparent images
     on a page, and style models are trained on opaque photographs, so a black background would darken
     anti-aliased edges and turn transparent logos into black boxes.  Callers that care pass another colour;
   * 16-bit grey (Pillow modes ``I;16``, ``I;16B``, ``I;16L``, ``I``) is scaled by 1/65535, keeping the
     full precision (never clipped at 255).  Pillow itself reduces 16-bit RGB(A) PNGs to 8 bits per channel
     while decoding; ``bit_depth`` still reports 16 for them;
   * CMYK (print JPEGs) uses Pillow's conversion; embedded ICC profiles are not applied, every RGB value is
     taken as sRGB.  Grey and 1-bit images are replicated to three channels.

The writing helpers (``to_uint8``, ``encode_image``, ``save_image``) are the inverse for outputs and samples;
``save_image`` writes atomically through :mod:`styleengine.io`.
"""

from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..io import atomic_write_bytes
from .errors import (
    AnimatedImageError,
    CorruptImageError,
    EmptyImageError,
    FormatMismatchError,
    ImageDecodeError,
    ImageTooLargeError,
    TooManyPixelsError,
    TruncatedImageError,
    UnsupportedFormatError,
)

__all__ = [
    "DEFAULT_LIMITS",
    "SUPPORTED_FORMATS",
    "DecodedImage",
    "ImageInfo",
    "ImageLimits",
    "decode_image",
    "encode_image",
    "from_uint8",
    "probe_image",
    "read_image",
    "save_image",
    "sniff_format",
    "to_uint8",
]

MiB = 1 << 20

#: Formats the decoder can accept (the signatures it checks itself).  ``ImageLimits.formats`` is a subset.
SUPPORTED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP")

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_HEADER_LEN = 33  # signature + the IHDR chunk (length, type, 13 bytes of data, CRC)

# Other signatures, only to name the format in the refusal ("GIF is not allowed" beats "not an image").
_OTHER_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"%PDF", "PDF"),
    (b"8BPS", "PSD"),
    (b"qoif", "QOI"),
    (b"\xff\x0a", "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL ", "JPEG XL"),
)
_BMFF_BRANDS = {b"heic": "HEIF", b"heix": "HEIF", b"mif1": "HEIF", b"msf1": "HEIF", b"avif": "AVIF"}

# What an extension / Content-Type declares.  Unknown ones declare nothing and are not compared.
_SUFFIX_FORMATS = {
    ".png": "PNG", ".apng": "PNG",
    ".jpg": "JPEG", ".jpeg": "JPEG", ".jpe": "JPEG", ".jfif": "JPEG",
    ".webp": "WEBP",
    ".gif": "GIF", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF",
    ".heic": "HEIF", ".heif": "HEIF", ".avif": "AVIF", ".jxl": "JPEG XL",
}  # fmt: skip
_MIME_FORMATS = {
    "image/png": "PNG", "image/apng": "PNG", "image/x-png": "PNG",
    "image/jpeg": "JPEG", "image/jpg": "JPEG", "image/pjpeg": "JPEG",
    "image/webp": "WEBP",
    "image/gif": "GIF", "image/bmp": "BMP", "image/x-ms-bmp": "BMP", "image/tiff": "TIFF",
    "image/heic": "HEIF", "image/heif": "HEIF", "image/avif": "AVIF", "image/jxl": "JPEG XL",
}  # fmt: skip
_FORMAT_ALIASES = {"JPG": "JPEG"}
_WRITE_SUFFIXES = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}

_EXIF_ORIENTATION = 0x0112
_GREY16_MODES = ("I;16", "I;16B", "I;16L", "I")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


@dataclass(frozen=True)
class ImageLimits:
    """What the decoder accepts.  The defaults suit a serving endpoint; training may raise them.

    ``max_pixels`` (16.8 MP) and ``max_side`` bound the decoded size (an RGB float32 copy of a 16.8 MP image
    is 200 MB); ``background`` is the 0-255 RGB colour that transparent pixels are composited onto.
    """

    max_bytes: int = 32 * MiB
    max_pixels: int = 4096 * 4096
    max_side: int = 8192
    formats: tuple[str, ...] = SUPPORTED_FORMATS
    background: tuple[int, int, int] = (255, 255, 255)

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_pixels", "max_side"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"ImageLimits.{name} must be a positive integer, got {value!r}")
        formats = tuple(_FORMAT_ALIASES.get(f.upper(), f.upper()) for f in self.formats)
        unknown = [f for f in formats if f not in SUPPORTED_FORMATS]
        if unknown or not formats:
            raise ValueError(
                f"ImageLimits.formats must be a non-empty subset of {', '.join(SUPPORTED_FORMATS)}, "
                f"got {self.formats!r}"
            )
        background = tuple(self.background)
        if len(background) != 3 or not all(isinstance(c, int) and 0 <= c <= 255 for c in background):
            raise ValueError(f"ImageLimits.background must be three integers in 0..255, got {self.background!r}")
        object.__setattr__(self, "formats", formats)
        object.__setattr__(self, "background", background)


DEFAULT_LIMITS = ImageLimits()


@dataclass(frozen=True, eq=False)
class DecodedImage:
    """A decoded image: ``array`` is float32 ``H x W x 3`` RGB in ``[0, 1]``, EXIF orientation applied.

    ``mode`` is Pillow's mode of the file before conversion (``"P"``, ``"I;16"``, ``"CMYK"``, ...),
    ``had_alpha`` whether it carried transparency (then composited onto the background), ``bit_depth`` the
    bits per sample the file declares, ``exif_orientation`` the EXIF value found (1 when absent).
    """

    array: np.ndarray
    format: str
    mode: str
    had_alpha: bool
    bit_depth: int
    width: int
    height: int
    exif_orientation: int


@dataclass(frozen=True)
class ImageInfo:
    """What :func:`probe_image` learns from the header alone (all checks except the full decode passed)."""

    format: str
    mode: str
    width: int
    height: int


def sniff_format(data: bytes) -> str | None:
    """The format named by ``data``'s signature (``"PNG"``, ``"JPEG"``, ``"WEBP"``, or an unsupported
    one such as ``"GIF"``), or ``None`` when the bytes do not start like any image we know."""
    if data.startswith(_PNG_SIGNATURE):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    for prefix, name in _OTHER_SIGNATURES:
        if data.startswith(prefix):
            return name
    if data[4:8] == b"ftyp":
        return _BMFF_BRANDS.get(data[8:12])
    return None


def decode_image(
    data: bytes | bytearray | memoryview,
    *,
    limits: ImageLimits = DEFAULT_LIMITS,
    filename: str | os.PathLike[str] | None = None,
    content_type: str | None = None,
) -> DecodedImage:
    """Decode untrusted image bytes, enforcing ``limits``; see the module docstring for the checks.

    ``filename`` and ``content_type`` are what the client declared (both optional); when they name an image
    format it must match the bytes.  Raises an :class:`ImageDecodeError` subclass on bad input.
    """
    data = data if isinstance(data, bytes) else bytes(data)
    return _decode(data, limits, filename, content_type, source=None)


def read_image(path: str | os.PathLike[str], *, limits: ImageLimits = DEFAULT_LIMITS) -> DecodedImage:
    """Decode the image file at ``path`` with the same checks as :func:`decode_image`; the file's extension
    must agree with its bytes, and error messages start with the path.  ``OSError`` (missing file,
    permissions) propagates unchanged."""
    p = Path(path)
    data = _read_limited(p, limits)
    return _decode(data, limits, p.name, None, source=str(p))


def probe_image(path: str | os.PathLike[str], *, limits: ImageLimits = DEFAULT_LIMITS) -> ImageInfo:
    """Run every check that needs only the header (steps 1-6), without decoding the pixels: a fast
    preflight that catches wrong formats, bombs and animations but not truncation or corrupt pixel data."""
    p = Path(path)
    data = _read_limited(p, limits)
    im, fmt = _open_checked(data, limits, p.name, None, source=str(p))
    with im:
        return ImageInfo(fmt, im.mode, im.width, im.height)


# --------------------------------------------------------------------------------------------- internals


def _read_limited(path: Path, limits: ImageLimits) -> bytes:
    size = path.stat().st_size
    if size > limits.max_bytes:  # refuse before reading a byte
        raise ImageTooLargeError(_too_many_bytes(size, limits), source=str(path))
    with path.open("rb") as fh:
        return fh.read(limits.max_bytes + 1)  # the file may grow meanwhile: _decode re-checks


def _too_many_bytes(size: int, limits: ImageLimits) -> str:
    return (
        f"image is {size / MiB:.1f} MiB ({size} bytes), above the limit of "
        f"{limits.max_bytes / MiB:.1f} MiB ({limits.max_bytes} bytes)"
    )


def _declared_format(filename: str | os.PathLike[str] | None, content_type: str | None) -> list[tuple[str, str]]:
    """``(what was declared, format it names)`` for the extension and the Content-Type that name one."""
    declared = []
    if filename is not None:
        suffix = Path(os.fspath(filename)).suffix.lower()
        if suffix in _SUFFIX_FORMATS:
            declared.append((f"file extension {suffix!r}", _SUFFIX_FORMATS[suffix]))
    if content_type:
        mime = content_type.split(";", 1)[0].strip().lower()
        if mime in _MIME_FORMATS:
            declared.append((f"Content-Type {mime!r}", _MIME_FORMATS[mime]))
    return declared


def _open_checked(
    data: bytes,
    limits: ImageLimits,
    filename: str | os.PathLike[str] | None,
    content_type: str | None,
    source: str | None,
) -> tuple[Image.Image, str]:
    """Steps 1-6: returns the lazily opened image (pixels not decoded yet) and its format."""
    if not data:
        raise EmptyImageError("image data is empty (0 bytes)", source=source)
    if len(data) > limits.max_bytes:
        raise ImageTooLargeError(_too_many_bytes(len(data), limits), source=source)

    allowed = ", ".join(limits.formats)
    fmt = sniff_format(data)
    if fmt is None:
        raise UnsupportedFormatError(
            f"data is not a recognised image (it starts with {data[:8]!r}); allowed formats: {allowed}",
            source=source,
        )
    if fmt not in limits.formats:
        raise UnsupportedFormatError(f"{fmt} images are not accepted; allowed formats: {allowed}", source=source)

    for what, declared in _declared_format(filename, content_type):
        if declared != fmt:
            raise FormatMismatchError(f"{what} declares {declared} but the data is {fmt}", source=source)

    try:
        im = Image.open(io.BytesIO(data), formats=[fmt])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise TooManyPixelsError(
            f"image is too large to decode safely ({exc}); the limit is {limits.max_pixels:,} pixels",
            source=source,
        ) from None
    except MemoryError:
        raise
    except Exception as exc:
        raise _decode_failure(exc, data, fmt, source) from exc

    try:
        width, height = im.size
        if width <= 0 or height <= 0:
            raise CorruptImageError(f"{fmt} header declares an empty size {width}x{height}", source=source)
        if width * height > limits.max_pixels:
            raise TooManyPixelsError(
                f"image is {width}x{height} = {width * height:,} pixels, "
                f"above the limit of {limits.max_pixels:,} pixels ({limits.max_pixels / 1e6:.1f} MP)",
                source=source,
            )
        if max(width, height) > limits.max_side:
            raise TooManyPixelsError(
                f"image is {width}x{height}; its longest side ({max(width, height)} pixels) is above "
                f"the limit of {limits.max_side} pixels",
                source=source,
            )
        if fmt in ("PNG", "WEBP"):  # APNG / animated WebP; JPEG "frames" are MPO extras (see docstring)
            n_frames = getattr(im, "n_frames", 1)
            if n_frames > 1:
                name = "APNG" if fmt == "PNG" else "WebP"
                raise AnimatedImageError(
                    f"animated {name} with {n_frames} frames; only still images are accepted", source=source
                )
    except BaseException:
        im.close()
        raise
    return im, fmt


def _container_cut_short(data: bytes, fmt: str) -> bool:
    """True when the container itself says the data stops early: a PNG chunk running past the end (or no
    IEND), a JPEG without its end-of-image marker, a RIFF (WebP) size larger than the data.  Pillow's own
    message depends on where the cut falls (a cut inside a chunk header reads as a broken chunk)."""
    if fmt == "PNG":
        if len(data) < _PNG_HEADER_LEN:
            return True
        pos = 8
        while pos + 8 <= len(data):
            (length,) = struct.unpack(">I", data[pos : pos + 4])
            kind = data[pos + 4 : pos + 8]
            end = pos + 12 + length
            if end > len(data):
                return True
            if kind == b"IEND":
                return False
            pos = end
        return True  # chunks end mid-header, or no IEND at all
    if fmt == "JPEG":
        return not data.rstrip(b"\x00").endswith(b"\xff\xd9")
    if fmt == "WEBP" and len(data) >= 8:
        (riff_size,) = struct.unpack("<I", data[4:8])
        return riff_size + 8 > len(data)
    return False


def _decode_failure(exc: BaseException, data: bytes, fmt: str, source: str | None) -> ImageDecodeError:
    """Tell truncated data from otherwise broken data, from Pillow's exception and the container sizes."""
    if isinstance(exc, UnidentifiedImageError):
        reason = "Pillow cannot identify it"  # its own message only names the BytesIO object
    else:
        reason = str(exc) or type(exc).__name__
    truncated = isinstance(exc, EOFError) or "truncated" in reason.lower() or _container_cut_short(data, fmt)
    if truncated:
        return TruncatedImageError(
            f"{fmt} data ends before the image does ({len(data)} bytes; {reason})", source=source
        )
    return CorruptImageError(f"{fmt} data is corrupt and cannot be decoded ({reason})", source=source)


def _decode(
    data: bytes,
    limits: ImageLimits,
    filename: str | os.PathLike[str] | None,
    content_type: str | None,
    source: str | None,
) -> DecodedImage:
    im, fmt = _open_checked(data, limits, filename, content_type, source)
    with im:
        try:
            im.load()
        except MemoryError:
            raise
        except Exception as exc:
            raise _decode_failure(exc, data, fmt, source) from exc
        mode = im.mode
        bit_depth = _bit_depth(data, fmt, im)
        orientation = _exif_orientation(im)
        oriented = ImageOps.exif_transpose(im) if orientation != 1 else im
        array, had_alpha = _to_rgb_array(oriented, limits.background)
    height, width = array.shape[:2]
    return DecodedImage(array, fmt, mode, had_alpha, bit_depth, width, height, orientation)


def _bit_depth(data: bytes, fmt: str, im: Image.Image) -> int:
    if fmt == "PNG":
        return data[24]  # IHDR bit depth (per sample; per index for palettes)
    bits = getattr(im, "bits", None)  # JPEG: the SOF precision
    return bits if isinstance(bits, int) else 8


def _exif_orientation(im: Image.Image) -> int:
    # Broken EXIF in an otherwise fine image is metadata noise: treat it as "no rotation", not as an error.
    try:
        value = im.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _to_rgb_array(im: Image.Image, background: tuple[int, int, int]) -> tuple[np.ndarray, bool]:
    """float32 ``H x W x 3`` in ``[0, 1]`` and whether the image had transparency (see module docstring)."""
    mode = im.mode
    transparency = im.info.get("transparency")
    alpha: np.ndarray | None = None
    if mode in _GREY16_MODES:
        raw = np.asarray(im)
        grey = np.clip(raw.astype(np.float32) / np.float32(65535), 0.0, 1.0)
        rgb = np.repeat(grey[..., None], 3, axis=2)
        if isinstance(transparency, int):  # tRNS on 16-bit grey: one fully transparent value
            alpha = (raw != transparency).astype(np.float32)[..., None]
    elif mode in _ALPHA_MODES or (transparency is not None and mode in ("P", "L", "RGB", "1")):
        rgba = np.asarray(im.convert("RGBA"), dtype=np.float32) / np.float32(255)
        rgb, alpha = rgba[..., :3], rgba[..., 3:]
    else:  # RGB, L, 1, P, CMYK, YCbCr, ...
        rgb = np.asarray(im if mode == "RGB" else im.convert("RGB"), dtype=np.float32) / np.float32(255)
    if alpha is not None:
        bg = np.asarray(background, dtype=np.float32) / np.float32(255)
        rgb = rgb * alpha + bg * (np.float32(1) - alpha)
    return np.ascontiguousarray(rgb, dtype=np.float32), alpha is not None


# ----------------------------------------------------------------------------------------------- writing


def to_uint8(array: np.ndarray) -> np.ndarray:
    """Float ``[0, 1]`` to uint8 ``[0, 255]`` (clipped, rounded, NaN to 0); uint8 input is returned as is."""
    a = np.asarray(array)
    if a.dtype == np.uint8:
        return a
    if not np.issubdtype(a.dtype, np.floating):
        raise TypeError(f"to_uint8 expects a float array in [0, 1] or uint8, got dtype {a.dtype}")
    a = np.nan_to_num(a, nan=0.0, posinf=1.0, neginf=0.0)
    return np.rint(np.clip(a, 0.0, 1.0) * 255.0).astype(np.uint8)


def from_uint8(array: np.ndarray) -> np.ndarray:
    """uint8 ``[0, 255]`` to float32 ``[0, 1]``."""
    a = np.asarray(array)
    if a.dtype != np.uint8:
        raise TypeError(f"from_uint8 expects a uint8 array, got dtype {a.dtype}")
    return a.astype(np.float32) / np.float32(255)


def encode_image(array: np.ndarray, format: str = "PNG", quality: int = 95, compress_level: int = 6) -> bytes:
    """Encode an ``H x W``, ``H x W x 1``, ``x 3`` (RGB) or ``x 4`` (RGBA) array, float ``[0, 1]`` or uint8,
    as PNG (lossless; ``compress_level`` 0-9 is zlib's, PIL's default 6), JPEG or WebP (``quality`` 1-100).
    JPEG cannot hold alpha: pass RGB."""
    fmt = _FORMAT_ALIASES.get(format.upper(), format.upper())
    if fmt not in SUPPORTED_FORMATS:
        raise ValueError(f"cannot encode {format!r}; supported: {', '.join(SUPPORTED_FORMATS)}")
    a = to_uint8(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4))):
        raise ValueError(f"expected an H x W, H x W x 1, H x W x 3 or H x W x 4 array, got shape {a.shape}")
    if fmt == "JPEG" and a.ndim == 3 and a.shape[2] == 4:
        raise ValueError("JPEG cannot store an alpha channel; pass an H x W x 3 array")
    options = {"compress_level": int(compress_level)} if fmt == "PNG" else {"quality": int(quality)}
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(a)).save(buf, fmt, **options)
    return buf.getvalue()


def save_image(path: str | os.PathLike[str], array: np.ndarray, *, quality: int = 95) -> Path:
    """Write ``array`` atomically (temp file, fsync, rename), the format chosen by the suffix
    (``.png``, ``.jpg``/``.jpeg``, ``.webp``)."""
    p = Path(path)
    fmt = _WRITE_SUFFIXES.get(p.suffix.lower())
    if fmt is None:
        raise ValueError(f"{p}: cannot tell the image format from the suffix; use one of {sorted(_WRITE_SUFFIXES)}")
    return atomic_write_bytes(p, encode_image(array, fmt, quality))

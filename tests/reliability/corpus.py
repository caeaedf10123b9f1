"""A generated corpus of malformed and odd requests for ``POST /stylize`` (and its neighbours).

Each :class:`Case` is sent either through httpx (``files`` / ``data`` / ``headers``) or as raw bytes over a
socket (header and framing abuse httpx would not send).  ``expect`` is the status the service must answer
(None: any non-5xx answer is acceptable, e.g. an odd but valid image that is served) and ``code`` the
documented error code.  Every image is made in code.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from imaging import encode, handmade_png, noise, png_chunk
from PIL import Image

#: Limits of the corpus server (see conftest.py): small, so "too large" cases stay small too.
MAX_REQUEST = 256 * 1024
MAX_IMAGE = 128 * 1024
BODY_TIMEOUT = 2.0


@dataclass
class Case:
    name: str
    expect: int | None
    code: str | None = None
    files: Any = None
    data: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    content: bytes | None = None
    method: str = "POST"
    path: str = "/stylize"
    raw: bytes | None = None  # sent as is over a socket (the whole request)


def _png(h: int = 24, w: int = 32, seed: int = 0) -> bytes:
    return encode(Image.fromarray(noise(h, w, seed)), "PNG")


def _jpeg(**kw: Any) -> bytes:
    return encode(Image.fromarray(noise(24, 32)), "JPEG", **kw)


def _webp(**kw: Any) -> bytes:
    return encode(Image.fromarray(noise(24, 32)), "WEBP", **kw)


def _flip(data: bytes, at: int, mask: int = 0xFF) -> bytes:
    b = bytearray(data)
    b[at] ^= mask
    return bytes(b)


def _bad_crc_png() -> bytes:
    data = bytearray(_png())
    data[29] ^= 0x01  # the IHDR chunk's CRC
    return bytes(data)


def _animated(fmt: str) -> bytes:
    frames = [Image.new("RGB", (8, 8), c) for c in ("red", "blue", "green")]
    buf = io.BytesIO()
    frames[0].save(buf, fmt, save_all=True, append_images=frames[1:])
    return buf.getvalue()


def _exif_rotated_jpeg() -> bytes:
    im = Image.fromarray(noise(24, 40))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    return encode(im, "JPEG", exif=exif.tobytes())


def _mode(mode: str, fmt: str = "PNG") -> bytes:
    return encode(Image.fromarray(noise(16, 16)).convert(mode), fmt)


def _png16() -> bytes:
    raw = b"".join(b"\x00" + bytes(range(0, 96)) for _ in range(16))  # 16 rows of 16 RGB pixels, 16 bits each
    return handmade_png(16, 16, 16, 2, raw)


def _zero_size_png() -> bytes:
    return handmade_png(0, 0, 8, 2, b"")


def _png_without_idat() -> bytes:
    ihdr = struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IEND", b"")


def _png_garbage_idat() -> bytes:
    ihdr = struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", b"not zlib at all") + png_chunk(b"IEND", b"")


def _png_short_idat() -> bytes:
    ihdr = struct.pack(">IIBBBBB", 64, 64, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\x00" * 100)) + png_chunk(b"IEND", b"")


def image_cases() -> list[Case]:
    """Every decoder failure class, and odd images that must be served."""
    png, jpeg, webp = _png(), _jpeg(), _webp()
    make: list[tuple[str, int | None, str | None, Callable[[], bytes], str, str]] = [
        # name, status, code, bytes, filename, content type
        ("empty file", 400, "empty_image", lambda: b"", "a.png", "image/png"),
        ("text", 415, "unsupported_format", lambda: b"just some text, not pixels", "a.png", "image/png"),
        ("random bytes", 415, "unsupported_format", lambda: bytes(range(256)) * 4, "a.png", "image/png"),
        ("html", 415, "unsupported_format", lambda: b"<html><body>hi</body></html>", "a.png", "image/png"),
        ("svg", 415, "unsupported_format", lambda: b'<svg xmlns="http://www.w3.org/2000/svg"/>', "a.svg", "image/svg+xml"),
        ("gif", 415, "unsupported_format", lambda: encode(Image.new("RGB", (8, 8)), "GIF"), "a.gif", "image/gif"),
        ("bmp", 415, "unsupported_format", lambda: encode(Image.new("RGB", (8, 8)), "BMP"), "a.bmp", "image/bmp"),
        ("tiff", 415, "unsupported_format", lambda: encode(Image.new("RGB", (8, 8)), "TIFF"), "a.tif", "image/tiff"),
        ("ico", 415, "unsupported_format", lambda: encode(Image.new("RGB", (16, 16)), "ICO"), "a.ico", "image/x-icon"),
        ("png signature only", 400, "truncated_image", lambda: png[:8], "a.png", "image/png"),
        ("png cut in IHDR", 400, "truncated_image", lambda: png[:20], "a.png", "image/png"),
        ("png cut after IHDR", 400, "truncated_image", lambda: png[:33], "a.png", "image/png"),
        ("png cut in IDAT", 400, "truncated_image", lambda: png[: len(png) // 2], "a.png", "image/png"),
        ("png bad IHDR crc", 400, None, _bad_crc_png, "a.png", "image/png"),
        ("png flipped IDAT byte", 400, None, lambda: _flip(png, len(png) // 2), "a.png", "image/png"),
        ("png without IDAT", 400, None, _png_without_idat, "a.png", "image/png"),
        ("png garbage IDAT", 400, None, _png_garbage_idat, "a.png", "image/png"),
        ("png IDAT short of the rows", 400, None, _png_short_idat, "a.png", "image/png"),
        ("png 0x0", None, None, _zero_size_png, "a.png", "image/png"),
        ("png bomb 100000^2", 413, "too_many_pixels", lambda: handmade_png(100_000, 100_000, 8, 2, b"\x00" * 4), "a.png", "image/png"),
        ("png one long side", 413, "too_many_pixels", lambda: handmade_png(60_000, 1, 8, 2, b"\x00" * 4), "a.png", "image/png"),
        ("png lying 2^31 sides", None, None, lambda: handmade_png(2**31 - 1, 2**31 - 1, 8, 2, b""), "a.png", "image/png"),
        ("png over the image byte limit", 413, "image_too_large", lambda: b"\x89PNG\r\n\x1a\n" + b"\x00" * (MAX_IMAGE + 1), "a.png", "image/png"),
        ("apng", 422, "animated_image", lambda: _animated("PNG"), "a.png", "image/png"),
        ("animated webp", 422, "animated_image", lambda: _animated("WEBP"), "a.webp", "image/webp"),
        ("jpeg cut short", 400, "truncated_image", lambda: jpeg[: len(jpeg) // 2], "a.jpg", "image/jpeg"),
        ("jpeg cut in header", 400, "truncated_image", lambda: jpeg[:20], "a.jpg", "image/jpeg"),
        ("jpeg soi only", 400, "truncated_image", lambda: b"\xff\xd8\xff", "a.jpg", "image/jpeg"),
        ("webp cut short", 400, "truncated_image", lambda: webp[: len(webp) // 2], "a.webp", "image/webp"),
        ("webp riff header only", 400, "truncated_image", lambda: webp[:16], "a.webp", "image/webp"),
        ("png named jpg", 415, "format_mismatch", _png, "a.jpg", "image/jpeg"),
        ("jpeg sent as image/png", 415, "format_mismatch", _jpeg, "a.jpg", "image/png"),
        ("webp named png", 415, "format_mismatch", _webp, "a.png", "image/png"),
        # odd but valid: served (any non-5xx, and 200 expected)
        ("jpeg with exif rotation", 200, None, _exif_rotated_jpeg, "a.jpg", "image/jpeg"),
        ("progressive jpeg", 200, None, lambda: _jpeg(progressive=True), "a.jpg", "image/jpeg"),
        ("cmyk jpeg", 200, None, lambda: _mode("CMYK", "JPEG"), "a.jpg", "image/jpeg"),
        ("greyscale png", 200, None, lambda: _mode("L"), "a.png", "image/png"),
        ("greyscale + alpha png", 200, None, lambda: _mode("LA"), "a.png", "image/png"),
        ("rgba png", 200, None, lambda: _mode("RGBA"), "a.png", "image/png"),
        ("palette png", 200, None, lambda: _mode("P"), "a.png", "image/png"),
        ("1-bit png", 200, None, lambda: _mode("1"), "a.png", "image/png"),
        ("16-bit rgb png", 200, None, _png16, "a.png", "image/png"),
        ("lossless webp", 200, None, lambda: _webp(lossless=True), "a.webp", "image/webp"),
        ("1x1 png", 200, None, lambda: _png(1, 1), "a.png", "image/png"),
        ("empty filename (a form's empty file input)", 422, "invalid_field", _png, "", "image/png"),
        ("octet-stream content type", 200, None, _png, "a.png", "application/octet-stream"),
        ("path traversal filename", 200, None, _png, "../../../etc/passwd.png", "image/png"),
        ("nul in filename", 200, None, _png, "a\x00.png", "image/png"),
    ]
    return [Case(name, status, code, files={"image": (fn, factory(), ct)}) for name, status, code, factory, fn, ct in make]


def field_cases() -> list[Case]:
    png = _png()
    img = {"image": ("a.png", png, "image/png")}
    cases = [
        Case(f"strength={v!r}", 422, "invalid_parameter", files=img, data={"strength": v})
        for v in ("NaN", "nan", "Infinity", "-inf", "1e999", "5", "-0.0001", "abc", "", "0x1", "1_0", "9" * 5000, "true", "[0.5]")
    ]
    cases += [
        Case(f"seed={v!r}", 422, "invalid_parameter", files=img, data={"seed": v})
        for v in ("-1", "1e3", str(2**64), "1.5", "NaN", "seed")
    ]
    cases += [
        Case("unknown field", 422, "unknown_field", files=img, data={"colour": "red"}),
        Case("image under another name", 422, "unknown_field", files={"picture": ("a.png", png, "image/png")}),
        Case("no image", 422, "missing_field", files={"strength": (None, "0.5")}),
        Case("two images in one field", 422, "too_many_files", files=[("image", ("a.png", png, "image/png")), ("image", ("b.png", png, "image/png"))]),
        Case("duplicate parameter", 422, "duplicate_field", files=img, data={"strength": ["0.5", "0.6"]}),
        Case("file in a parameter", 422, "invalid_field", files={**img, "strength": ("s.txt", b"0.5", "text/plain")}),
        Case("URL instead of a file", 422, "invalid_field", files={"image": (None, "http://127.0.0.1:9/evil.png")}),
        Case("very long field name", 422, "unknown_field", files=img, data={"x" * 2000: "1"}),
        Case("non-utf8 parameter", 422, None, files={**img, "strength": (None, b"\xff\xfe\x00")}),
        Case("many small parts", None, None, files=img, data={f"f{i}": "1" for i in range(3000)}),
    ]
    return cases


def header_cases() -> list[Case]:
    png = _png()
    boundary = "b0undary"
    part = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode() + png + f"\r\n--{boundary}--\r\n".encode()

    def raw(head: str, body: bytes = b"") -> bytes:
        return head.replace("\n", "\r\n").encode() + b"\r\n" + body

    mp = f"multipart/form-data; boundary={boundary}"
    return [
        Case("json body", 415, "unsupported_media_type", content=b'{"image": "x"}', headers={"content-type": "application/json"}),
        Case("text/plain body", 415, "unsupported_media_type", content=b"hello", headers={"content-type": "text/plain"}),
        Case("urlencoded form", 415, "unsupported_media_type", content=b"image=abc", headers={"content-type": "application/x-www-form-urlencoded"}),
        Case("no content type", 415, "unsupported_media_type", content=b"abc"),
        Case("multipart without boundary", None, None, content=part, headers={"content-type": "multipart/form-data"}),
        Case("multipart wrong boundary", None, None, content=part, headers={"content-type": "multipart/form-data; boundary=other"}),
        Case("multipart unterminated", None, None, content=part[:-40], headers={"content-type": mp}),
        Case("multipart garbage", None, None, content=b"--b0undary\r\nbroken", headers={"content-type": mp}),
        Case("multipart empty", None, None, content=b"", headers={"content-type": mp}),
        Case("body over the request limit", 413, "request_too_large", files={"image": ("a.png", b"\x89PNG" + b"\x00" * MAX_REQUEST, "image/png")}),
        Case("Accept text/html", 406, "not_acceptable", files={"image": ("a.png", png, "image/png")}, headers={"accept": "text/html"}),
        Case("GET /stylize", 405, "method_not_allowed", method="GET"),
        Case("PUT /stylize", 405, "method_not_allowed", method="PUT", content=part, headers={"content-type": mp}),
        Case("DELETE /stylize.json", 405, "method_not_allowed", method="DELETE", path="/stylize.json"),
        Case("unknown path", 404, "not_found", path="/stylise"),
        Case("path with traversal", 404, "not_found", method="GET", path="/ui/../../etc/passwd"),
        Case("Content-Length not a number", 400, "invalid_request",
             raw=raw(f"POST /stylize HTTP/1.1\nHost: x\nContent-Type: {mp}\nContent-Length: abc\n", part)),
        Case("Content-Length negative", 400, "invalid_request",
             raw=raw(f"POST /stylize HTTP/1.1\nHost: x\nContent-Type: {mp}\nContent-Length: -5\n", part)),
        Case("Content-Length twice, different", 400, None,
             raw=raw(f"POST /stylize HTTP/1.1\nHost: x\nContent-Type: {mp}\nContent-Length: 10\nContent-Length: 20\n", part)),
        Case("Content-Length larger than the body", 400, "invalid_request",
             raw=raw(f"POST /stylize HTTP/1.1\nHost: x\nContent-Type: {mp}\nContent-Length: {len(part) + 500}\n", part)),
        Case("Content-Length over the limit", 413, "request_too_large",
             raw=raw(f"POST /stylize HTTP/1.1\nHost: x\nContent-Type: {mp}\nContent-Length: {50 * 1024 * 1024}\n", b"--")),
        Case("bad chunked framing", 400, None,
             raw=raw(f"POST /stylize HTTP/1.1\nHost: x\nContent-Type: {mp}\nTransfer-Encoding: chunked\n", b"zz\r\nnot hex\r\n0\r\n\r\n")),
        Case("header without colon", 400, None, raw=raw("POST /stylize HTTP/1.1\nHost: x\nthis is not a header\n")),
        Case("request line garbage", 400, None, raw=b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 TLS hello\r\n\r\n"),
        Case("HTTP/0.9 style", 400, None, raw=b"GET /readyz\r\n\r\n"),
    ]


def all_cases() -> list[Case]:
    return [*image_cases(), *field_cases(), *header_cases()]

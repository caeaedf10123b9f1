"""Tests for styleengine.data.decode: every bad-input class, mode conversions, EXIF, limits, writing.

Every image is generated here with Pillow/numpy; nothing is read from disk except what the tests write.
"""

from __future__ import annotations

import io
import struct
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from styleengine.data import (
    AnimatedImageError,
    CorruptImageError,
    DecodedImage,
    EmptyImageError,
    FormatMismatchError,
    ImageDecodeError,
    ImageLimits,
    ImageTooLargeError,
    TooManyPixelsError,
    TruncatedImageError,
    UnsupportedFormatError,
    decode_image,
    encode_image,
    from_uint8,
    probe_image,
    read_image,
    save_image,
    sniff_format,
    to_uint8,
)

# ----------------------------------------------------------------------------------------------- helpers


from imaging import encode, handmade_png, noise, png_chunk  # noqa: E402, F401


@pytest.fixture
def no_pixel_decoding(monkeypatch):
    """Make any attempt to decode pixel data fail loudly: proves a check happens on the header alone."""

    def refuse(self):
        raise AssertionError("pixel data was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


# ---------------------------------------------------------------------------------------------- good input


def test_png_rgb_exact():
    a = noise(5, 7)
    out = decode_image(encode(Image.fromarray(a), "PNG"))
    assert isinstance(out, DecodedImage)
    assert out.array.shape == (5, 7, 3) and out.array.dtype == np.float32 and out.array.flags.c_contiguous
    np.testing.assert_array_equal(out.array, a.astype(np.float32) / 255)
    assert (out.format, out.mode, out.had_alpha, out.bit_depth) == ("PNG", "RGB", False, 8)
    assert (out.width, out.height, out.exif_orientation) == (7, 5, 1)


def test_jpeg_solid_colour():
    data = encode(Image.new("RGB", (20, 10), (200, 100, 50)), "JPEG", quality=95)
    out = decode_image(data, filename="photo.JPG", content_type="image/jpeg")
    assert out.array.shape == (10, 20, 3) and out.array.dtype == np.float32
    assert 0.0 <= out.array.min() and out.array.max() <= 1.0
    np.testing.assert_allclose(out.array[5, 10], np.array([200, 100, 50]) / 255, atol=3 / 255)
    assert (out.format, out.mode, out.bit_depth) == ("JPEG", "RGB", 8)


def test_webp_lossless_exact():
    a = noise(9, 4, seed=1)
    out = decode_image(encode(Image.fromarray(a), "WEBP", lossless=True), content_type="image/webp")
    np.testing.assert_array_equal(out.array, a.astype(np.float32) / 255)
    assert out.format == "WEBP" and out.had_alpha is False


def test_accepts_bytearray_and_memoryview():
    data = encode(Image.new("RGB", (3, 2), (0, 255, 0)), "PNG")
    for wrapped in (bytearray(data), memoryview(data)):
        np.testing.assert_array_equal(decode_image(wrapped).array[0, 0], [0, 1, 0])


def test_uninformative_declarations_are_ignored():
    data = encode(Image.new("RGB", (3, 2)), "JPEG")
    for filename, content_type in [("blob", None), ("upload.bin", "application/octet-stream"), (None, "image/*")]:
        assert decode_image(data, filename=filename, content_type=content_type).format == "JPEG"


def test_mpo_jpeg_uses_primary_image():
    frames = [Image.new("RGB", (8, 8), c) for c in [(255, 0, 0), (0, 0, 255)]]
    data = encode(frames[0], "MPO", save_all=True, append_images=frames[1:])
    out = decode_image(data, filename="IMG_0001.jpg")
    assert out.format == "JPEG"
    np.testing.assert_allclose(out.array[4, 4], [1, 0, 0], atol=3 / 255)


# ------------------------------------------------------------------------------------------- mode handling


def test_16bit_grey_is_scaled_not_clipped():
    raw = np.array([[0, 32768, 65535]], dtype=np.uint16)
    im = Image.fromarray(raw)
    assert im.mode == "I;16"
    out = decode_image(encode(im, "PNG"))
    assert (out.mode, out.bit_depth, out.had_alpha) == ("I;16", 16, False)
    assert out.array.shape == (1, 3, 3)
    np.testing.assert_allclose(out.array[0, :, 0], [0.0, 32768 / 65535, 1.0], rtol=0, atol=1e-7)
    assert out.array[0, 1, 0] == pytest.approx(0.5, abs=1e-4)
    np.testing.assert_array_equal(out.array[..., 0], out.array[..., 2])  # grey replicated


def test_16bit_grey_transparent_value_gets_background():
    im = Image.fromarray(np.array([[7, 40000]], dtype=np.uint16))
    out = decode_image(encode(im, "PNG", transparency=7), limits=ImageLimits(background=(0, 0, 0)))
    assert out.had_alpha
    np.testing.assert_allclose(out.array[0, 0], [0, 0, 0])
    np.testing.assert_allclose(out.array[0, 1], [40000 / 65535] * 3, atol=1e-6)


def test_16bit_rgb_png():
    # Pillow reduces 16-bit RGB to 8 bits per channel while decoding; values must still be right.
    raw = b"\x00" + struct.pack(">6H", 65535, 0, 32768, 0, 65535, 1000)
    out = decode_image(handmade_png(2, 1, 16, 2, raw))
    assert out.bit_depth == 16 and out.array.shape == (1, 2, 3)
    expected = np.array([[65535, 0, 32768], [0, 65535, 1000]]) / 65535
    np.testing.assert_allclose(out.array[0], expected, atol=1 / 255)


def test_cmyk_jpeg():
    data = encode(Image.new("CMYK", (16, 16), (255, 0, 0, 0)), "JPEG", quality=95)  # pure cyan ink
    out = decode_image(data)
    assert out.mode == "CMYK" and out.array.shape == (16, 16, 3)
    np.testing.assert_allclose(out.array[8, 8], [0, 1, 1], atol=0.03)


def test_palette_with_transparency_composited_on_background():
    im = Image.new("P", (2, 1))
    im.putpalette([255, 0, 0, 0, 0, 255])
    im.putpixel((1, 0), 1)
    data = encode(im, "PNG", transparency=1)
    out = decode_image(data)
    assert (out.mode, out.had_alpha) == ("P", True)
    np.testing.assert_array_equal(out.array[0, 0], [1, 0, 0])  # opaque red stays red
    np.testing.assert_array_equal(out.array[0, 1], [1, 1, 1])  # transparent blue -> white background
    black = decode_image(data, limits=ImageLimits(background=(0, 0, 0)))
    np.testing.assert_array_equal(black.array[0, 1], [0, 0, 0])


def test_palette_without_transparency():
    im = Image.new("P", (1, 1))
    im.putpalette([0, 128, 255])
    out = decode_image(encode(im, "PNG"))
    assert out.had_alpha is False
    np.testing.assert_allclose(out.array[0, 0], np.array([0, 128, 255]) / 255)


def test_rgba_half_transparent_on_white_exact():
    im = Image.new("RGBA", (2, 1), (255, 0, 0, 128))
    im.putpixel((1, 0), (0, 255, 0, 255))
    out = decode_image(encode(im, "PNG"))
    assert (out.mode, out.had_alpha) == ("RGBA", True)
    a = 128 / 255
    np.testing.assert_allclose(out.array[0, 0], [1.0, 1 - a, 1 - a], rtol=0, atol=1e-6)  # = 127/255
    np.testing.assert_allclose(out.array[0, 1], [0, 1, 0], rtol=0, atol=1e-7)


def test_rgba_webp_and_custom_background():
    im = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    out = decode_image(encode(im, "WEBP", lossless=True), limits=ImageLimits(background=(0, 128, 255)))
    assert out.had_alpha
    np.testing.assert_allclose(out.array[0, 0], np.array([0, 128, 255]) / 255, atol=1e-6)


def test_grey_alpha_and_grey_transparency():
    la = decode_image(encode(Image.new("LA", (1, 1), (0, 0)), "PNG"))
    assert la.mode == "LA" and la.had_alpha
    np.testing.assert_array_equal(la.array[0, 0], [1, 1, 1])
    grey = Image.new("L", (2, 1), 50)
    grey.putpixel((1, 0), 60)
    out = decode_image(encode(grey, "PNG", transparency=50))
    np.testing.assert_allclose(out.array[0], [[1, 1, 1], [60 / 255] * 3], atol=1e-7)


def test_grey_and_one_bit_become_rgb():
    grey = decode_image(encode(Image.new("L", (3, 2), 51), "PNG"))
    assert grey.mode == "L" and grey.array.shape == (2, 3, 3)
    np.testing.assert_allclose(grey.array, 0.2, atol=1e-7)
    bw = Image.new("1", (2, 1), 0)
    bw.putpixel((1, 0), 1)
    out = decode_image(encode(bw, "PNG"))
    assert (out.mode, out.bit_depth) == ("1", 1)
    np.testing.assert_array_equal(out.array[0], [[0, 0, 0], [1, 1, 1]])


# ------------------------------------------------------------------------------------------ EXIF rotation

# What a viewer shows for each EXIF orientation, written independently of Pillow's transpose table.
ORIENTED = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],  # mirrored horizontally
    3: lambda a: a[::-1, ::-1],  # rotated 180
    4: lambda a: a[::-1],  # mirrored vertically
    5: lambda a: a.transpose(1, 0, 2),  # mirrored along the main diagonal
    6: lambda a: np.rot90(a, k=-1),  # stored rotated: display turned 90 degrees clockwise
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),  # mirrored along the anti-diagonal
    8: lambda a: np.rot90(a, k=1),  # display turned 90 degrees counter-clockwise
}


def with_orientation(im: Image.Image, fmt: str, orientation: int, **kwargs) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(im, fmt, exif=exif, **kwargs)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_all_eight(orientation):
    a = noise(2, 3, seed=orientation)  # non-square, every pixel distinct
    out = decode_image(with_orientation(Image.fromarray(a), "PNG", orientation))
    expected = ORIENTED[orientation](a).astype(np.float32) / 255
    assert out.exif_orientation == orientation
    assert out.array.shape == expected.shape
    assert (out.height, out.width) == expected.shape[:2]
    np.testing.assert_array_equal(out.array, expected)


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_orientation_marker_in_lossy_formats(fmt, orientation):
    a = np.zeros((16, 32, 3), np.uint8)
    a[:8, :8] = (255, 0, 0)  # red marker in the stored top-left corner
    out = decode_image(with_orientation(Image.fromarray(a), fmt, orientation, quality=95))
    assert out.array.shape == (32, 16, 3)
    # 90 degrees clockwise takes the top-left corner to the top-right; counter-clockwise to the bottom-left
    corner = out.array[:8, 8:] if orientation == 6 else out.array[24:, :8]
    assert corner[..., 0].mean() > 0.9 and corner[..., 1].mean() < 0.1
    assert out.array[:8, :8].mean() < 0.1  # the stored top-right corner (black) in both cases


@pytest.mark.parametrize("bad_value", [0, 9, 300])
def test_exif_orientation_out_of_range_ignored(bad_value):
    a = noise(2, 3)
    out = decode_image(with_orientation(Image.fromarray(a), "PNG", bad_value))
    assert out.exif_orientation == 1 and out.array.shape == (2, 3, 3)


# -------------------------------------------------------------------------------------------- bad input


def test_empty():
    with pytest.raises(EmptyImageError, match="empty") as err:
        decode_image(b"")
    assert (err.value.code, err.value.http_status) == ("empty_image", 400)


def test_non_image_bytes():
    with pytest.raises(UnsupportedFormatError, match="not a recognised image") as err:
        decode_image(b"hello, this is plain text and not a picture")
    assert "PNG, JPEG, WEBP" in err.value.detail
    assert err.value.http_status == 415


def test_animated_gif_refused_as_unsupported():
    frames = [Image.new("RGB", (4, 4), c) for c in [(255, 0, 0), (0, 255, 0)]]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    with pytest.raises(UnsupportedFormatError, match="GIF images are not accepted"):
        decode_image(data, filename="anim.gif")


@pytest.mark.parametrize("fmt", ["BMP", "TIFF"])
def test_bmp_tiff_refused(fmt):
    with pytest.raises(UnsupportedFormatError, match=f"{fmt} images are not accepted"):
        decode_image(encode(Image.new("RGB", (4, 4)), fmt))


def test_format_allow_list_can_be_narrowed():
    limits = ImageLimits(formats=("png",))
    assert limits.formats == ("PNG",)
    with pytest.raises(UnsupportedFormatError, match="JPEG images are not accepted; allowed formats: PNG"):
        decode_image(encode(Image.new("RGB", (4, 4)), "JPEG"), limits=limits)


def test_animated_webp_refused():
    frames = [Image.new("RGB", (4, 4), c) for c in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    data = encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    with pytest.raises(AnimatedImageError, match="animated WebP with 3 frames") as err:
        decode_image(data)
    assert (err.value.code, err.value.http_status) == ("animated_image", 422)


def test_apng_refused():
    frames = [Image.new("RGB", (4, 4), c) for c in [(255, 0, 0), (0, 255, 0)]]
    data = encode(frames[0], "PNG", save_all=True, append_images=frames[1:])
    with pytest.raises(AnimatedImageError, match="APNG with 2 frames"):
        decode_image(data)


def test_wrong_extension_and_content_type():
    jpeg = encode(Image.new("RGB", (4, 4)), "JPEG")
    with pytest.raises(FormatMismatchError, match=r"file extension '\.png' declares PNG but the data is JPEG"):
        decode_image(jpeg, filename="photo.png")
    with pytest.raises(FormatMismatchError, match="Content-Type 'image/png' declares PNG but the data is JPEG"):
        decode_image(jpeg, content_type="image/png; charset=binary")
    with pytest.raises(FormatMismatchError, match="declares GIF"):
        decode_image(jpeg, filename="x.gif")
    assert decode_image(jpeg, filename="photo.jpeg", content_type="IMAGE/JPEG").format == "JPEG"


def test_read_image_mismatch_names_path(tmp_path):
    path = tmp_path / "photo.png"
    path.write_bytes(encode(Image.new("RGB", (4, 4)), "JPEG"))
    with pytest.raises(FormatMismatchError) as err:
        read_image(path)
    assert str(err.value).startswith(f"{path}: ")
    assert str(path) not in err.value.detail  # the server-facing detail never carries paths
    assert err.value.source == str(path)


@pytest.mark.parametrize("cut", [20, 60, "half"])
def test_truncated_png(cut):
    data = encode(Image.fromarray(noise()), "PNG")
    n = len(data) // 2 if cut == "half" else cut
    with pytest.raises(TruncatedImageError) as err:
        decode_image(data[:n])
    assert (err.value.code, err.value.http_status) == ("truncated_image", 400)
    assert f"{n} bytes" in err.value.detail


@pytest.mark.parametrize("fraction", [0.05, 0.5, 0.95])
def test_truncated_jpeg(fraction):
    data = encode(Image.fromarray(noise()), "JPEG")
    with pytest.raises(TruncatedImageError):
        decode_image(data[: int(len(data) * fraction)])


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_every_cut_is_truncated_not_corrupt(fmt):
    """A cut anywhere past the format signature reads as truncated (a cut inside a PNG chunk header once read
    as corrupt), except after the last pixel: a PNG missing only its IEND chunk has every pixel and decodes."""
    data = encode(Image.fromarray(noise()), fmt)
    start = 12 if fmt == "WEBP" else 8
    for n in [*range(start, 160), len(data) // 3, len(data) // 2, len(data) - 40]:
        with pytest.raises(TruncatedImageError):
            decode_image(data[:n])


def test_truncated_webp():
    data = encode(Image.fromarray(noise()), "WEBP")
    with pytest.raises(TruncatedImageError):
        decode_image(data[: len(data) // 2])


def test_load_truncated_images_flag_untouched():
    data = encode(Image.fromarray(noise()), "JPEG")
    with pytest.raises(TruncatedImageError):
        decode_image(data[: len(data) // 2])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_corrupt_png_checksum():
    data = bytearray(encode(Image.fromarray(noise()), "PNG"))
    data[len(data) // 2] ^= 0xFF  # inside IDAT: CRC / zlib stream broken
    with pytest.raises(CorruptImageError) as err:
        decode_image(bytes(data))
    assert (err.value.code, err.value.http_status) == ("corrupt_image", 400)


def test_corrupt_jpeg_and_webp():
    jpeg = bytearray(encode(Image.fromarray(noise()), "JPEG"))
    jpeg[400:600] = bytes([0xFF, 0x00]) * 100
    with pytest.raises(CorruptImageError):
        decode_image(bytes(jpeg))
    payload = b"VP8 " + struct.pack("<I", 20) + bytes(range(20))
    webp = b"RIFF" + struct.pack("<I", 4 + len(payload)) + b"WEBP" + payload  # sizes right, content junk
    with pytest.raises(CorruptImageError):
        decode_image(webp)


def test_byte_limit():
    data = encode(Image.fromarray(noise()), "PNG")
    with pytest.raises(ImageTooLargeError, match=f"{len(data)} bytes.*above the limit of .*1000 bytes") as err:
        decode_image(data, limits=ImageLimits(max_bytes=1000))
    assert (err.value.code, err.value.http_status) == ("image_too_large", 413)


def test_byte_limit_checked_before_reading_file(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    path.write_bytes(encode(Image.fromarray(noise()), "PNG"))

    def refuse(*args, **kwargs):
        raise AssertionError("file was opened")

    monkeypatch.setattr(Path, "open", refuse)
    with pytest.raises(ImageTooLargeError, match=str(path)):
        read_image(path, limits=ImageLimits(max_bytes=100))


def test_decompression_bomb_header_refused_before_decoding(no_pixel_decoding):
    bomb = handmade_png(100_000, 100_000, 8, 2, b"\x00" * 4)  # 10 gigapixels claimed, ~80 bytes sent
    assert len(bomb) < 100
    start = time.perf_counter()
    with pytest.raises(TooManyPixelsError) as err:
        decode_image(bomb)
    assert time.perf_counter() - start < 1.0
    assert (err.value.code, err.value.http_status) == ("too_many_pixels", 413)
    assert "16,777,216 pixels" in err.value.detail


def test_pixel_limit_message(no_pixel_decoding):
    data = handmade_png(5000, 5000, 8, 2, b"")
    with pytest.raises(TooManyPixelsError, match=r"^image is 5000x5000 = 25,000,000 pixels, above the limit of 16,777,216 pixels \(16\.8 MP\)$"):
        decode_image(data)
    # just over the limit: exact counts, never "16.8 MP above 16.8 MP"
    with pytest.raises(TooManyPixelsError, match=r"4100x4100 = 16,810,000 pixels, above the limit of 16,777,216 pixels"):
        decode_image(handmade_png(4100, 4100, 8, 2, b""))
    with warnings.catch_warnings():  # 144 MP is above Pillow's own warning threshold (89 MP)
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with pytest.raises(TooManyPixelsError, match=r"12000x12000 = 144,000,000 pixels, above the limit"):
            decode_image(handmade_png(12000, 12000, 8, 2, b""))


def test_pillow_bomb_warning_as_error_is_too_many_pixels():
    data = handmade_png(12000, 12000, 8, 2, b"")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with pytest.raises(TooManyPixelsError):
            decode_image(data, limits=ImageLimits(max_pixels=10**9, max_side=20000))


def test_max_side(no_pixel_decoding):
    data = handmade_png(9000, 10, 8, 2, b"")
    with pytest.raises(TooManyPixelsError, match=r"longest side \(9000 pixels\) is above the limit of 8192"):
        decode_image(data)


def test_probe_checks_header_only(tmp_path):
    data = encode(Image.fromarray(noise()), "PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    info = probe_image(path)
    assert (info.format, info.mode, info.width, info.height) == ("PNG", "RGB", 64, 64)
    with pytest.raises(TruncatedImageError, match=str(path)):
        read_image(path)


# ------------------------------------------------------------------------------------------ error classes

ERRORS = [
    (EmptyImageError, "empty_image", 400),
    (ImageTooLargeError, "image_too_large", 413),
    (TooManyPixelsError, "too_many_pixels", 413),
    (UnsupportedFormatError, "unsupported_format", 415),
    (FormatMismatchError, "format_mismatch", 415),
    (TruncatedImageError, "truncated_image", 400),
    (CorruptImageError, "corrupt_image", 400),
    (AnimatedImageError, "animated_image", 422),
]


@pytest.mark.parametrize(("cls", "code", "status"), ERRORS)
def test_error_codes_and_status(cls, code, status):
    err = cls("something specific", source="/data/x.png")
    assert isinstance(err, ImageDecodeError) and isinstance(err, ValueError)
    assert (cls.code, cls.http_status) == (code, status)
    assert err.detail == "something specific" and str(err) == "/data/x.png: something specific"
    assert err.to_dict() == {"error": code, "detail": "something specific", "status": status}


def test_error_codes_unique():
    assert len({code for _, code, _ in ERRORS}) == len(ERRORS)


def test_limits_validation():
    with pytest.raises(ValueError, match="max_pixels"):
        ImageLimits(max_pixels=0)
    with pytest.raises(ValueError, match="formats"):
        ImageLimits(formats=("GIF",))
    with pytest.raises(ValueError, match="background"):
        ImageLimits(background=(0, 0, 256))
    assert ImageLimits(formats=("jpg", "webp")).formats == ("JPEG", "WEBP")


def test_sniff_format():
    assert sniff_format(b"\x89PNG\r\n\x1a\n....") == "PNG"
    assert sniff_format(b"\xff\xd8\xff\xe0") == "JPEG"
    assert sniff_format(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "WEBP"
    assert sniff_format(b"RIFF\x00\x00\x00\x00WAVEfmt ") is None
    assert sniff_format(b"\x00\x00\x00\x18ftypheic") == "HEIF"
    assert sniff_format(b"") is None


# ------------------------------------------------------------------------------------------------ writing


def test_to_uint8_and_back():
    out = to_uint8(np.array([-0.5, 0.0, 0.5, 1.0, 2.0, np.nan], dtype=np.float32))
    np.testing.assert_array_equal(out, [0, 0, 128, 255, 255, 0])
    everything = np.arange(256, dtype=np.uint8)
    np.testing.assert_array_equal(to_uint8(from_uint8(everything)), everything)
    assert from_uint8(everything).dtype == np.float32
    with pytest.raises(TypeError):
        from_uint8(everything.astype(np.int32))
    with pytest.raises(TypeError):
        to_uint8(np.array([1, 2], dtype=np.int64))


def test_encode_decode_round_trip():
    a = noise(6, 5, seed=3).astype(np.float32) / 255
    np.testing.assert_array_equal(decode_image(encode_image(a)).array, a)
    jpeg = decode_image(encode_image(a, "jpg", quality=100))
    assert jpeg.format == "JPEG" and jpeg.array.shape == a.shape
    grey = decode_image(encode_image(np.full((3, 4, 1), 0.2, np.float32), "WEBP"))
    assert grey.array.shape == (3, 4, 3)
    with pytest.raises(ValueError, match="alpha"):
        encode_image(np.zeros((2, 2, 4), np.float32), "JPEG")
    with pytest.raises(ValueError, match="cannot encode"):
        encode_image(a, "GIF")
    with pytest.raises(ValueError, match="shape"):
        encode_image(np.zeros((2, 2, 2), np.float32))


def test_save_image_by_suffix(tmp_path):
    a = noise(4, 4).astype(np.float32) / 255
    assert read_image(save_image(tmp_path / "out.PNG", a)).format == "PNG"
    assert read_image(save_image(tmp_path / "sub" / "out.jpg", a)).format == "JPEG"
    assert read_image(save_image(tmp_path / "out.webp", a)).format == "WEBP"
    with pytest.raises(ValueError, match="suffix"):
        save_image(tmp_path / "out.gif", a)
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["out.PNG", "out.jpg", "out.webp"]

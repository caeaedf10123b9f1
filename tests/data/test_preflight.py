"""Tests for styleengine.data.preflight and styleengine.data.folders (images generated in code)."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from styleengine.data import (
    BadFile,
    DatasetError,
    ImageLimits,
    PreflightReport,
    find_images,
    match_pairs,
    preflight_images,
)


def encode(im: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt)
    return buf.getvalue()


def noise(seed: int = 0, size: int = 32) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def dataset(tmp_path: Path) -> dict[str, Path]:
    png = encode(noise(1), "PNG")
    corrupt = bytearray(png)
    corrupt[len(corrupt) // 2] ^= 0xFF
    jpeg = encode(noise(2), "JPEG")
    big_jpeg = encode(noise(4, size=96), "JPEG")  # headers intact, scan data cut short
    files = {
        "good_png": write(tmp_path / "a_good.png", png),
        "good_jpg": write(tmp_path / "b_good.JPG", jpeg),
        "good_webp": write(tmp_path / "nested" / "c_good.webp", encode(noise(3), "WEBP")),
        "corrupt": write(tmp_path / "d_corrupt.png", bytes(corrupt)),
        "empty": write(tmp_path / "e_empty.jpg", b""),
        "text": write(tmp_path / "f_notes.png", b"these are my notes, not an image\n"),
        "truncated": write(tmp_path / "g_truncated.jpg", big_jpeg[: len(big_jpeg) * 3 // 4]),
    }
    write(tmp_path / "readme.txt", b"not an image suffix")
    write(tmp_path / "._a_good.png", b"\x00\x05\x16\x07 macOS resource fork")
    write(tmp_path / ".cache" / "thumb.png", png)
    return files


GOOD = ["good_png", "good_jpg", "good_webp"]
BAD = {
    "corrupt": "corrupt_image",
    "empty": "empty_image",
    "text": "unsupported_format",
    "truncated": "truncated_image",
}


def test_find_images(tmp_path, dataset):
    found = find_images(tmp_path)
    assert found == sorted(dataset.values())  # sorted, upper-case suffix found, txt and hidden entries skipped
    assert dataset["good_webp"] not in find_images(tmp_path, recursive=False)
    with pytest.raises(NotADirectoryError, match="no such directory"):
        find_images(tmp_path / "missing")


def test_preflight_reports_each_bad_file(tmp_path, dataset):
    report = preflight_images(find_images(tmp_path))
    assert report.ok == [dataset[k] for k in GOOD[:2]] + [dataset["good_webp"]]
    assert {b.path: b.code for b in report.bad} == {dataset[k]: code for k, code in BAD.items()}
    reasons = {b.path: b.reason for b in report.bad}
    assert "empty" in reasons[dataset["empty"]]
    assert "not a recognised image" in reasons[dataset["text"]]
    assert "ends before the image does" in reasons[dataset["truncated"]]
    summary = report.summary()
    assert summary.startswith("3 of 7 image(s) usable; 4 bad:")
    for bad in report.bad:
        assert f"{bad.path}: {bad.reason}" in summary


def test_header_only_preflight_misses_pixel_damage(tmp_path, dataset):
    report = preflight_images(find_images(tmp_path), full_decode=False)
    assert dataset["truncated"] in report.ok and dataset["corrupt"] in report.ok
    assert {b.path for b in report.bad} == {dataset["empty"], dataset["text"]}


def test_limits_are_passed_through(tmp_path, dataset):
    report = preflight_images([dataset["good_png"]], limits=ImageLimits(max_pixels=100))
    assert [b.code for b in report.bad] == ["too_many_pixels"]
    assert "32x32" in report.bad[0].reason


def test_unreadable_path(tmp_path):
    report = preflight_images([tmp_path / "missing.png"])
    assert report.ok == [] and report.bad[0].code == "unreadable"
    assert "cannot read file" in report.bad[0].reason


def test_policy_skip_logs_each_bad_file(tmp_path, dataset, caplog):
    report = preflight_images(find_images(tmp_path))
    with caplog.at_level(logging.WARNING, logger="styleengine.data.preflight"):
        ok = report.apply("skip")
    assert ok == report.ok
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == len(BAD)
    for key in BAD:
        assert any(str(dataset[key]) in m for m in messages)


def test_policy_fail_lists_every_bad_file(tmp_path, dataset):
    report = preflight_images(find_images(tmp_path))
    with pytest.raises(DatasetError) as err:
        report.apply("fail")
    assert isinstance(err.value, ValueError)
    assert len(err.value.bad) == len(BAD)
    for key in BAD:
        assert str(dataset[key]) in str(err.value)


def test_nothing_usable_fails_even_with_skip(dataset):
    report = preflight_images([dataset["empty"], dataset["text"]])
    with pytest.raises(DatasetError, match="no usable images"):
        report.apply("skip")
    with pytest.raises(DatasetError, match="no usable images"):
        PreflightReport().apply("fail")


def test_clean_report(dataset):
    report = preflight_images([dataset[k] for k in GOOD])
    assert report.bad == [] and report.apply("fail") == report.ok
    assert report.summary() == "3 of 3 image(s) usable"
    with pytest.raises(ValueError, match="unknown bad-file policy"):
        report.apply("ignore")  # type: ignore[arg-type]


def test_progress_bar(dataset, capsys):
    preflight_images([dataset["good_png"]], progress=True)
    assert "preflight" in capsys.readouterr().err


def test_bad_file_str():
    assert str(BadFile(Path("x/y.png"), "too big")) == f"{Path('x/y.png')}: too big"


def test_match_pairs(tmp_path):
    a, b = tmp_path / "A", tmp_path / "B"
    png = encode(noise(), "PNG")
    for rel in ["001.png", "002.png", "003.png", "sub/004.png"]:
        write(a / rel, png)
    for rel in ["001.jpg", "002.png", "005.png", "sub/004.JPEG", "notes.txt"]:
        write(b / rel, png)
    pairs, problems = match_pairs(a, b)
    assert pairs == [
        (a / "001.png", b / "001.jpg"),
        (a / "002.png", b / "002.png"),
        (a / "sub" / "004.png", b / "sub" / "004.JPEG"),
    ]
    assert [(p.path, p.reason) for p in problems] == [
        (a / "003.png", f"no matching file in {b}"),
        (b / "005.png", f"no matching file in {a}"),
    ]


def test_match_pairs_duplicate_stem(tmp_path):
    a, b = tmp_path / "A", tmp_path / "B"
    write(a / "001.jpg", b"x")
    write(a / "001.png", b"x")
    write(b / "001.png", b"x")
    pairs, problems = match_pairs(a, b)
    assert pairs == [(a / "001.jpg", b / "001.png")]
    assert [(p.path, p.code) for p in problems] == [(a / "001.png", "ambiguous")]
    assert str(a / "001.jpg") in problems[0].reason

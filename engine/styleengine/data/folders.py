"""Dataset folder readers: list the images of a folder, pair two folders (pix2pix-style ``A``/``B`` data).

Images are found by suffix (case-insensitive) among the formats the decoder accepts; whether their bytes
really are such images is :mod:`~styleengine.data.preflight`'s job.  Hidden files and folders (names starting
with ``.``) are ignored: they are editor backups, ``.ipynb_checkpoints`` or macOS ``._photo.jpg`` resource
forks, which carry an image suffix but no image.  Results are sorted, so runs see files in the same order on
every machine.

Pairs match by file stem (for nested folders: relative path without suffix), so ``A/0001.png`` pairs with
``B/0001.jpg``; every file without a partner is reported, as is a stem that appears twice in one folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from .preflight import BadFile

__all__ = ["IMAGE_SUFFIXES", "find_images", "match_pairs"]

#: Suffixes of the formats the decoder accepts (PNG, JPEG, WebP), lower case.
IMAGE_SUFFIXES: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".webp"})


def find_images(root: str | os.PathLike[str], recursive: bool = True) -> list[Path]:
    """Image files under ``root`` (by suffix, case-insensitive; hidden entries skipped), sorted."""
    base = Path(root)
    if not base.is_dir():
        raise NotADirectoryError(f"{base}: not a directory" if base.exists() else f"{base}: no such directory")
    candidates = base.rglob("*") if recursive else base.iterdir()
    found = []
    for path in candidates:
        rel = path.relative_to(base)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            found.append(path)
    return sorted(found)


def _by_stem(root: Path) -> tuple[dict[str, Path], list[BadFile]]:
    index: dict[str, Path] = {}
    problems = []
    for path in find_images(root):
        key = path.relative_to(root).with_suffix("").as_posix()
        if key in index:
            problems.append(BadFile(path, f"same name as {index[key]}; cannot tell which to pair", "ambiguous"))
        else:
            index[key] = path
    return index, problems


def match_pairs(
    dir_a: str | os.PathLike[str], dir_b: str | os.PathLike[str]
) -> tuple[list[tuple[Path, Path]], list[BadFile]]:
    """Pair the images of ``dir_a`` and ``dir_b`` by stem.

    Returns ``(pairs, problems)``: pairs sorted by the ``dir_a`` path, and one :class:`BadFile` per file
    without a partner (``"no matching file in <other dir>"``) or with a duplicate stem.
    """
    a, b = Path(dir_a), Path(dir_b)
    index_a, problems_a = _by_stem(a)
    index_b, problems_b = _by_stem(b)
    pairs = sorted((index_a[k], index_b[k]) for k in index_a.keys() & index_b.keys())
    problems = problems_a + problems_b
    for index, other, other_dir in ((index_a, index_b, b), (index_b, index_a, a)):
        unpaired = sorted(index.keys() - other.keys())
        problems += [BadFile(index[k], f"no matching file in {other_dir}", "unpaired") for k in unpaired]
    return pairs, problems

"""Preflight: check every file of a dataset before training starts, and report all problems at once.

A training run that dies at step 40 000 on one truncated JPEG wastes hours; a loader that silently skips
broken files hides a broken dataset.  So a run checks its files first, with the very decoder the server
uses, collects *every* bad file with its reason into a :class:`PreflightReport`, and then applies an explicit
policy (:data:`OnBadFile`): ``"fail"`` stops with one error listing every bad file, ``"skip"`` logs one
warning per bad file and goes on with the rest (and still fails if nothing usable is left).

``full_decode=False`` checks only what the header tells (format, extension, size limits, animation): fast
on a large dataset, but it does not catch truncated or corrupt pixel data.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from tqdm.auto import tqdm

from .decode import DEFAULT_LIMITS, ImageLimits, probe_image, read_image
from .errors import DatasetError, ImageDecodeError

__all__ = ["BadFile", "OnBadFile", "PreflightReport", "preflight_images"]

logger = logging.getLogger(__name__)

#: What to do with files that fail the checks.
OnBadFile = Literal["skip", "fail"]


@dataclass(frozen=True)
class BadFile:
    """A file that cannot be used, and why.  ``code`` is the decoder's error code when there is one
    (``"truncated_image"``, ...), ``"unreadable"`` for OS errors, ``"unpaired"`` for pairing problems."""

    path: Path
    reason: str
    code: str | None = None

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class PreflightReport:
    """The result of a preflight: usable paths in input order, and the bad files with their reasons."""

    ok: list[Path] = field(default_factory=list)
    bad: list[BadFile] = field(default_factory=list)

    def summary(self) -> str:
        """One line of counts, then one line per bad file (``path: reason``)."""
        total = len(self.ok) + len(self.bad)
        head = f"{len(self.ok)} of {total} image(s) usable"
        if not self.bad:
            return head
        lines = [f"{head}; {len(self.bad)} bad:"]
        lines += [f"  {b.path}: {b.reason}" for b in self.bad]
        return "\n".join(lines)

    def apply(self, policy: OnBadFile) -> list[Path]:
        """Return the usable paths under ``policy``, or raise :class:`DatasetError`.

        ``"fail"`` raises if any file is bad (listing all of them); ``"skip"`` logs a warning per bad file.
        Either way, an empty result raises: a dataset with nothing usable in it is an error.
        """
        if policy not in get_args(OnBadFile):
            raise ValueError(f"unknown bad-file policy {policy!r}; expected one of {get_args(OnBadFile)}")
        if self.bad and policy == "fail":
            raise DatasetError(
                f"{len(self.bad)} bad image file(s) (policy 'fail'; use 'skip' to train on the rest): "
                f"{self.summary()}",
                self.bad,
            )
        for b in self.bad:
            logger.warning("skipping %s: %s", b.path, b.reason)
        if not self.ok:
            raise DatasetError(f"no usable images: {self.summary()}", self.bad)
        return list(self.ok)


def preflight_images(
    paths: Iterable[str | os.PathLike[str]],
    *,
    limits: ImageLimits = DEFAULT_LIMITS,
    full_decode: bool = True,
    progress: bool = False,
) -> PreflightReport:
    """Check each path with the image decoder (see :mod:`styleengine.data.decode`) and report.

    Never raises for a bad file: decoder errors and OS errors become :class:`BadFile` entries.
    ``progress=True`` shows a tqdm bar.
    """
    report = PreflightReport()
    paths = [Path(p) for p in paths]
    for path in tqdm(paths, desc="preflight", unit="img", disable=not progress):
        try:
            if full_decode:
                read_image(path, limits=limits)
            else:
                probe_image(path, limits=limits)
        except ImageDecodeError as exc:
            report.bad.append(BadFile(path, exc.detail, exc.code))
        except OSError as exc:
            report.bad.append(BadFile(path, f"cannot read file ({exc.strerror or exc})", "unreadable"))
        else:
            report.ok.append(path)
    return report

"""Atomic file and directory writes.

Everything the engine writes (ONNX files, engines, manifests, checkpoints, images) goes through these
helpers: data is written to a temporary sibling, flushed and fsync'ed, then renamed over the target, so
a crash or an exception mid-write leaves the previous file intact and never a half-written one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _apply_umask(path: str | os.PathLike[str], mode: int) -> None:
    """``mkstemp`` / ``mkdtemp`` create 0600 / 0700; what we write is shared like any other tool's
    output: the mode ``open`` / ``mkdir`` would give under the process umask."""
    with contextlib.suppress(OSError):
        os.chmod(path, mode & ~_umask())


def _fsync_dir(path: Path) -> None:
    # Make the rename itself durable.  Not every filesystem lets a directory be opened; that is fine.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path``; on clean exit it replaces ``path`` atomically.

    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open supports 'wb' and 'w', not {mode!r}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    _apply_umask(tmp, 0o666)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
            yield fh  # type: ignore[misc]
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    with atomic_open(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Build a directory in a temporary sibling and swap it in on success.

    The previous directory (if any) stays in place until the new one is complete; it is then moved
    aside, the new one renamed in, and the old one deleted.  On an exception the temporary directory
    is removed and the previous directory is untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    _apply_umask(tmp, 0o777)
    try:
        yield tmp
        _fsync_dir(tmp)
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            if old.exists():
                shutil.rmtree(old)
            os.replace(target, old)
        os.replace(tmp, target)
        _fsync_dir(target.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


#: Digests computed in this process: absolute path -> (size, mtime_ns, inode, sha256).
_DIGESTS: dict[str, tuple[int, int, int, str]] = {}
#: Digests a server's supervisor computed just before starting this worker (same stat identity only).
_TRUSTED: dict[str, tuple[int, int, int, str]] | None = None
ENV_VERIFIED = "STYLEENGINE_VERIFIED_DIGESTS"


def _identity(path: str | os.PathLike[str]) -> tuple[str, tuple[int, int, int]]:
    st = os.stat(path)
    return os.path.abspath(path), (st.st_size, st.st_mtime_ns, st.st_ino)


def _trusted() -> dict[str, tuple[int, int, int, str]]:
    global _TRUSTED
    if _TRUSTED is None:
        raw = os.environ.get(ENV_VERIFIED)
        try:
            _TRUSTED = {k: tuple(v) for k, v in json.loads(raw).items()} if raw else {}  # type: ignore[misc]
        except (ValueError, AttributeError, TypeError):
            _TRUSTED = {}
    return _TRUSTED


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """sha256 of a file.  A server worker reuses the digest its supervisor computed moments before for
    the very same file (same size, mtime and inode), so a large model is hashed once per start."""
    import hashlib

    key, ident = _identity(path)
    known = _trusted().get(key)
    if known is not None and tuple(known[:3]) == ident:
        return str(known[3])
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    digest = h.hexdigest()
    _DIGESTS[key] = (*ident, digest)
    return digest


def verified_digests() -> dict[str, tuple[int, int, int, str]]:
    """The digests this process computed (a supervisor hands them to its workers)."""
    return dict(_DIGESTS)

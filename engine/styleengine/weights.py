"""Weights: the engine's checkpoint format, safe legacy loading, and pinned remote references.

* The engine writes **safetensors** only: a checkpoint is a folder with ``model.safetensors`` and
  ``config.json`` (style name, model config, metadata), or a bare ``.safetensors`` file whose header
  metadata carries the same JSON.  Written atomically.
* Legacy ``.pth`` / ``.ckpt`` files are read only through ``torch.load(weights_only=True)`` into a
  style's key-mapping importer; pickled modules are never loaded.
* Remote weights are ``hf://org/repo@revision[/path/in/repo]`` (through huggingface_hub, pinned by
  revision) or a known release URL with a sha256 (checked download into the cache).  Offline, both
  fail with :class:`WeightsUnavailableError` saying what to fetch and where to put it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .io import atomic_dir, atomic_open, sha256_file

log = logging.getLogger(__name__)

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


class WeightsUnavailableError(RuntimeError):
    """Weights cannot be obtained here (offline, unknown name, hash mismatch)."""


class CorruptWeightsError(ValueError):
    """A weights file is not what it claims to be: unreadable header, or tensor data whose digest does not
    match the one recorded when it was written."""


#: Header metadata key of the sha256 of a safetensors file's tensor data (everything after the header).
DIGEST_KEY = "styleengine.tensors_sha256"
_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit


def read_safetensors_header(path: str | os.PathLike[str]) -> tuple[int, dict[str, Any]]:
    """``(header length, header JSON)`` of a safetensors file, without torch or numpy."""
    p = Path(path)
    size = p.stat().st_size
    with open(p, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise CorruptWeightsError(f"{p}: not a safetensors file (only {size} bytes)")
        n = int.from_bytes(head, "little")
        if n <= 0 or n > min(_MAX_HEADER, size - 8):
            raise CorruptWeightsError(f"{p}: not a safetensors file (header length {n} does not fit a {size}-byte file)")
        raw = fh.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptWeightsError(f"{p}: not a safetensors file (header is not JSON: {exc})") from None
    if not isinstance(header, dict):
        raise CorruptWeightsError(f"{p}: not a safetensors file (header is not a JSON object)")
    end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)), default=0)
    if 8 + n + end != size:
        raise CorruptWeightsError(f"{p}: truncated or padded safetensors file (header says {8 + n + end} bytes, file has {size})")
    return n, header


def tensors_digest(path: str | os.PathLike[str]) -> str:
    """sha256 of the tensor data of a safetensors file (independent of the header, so of its metadata)."""
    import hashlib

    n, _ = read_safetensors_header(path)
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        fh.seek(8 + n)
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def seal_safetensors(path: str | os.PathLike[str]) -> str:
    """Record the tensor-data digest in the file's own header metadata (rewritten in place, atomically)."""
    digest = tensors_digest(path)
    n, header = read_safetensors_header(path)
    meta = dict(header.get("__metadata__") or {})
    meta[DIGEST_KEY] = digest
    header["__metadata__"] = meta
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # safetensors aligns the data section to 8 bytes
    with open(path, "rb") as src, atomic_open(path) as out:
        out.write(len(raw).to_bytes(8, "little"))
        out.write(raw)
        src.seek(8 + n)
        while block := src.read(1 << 20):
            out.write(block)
    return digest


def verify_safetensors(path: str | os.PathLike[str]) -> str | None:
    """Check a sealed file's tensor data against its recorded digest; returns the digest (None: unsealed)."""
    _, header = read_safetensors_header(path)
    recorded = (header.get("__metadata__") or {}).get(DIGEST_KEY)
    if not recorded:
        return None
    actual = tensors_digest(path)
    if actual != recorded:
        raise CorruptWeightsError(
            f"{path}: tensor data sha256 {actual[:12]}... does not match the {recorded[:12]}... recorded when it was written "
            "(the file is corrupt or was modified); restore or re-create it"
        )
    return actual


@dataclass
class Checkpoint:
    tensors: dict[str, Any]
    style: str | None = None
    model_config: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


def is_engine_checkpoint(path: str | os.PathLike[str]) -> bool:
    p = Path(path)
    return (p.is_file() and p.suffix == ".safetensors") or (p.is_dir() and (p / MODEL_FILE).is_file())


def save_checkpoint(
    path: str | os.PathLike[str], tensors: dict[str, Any], *, style: str, model_config: dict[str, Any], meta: dict[str, Any] | None = None
) -> Path:
    """Write a checkpoint folder atomically (the previous one survives a failure)."""
    from safetensors.torch import save_file

    config: dict[str, Any] = {"style": style, "model": model_config, "meta": meta or {}}
    with atomic_dir(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp / MODEL_FILE), metadata={"styleengine": json.dumps(config)})
        config["tensors_sha256"] = seal_safetensors(tmp / MODEL_FILE)
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return Path(path)


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    from safetensors.torch import load_file

    p = Path(path)
    model = p / MODEL_FILE if p.is_dir() else p
    if not model.is_file():
        raise FileNotFoundError(f"no {MODEL_FILE} in {p}")
    config = checkpoint_config(p)
    digest = verify_safetensors(model)
    if digest is None and config.get("tensors_sha256"):
        raise CorruptWeightsError(f"{model}: config.json records a tensor digest but the file carries none (replaced?)")
    if config.get("tensors_sha256") and digest != config["tensors_sha256"]:
        raise CorruptWeightsError(f"{model}: tensor data does not match the digest in {p / CONFIG_FILE}")
    try:
        tensors = load_file(str(model))
    except Exception as exc:  # noqa: BLE001 - SafetensorError: one line naming the file
        raise CorruptWeightsError(f"{model}: cannot read tensors ({str(exc).splitlines()[0]})") from None
    return Checkpoint(tensors, config.get("style"), config.get("model") or {}, config.get("meta") or {})


def checkpoint_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``config.json`` of an engine checkpoint (folder), or the same JSON from a bare file's header;
    torch-free, so the server can check weights before starting."""
    p = Path(path)
    model = p / MODEL_FILE if p.is_dir() else p
    if p.is_dir() and (p / CONFIG_FILE).is_file():
        try:
            return json.loads((p / CONFIG_FILE).read_text())
        except json.JSONDecodeError as exc:
            raise CorruptWeightsError(f"{p / CONFIG_FILE}: invalid JSON ({exc})") from None
    _, header = read_safetensors_header(model)
    raw = (header.get("__metadata__") or {}).get("styleengine")
    try:
        return json.loads(raw) if raw else {}
    except json.JSONDecodeError:
        raise CorruptWeightsError(f"{model}: styleengine metadata is not JSON") from None


def safe_torch_load(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` with a clear error for files that need unpickling code."""
    import torch

    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - UnpicklingError for pickled modules, RuntimeError for junk
        raise ValueError(
            f"{path}: cannot be read as plain tensors with torch.load(weights_only=True) ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0]}). styleengine never unpickles code; convert the checkpoint to a state dict first."
        ) from exc
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a state dict, found {type(obj).__name__}")
    return obj


def read_state_dict(path_or_state: Any) -> dict[str, Any]:
    """A flat ``{name: tensor}`` dict from a mapping, a ``.safetensors`` file, or a legacy ``.pth``/``.ckpt``.

    Legacy files go through :func:`safe_torch_load`.  Raises ``ValueError`` when the content is not a
    flat mapping of names to tensors (reference importers that accept wrapped checkpoints unwrap first).
    """
    import torch

    if isinstance(path_or_state, dict):
        state, source = dict(path_or_state), "state dict"
    else:
        path = Path(path_or_state)
        source = str(path)
        if not path.is_file():
            raise FileNotFoundError(f"weights file not found: {path}")
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            verify_safetensors(path)
            try:
                state = load_file(str(path), device="cpu")
            except Exception as exc:  # noqa: BLE001 - SafetensorError
                raise CorruptWeightsError(f"{path}: cannot read tensors ({str(exc).splitlines()[0]})") from None
        else:
            state = dict(safe_torch_load(path))
    bad = [str(k) for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"{source}: not a flat state dict of tensors; offending entries: {bad[:8]}")
    return state


def sha256_path(path: str | os.PathLike[str]) -> str:
    """sha256 of a weights file, or of a checkpoint folder's model file (or all its files, sorted)."""
    p = Path(path)
    if p.is_file():
        return sha256_file(p)
    if (p / MODEL_FILE).is_file():
        return sha256_file(p / MODEL_FILE)
    h = hashlib.sha256()
    for f in sorted(q for q in p.rglob("*") if q.is_file()):
        h.update(str(f.relative_to(p)).encode())
        h.update(sha256_file(f).encode())
    return h.hexdigest()


# -- remote references -----------------------------------------------------------------------------
_HF = re.compile(r"^hf://(?P<repo>[\w.-]+/[\w.-]+)(?:@(?P<rev>[\w./-]+?))?(?:/(?P<file>.+))?$")


@dataclass(frozen=True)
class HfRef:
    repo: str
    revision: str | None
    filename: str | None


def parse_hf(ref: str) -> HfRef:
    m = _HF.match(ref)
    if not m:
        raise ValueError(f"bad hf reference {ref!r}; expected hf://org/repo@revision[/path/in/repo]")
    return HfRef(m["repo"], m["rev"], m["file"])


def cache_dir() -> Path:
    return Path(os.environ.get("STYLEENGINE_CACHE") or Path.home() / ".cache" / "styleengine")


def resolve(ref: str | os.PathLike[str]) -> Path:
    """A local path for a weights reference (local path, ``hf://...``).

    A training run folder (``engine train --out DIR``) or its ``checkpoints/`` folder stands for its newest
    complete checkpoint, so ``--weights runs/facades`` works as users expect.
    """
    s = str(ref)
    if s.startswith("hf://"):
        return fetch_hf(parse_hf(s))
    p = Path(s).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"weights not found: {p}")
    return _run_checkpoint(p) or p


def _run_checkpoint(p: Path) -> Path | None:
    """The newest complete checkpoint when ``p`` is a training run (or its checkpoints folder), else None."""
    if not p.is_dir() or (p / MODEL_FILE).is_file():
        return None
    from .training.checkpoint import LATEST, latest_checkpoint

    for folder in (p / "checkpoints", p):
        if (folder / LATEST).is_file() or any(folder.glob("step-*")):
            ckpt = latest_checkpoint(folder)
            if ckpt is None:
                raise FileNotFoundError(f"{p} is a training run without a complete checkpoint yet")
            log.info("weights: %s -> its latest checkpoint %s", p, ckpt)
            return ckpt
    return None


def fetch_hf(ref: HfRef) -> Path:
    try:
        import huggingface_hub as hub
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise WeightsUnavailableError("huggingface_hub is not installed") from exc
    if ref.revision is None:
        log.warning("hf://%s is not pinned to a revision; pin it (hf://%s@<commit>) for reproducible builds", ref.repo, ref.repo)
    try:
        if ref.filename:
            return Path(hub.hf_hub_download(ref.repo, ref.filename, revision=ref.revision))
        return Path(hub.snapshot_download(ref.repo, revision=ref.revision))
    except Exception as exc:  # noqa: BLE001 - offline, auth, not found: one clear message
        raise WeightsUnavailableError(
            f"cannot fetch hf://{ref.repo}@{ref.revision or 'main'}: {type(exc).__name__}: {str(exc).splitlines()[0]}. "
            "On a machine without network access, download it elsewhere (huggingface-cli download "
            f"{ref.repo}) and pass the local folder instead."
        ) from exc


def download_checked(url: str, dest: Path, sha256: str | None = None, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` atomically, verifying ``sha256`` when known."""
    import urllib.error
    import urllib.request

    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("STYLEENGINE_OFFLINE") == "1":
        raise WeightsUnavailableError(f"offline mode: cannot download {url}; fetch it elsewhere and pass the file with --weights")
    h = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, atomic_open(dest) as out:  # noqa: S310 - fixed release URLs
            while chunk := resp.read(1 << 20):
                h.update(chunk)
                out.write(chunk)
            if sha256 and h.hexdigest() != sha256:
                raise WeightsUnavailableError(f"{url}: sha256 {h.hexdigest()} does not match the pinned {sha256}; not saved")
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise WeightsUnavailableError(
            f"cannot download {url} ({exc}); on an offline machine fetch it elsewhere and pass the file with --weights"
        ) from exc
    return dest

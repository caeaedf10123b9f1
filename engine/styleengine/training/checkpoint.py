"""Training checkpoints: model weights, optimiser / scheduler / RNG state, all in safetensors + JSON.

A training checkpoint is an engine checkpoint folder (``model.safetensors`` + ``config.json``, loadable
with ``--weights``) plus ``training_state.safetensors`` (every tensor of the optimiser states and RNG
states) and ``training_state.json`` (the non-tensor structure with placeholders, step, epoch, extra).
No pickle anywhere.  Folders are written atomically; ``latest`` names the newest complete one.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..io import atomic_dir, atomic_write_text
from ..weights import CONFIG_FILE, MODEL_FILE

STATE_TENSORS = "training_state.safetensors"
STATE_JSON = "training_state.json"
LATEST = "latest"


def flatten(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace every tensor in a nested structure by ``{"__tensor__": key}`` and collect it."""
    if isinstance(obj, torch.Tensor):
        key = prefix
        tensors[key] = obj.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, Mapping):
        return {"__dict__": [[flatten(k, f"{prefix}.k{i}", tensors), flatten(v, f"{prefix}.{i}", tensors)] for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, tuple):
        return {"__tuple__": [flatten(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [flatten(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype)}
    if isinstance(obj, float | int | str | bool) or obj is None:
        return obj
    raise TypeError(f"cannot checkpoint a {type(obj).__name__} at {prefix}")


def unflatten(obj: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__dict__" in obj:
            return {unflatten(k, tensors): unflatten(v, tensors) for k, v in obj["__dict__"]}
        if "__tuple__" in obj:
            return tuple(unflatten(v, tensors) for v in obj["__tuple__"])
        if "__ndarray__" in obj:
            return np.asarray(obj["__ndarray__"], dtype=obj["dtype"])
        return {k: unflatten(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [unflatten(v, tensors) for v in obj]
    return obj


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(tuple(state["numpy"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))


def save_training_checkpoint(
    folder: str | Path,
    *,
    style: str,
    model_config: Mapping[str, Any],
    modules: Mapping[str, torch.nn.Module],
    optimizers: Mapping[str, Any] | None = None,
    schedulers: Mapping[str, Any] | None = None,
    step: int,
    epoch: int = 0,
    extra: Mapping[str, Any] | None = None,
    extra_files: Callable[[Path], None] | None = None,
) -> Path:
    """Write the checkpoint folder atomically.  ``extra_files(tmp)`` may add files to it before it is swapped
    in (e.g. the weights in another project's format), so they are as complete as the rest."""
    from safetensors.torch import save_file

    folder = Path(folder)
    weights = {f"{m}.{k}": v.detach().cpu().contiguous() for m, mod in modules.items() for k, v in mod.state_dict().items()}
    tensors: dict[str, torch.Tensor] = {}
    state = {
        "step": step,
        "epoch": epoch,
        "extra": dict(extra or {}),
        "optimizers": {k: flatten(o.state_dict(), f"optim.{k}", tensors) for k, o in (optimizers or {}).items()},
        "schedulers": {k: flatten(s.state_dict(), f"sched.{k}", tensors) for k, s in (schedulers or {}).items()},
        "rng": flatten(rng_state(), "rng", tensors),
    }
    config = {"style": style, "model": dict(model_config), "meta": {"step": step, "epoch": epoch}}
    with atomic_dir(folder) as tmp:
        save_file(weights, str(tmp / MODEL_FILE), metadata={"styleengine": json.dumps(config)})
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        save_file(tensors, str(tmp / STATE_TENSORS))
        (tmp / STATE_JSON).write_text(json.dumps(state, sort_keys=True) + "\n")
        if extra_files is not None:
            extra_files(tmp)
    atomic_write_text(folder.parent / LATEST, folder.name + "\n")
    return folder


def prune_checkpoints(checkpoints_dir: str | Path, keep: int) -> list[Path]:
    """Delete all but the ``keep`` newest complete checkpoints (diffusers' ``checkpoints_total_limit``).

    Run after a save: the new checkpoint is complete before any old one goes, so a crash in between leaves one
    more, never one fewer.  The one ``latest`` names is always kept.  Returns the deleted folders."""
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    d = Path(checkpoints_dir)
    found = sorted(p for p in d.glob("step-*") if (p / STATE_JSON).is_file())
    latest = latest_checkpoint(d)
    doomed = [p for p in found[: max(0, len(found) - keep)] if p != latest]
    for p in doomed:
        shutil.rmtree(p, ignore_errors=True)
    return doomed


def remove_stale_temporaries(checkpoints_dir: str | Path) -> list[Path]:
    """Delete what interrupted atomic writes left in ``checkpoints_dir``: ``.step-*.tmp`` folders being
    built and ``.step-*.old-*`` folders being replaced (see :func:`styleengine.io.atomic_dir`).  Returns them."""
    d = Path(checkpoints_dir)
    if not d.is_dir():
        return []
    stale = sorted(p for pattern in (".step-*.tmp", ".step-*.old-*") for p in d.glob(pattern) if p.is_dir())
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    return stale


def latest_checkpoint(checkpoints_dir: str | Path) -> Path | None:
    d = Path(checkpoints_dir)
    marker = d / LATEST
    if marker.is_file():
        p = d / marker.read_text().strip()
        if (p / STATE_JSON).is_file():
            return p
    found = sorted(p for p in d.glob("step-*") if (p / STATE_JSON).is_file())
    return found[-1] if found else None


def load_training_checkpoint(
    folder: str | Path,
    *,
    modules: Mapping[str, torch.nn.Module],
    optimizers: Mapping[str, Any] | None = None,
    schedulers: Mapping[str, Any] | None = None,
    restore_rng: bool = True,
) -> dict[str, Any]:
    """Restore everything saved by :func:`save_training_checkpoint`; returns step, epoch, extra."""
    from safetensors.torch import load_file

    folder = Path(folder)
    weights = load_file(str(folder / MODEL_FILE))
    for m, mod in modules.items():
        sd = {k[len(m) + 1 :]: v for k, v in weights.items() if k.startswith(m + ".")}
        mod.load_state_dict(sd, strict=True)
    tensors = load_file(str(folder / STATE_TENSORS))
    state = json.loads((folder / STATE_JSON).read_text())
    for k, o in (optimizers or {}).items():
        o.load_state_dict(unflatten(state["optimizers"][k], tensors))
    for k, s in (schedulers or {}).items():
        s.load_state_dict(unflatten(state["schedulers"][k], tensors))
    if restore_rng:
        set_rng_state(unflatten(state["rng"], tensors))
    return {"step": state["step"], "epoch": state["epoch"], "extra": state.get("extra", {})}

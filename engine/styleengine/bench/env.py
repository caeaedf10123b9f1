"""What a benchmark ran on: machine, library versions, and a short slug naming the machine."""

from __future__ import annotations

import datetime as _dt
import re
from importlib import metadata
from typing import Any

__all__ = ["environment", "machine_slug", "now"]

EXTRA_DISTS = ("numpy", "bentoml", "httpx", "psutil", "nvidia-ml-py")


def now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def environment() -> dict[str, Any]:
    """``machine`` (CPU model, cores, GPU name, driver ...) and ``versions`` of the libraries involved."""
    from ..export.manifest import library_versions, machine_info

    machine = machine_info()
    try:
        import psutil

        machine["physical_cores"] = psutil.cpu_count(logical=False)
        machine["memory_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
        machine["affinity_cpus"] = len(psutil.Process().cpu_affinity() or [])
    except Exception:  # noqa: BLE001 - informational
        pass
    try:
        import torch

        machine["torch_threads"] = torch.get_num_threads()
    except Exception:  # noqa: BLE001
        pass
    versions = library_versions()
    for dist in EXTRA_DISTS:
        try:
            versions.setdefault(dist, metadata.version(dist))
        except metadata.PackageNotFoundError:
            continue
    return {"machine": machine, "versions": versions}


def _slug(text: str) -> str:
    text = re.sub(r"\((r|tm)\)|\b(cpu|processor|\d+-core)\b|@.*$", " ", text, flags=re.I)
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def machine_slug(machine: dict[str, Any] | None = None) -> str:
    """``nvidia-h100-80gb-hbm3`` on a GPU machine, else ``amd-epyc-2cpu``: a folder name for results."""
    machine = machine or environment()["machine"]
    if machine.get("gpu"):
        return _slug(str(machine["gpu"]))
    cpu = _slug(str(machine.get("cpu") or machine.get("machine") or "cpu")) or "cpu"
    return f"{cpu}-{machine.get('affinity_cpus') or machine.get('cpus') or 0}cpu"

"""``manifest.json``: what an artifact folder holds, how it was made, and what it was validated to.

The manifest is the contract between export and load: versions, weights and ONNX sha256, precision,
dims, tolerances and measured parity, and for TensorRT engines the TensorRT version and the GPU's
name and compute capability.  Runtimes check it at load (:func:`check_engine_record`), so an engine
built for another GPU or TensorRT version is refused at start-up, not at the first request.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..io import atomic_write_json, sha256_file

MANIFEST = "manifest.json"
FORMAT = 1


class EngineRecord(BaseModel):
    model_config = ConfigDict(extra="allow")
    path: str
    sha256: str
    precision: str
    tensorrt: str
    gpu: str
    compute_capability: str
    cache_key: str
    profile: dict[str, list[list[int]]] = Field(default_factory=dict)


class QuantizedRecord(BaseModel):
    """A lossy, reduced-precision copy of a graph's ONNX (e.g. int8 static quantisation): its own file and
    digest, how it was calibrated, and its measured accuracy against fp32 torch (``psnr`` >= ``psnr_floor``)."""

    model_config = ConfigDict(extra="allow")
    path: str
    sha256: str
    precision: str
    lossy: bool = True
    method: str = ""
    calibration: dict[str, Any] = Field(default_factory=dict)
    psnr_floor: float | None = None
    psnr: float | None = None
    parity: dict[str, Any] = Field(default_factory=dict)


class GraphRecord(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    onnx: str | None = None
    onnx_sha256: str | None = None
    external_data: list[str] = Field(default_factory=list)
    #: sha256 of each external-data file (ONNX files above 2 GB keep their tensors beside them).
    external_data_sha256: dict[str, str] = Field(default_factory=dict)
    exporter: str | None = None
    opset: int | None = None
    spec: dict[str, Any] = Field(default_factory=dict)
    parity: dict[str, Any] = Field(default_factory=dict)
    engine: EngineRecord | None = None
    #: Lossy reduced-precision ONNX copies by precision (``"int8"``), run by the ONNX runtimes on request.
    quantized: dict[str, QuantizedRecord] = Field(default_factory=dict)


class Manifest(BaseModel):
    model_config = ConfigDict(extra="allow")
    format: int = FORMAT
    style: str
    variant: str
    distribution: str = ""
    style_version: str = ""
    created: str = Field(default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))
    precision: str = "fp32"
    exporter: str = "dynamo"
    profile: str = "default"
    model_config_: dict[str, Any] = Field(default_factory=dict, alias="model_config")
    weights: dict[str, Any] | None = None
    versions: dict[str, str] = Field(default_factory=dict)
    machine: dict[str, Any] = Field(default_factory=dict)
    graphs: dict[str, GraphRecord] = Field(default_factory=dict)

    # -- io ---------------------------------------------------------------------------------------
    @classmethod
    def load(cls, folder: str | Path) -> Manifest:
        folder = Path(folder)
        path = folder / MANIFEST if folder.is_dir() else folder
        if not path.is_file():
            raise FileNotFoundError(f"no {MANIFEST} in {folder}: not an exported artifact folder (run `engine export`)")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: invalid JSON ({exc})") from exc
        if data.get("format") != FORMAT:
            raise ValueError(f"{path}: manifest format {data.get('format')!r}, this engine reads format {FORMAT}")
        return cls.model_validate(data)

    def write(self, folder: str | Path) -> Path:
        return atomic_write_json(Path(folder) / MANIFEST, self.model_dump(mode="json", by_alias=True))

    def sha256(self, folder: str | Path) -> str:
        return sha256_file(Path(folder) / MANIFEST)

    def verify_files(self, folder: str | Path) -> list[str]:
        """Problems found re-hashing the ONNX files and engines (empty list = all good)."""
        folder = Path(folder)
        problems = []
        for g in self.graphs.values():
            files = [(g.onnx, g.onnx_sha256), (g.engine.path, g.engine.sha256) if g.engine else (None, None)]
            files += [(q.path, q.sha256) for q in g.quantized.values()]
            for rel, digest in files:
                if not rel:
                    continue
                p = folder / rel
                if not p.is_file():
                    problems.append(f"graph {g.name}: {rel} is missing")
                elif digest and sha256_file(p) != digest:
                    problems.append(f"graph {g.name}: {rel} sha256 does not match the manifest (modified or corrupt)")
            for rel in g.external_data:
                p = folder / rel
                if not p.is_file():
                    problems.append(f"graph {g.name}: external data {rel} is missing")
                elif rel in g.external_data_sha256 and sha256_file(p) != g.external_data_sha256[rel]:
                    problems.append(f"graph {g.name}: external data {rel} sha256 does not match the manifest (modified or corrupt)")
        return problems

    def check_files(self, folder: str | Path, graphs: list[str] | None = None) -> None:
        """Refuse to load a folder whose files do not match the manifest (one line naming every problem).

        Every runtime that loads artifacts calls this first (CLI, server, benchmark): a flipped byte in an
        ONNX file or an engine is an error at load, never a wrong answer."""
        from ..runtime.base import DamagedArtifactError

        subset = self if graphs is None else self.model_copy(update={"graphs": {k: v for k, v in self.graphs.items() if k in graphs}})
        problems = subset.verify_files(folder)
        if problems:
            raise DamagedArtifactError(f"{folder}: refusing to load damaged artifacts: {'; '.join(problems)}")


def library_versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("styleengine", "torch", "onnx", "onnxruntime", "onnxruntime-gpu", "onnxscript", "tensorrt", "diffusers", "transformers"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def machine_info() -> dict[str, Any]:
    """CPU, core count, GPU name / driver / compute capability where CUDA is visible."""
    import os

    info: dict[str, Any] = {"platform": platform.platform(), "machine": platform.machine(), "cpus": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        info["cpu"] = platform.processor()
    try:
        import torch

        if torch.cuda.is_available():
            i = torch.cuda.current_device()
            major, minor = torch.cuda.get_device_capability(i)
            info["gpu"] = torch.cuda.get_device_name(i)
            info["compute_capability"] = f"{major}.{minor}"
            info["cuda"] = torch.version.cuda
            info["driver"] = _driver_version()
    except Exception:  # noqa: BLE001 - informational only
        pass
    return info


def _driver_version() -> str | None:
    try:
        import pynvml  # provided by nvidia-ml-py where installed

        pynvml.nvmlInit()
        v = pynvml.nvmlSystemGetDriverVersion()
        return v.decode() if isinstance(v, bytes) else v
    except Exception:  # noqa: BLE001
        return None

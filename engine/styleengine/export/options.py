"""Export options (from the CLI and profile YAMLs) and the export result."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..spec import Dim, GraphSpec, SpecError, Tolerance

Exporter = Literal["dynamo", "torchscript"]


class ProfileDim(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min: int = Field(ge=1)
    opt: int = Field(ge=1)
    max: int = Field(ge=1)
    multiple_of: int | None = Field(default=None, ge=1)


class ProfileTolerance(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    atol: float = Field(ge=0, le=10)
    rtol: float = Field(ge=0, le=10)
    psnr: float | None = Field(default=None, ge=0, le=200)


class ExportProfile(BaseModel):
    """An ``export/profiles/*.yaml`` file: dims, precision and tolerances for some or all graphs.

    ``dims`` apply to every graph that has a Dim of that name; ``graphs.<name>.dims`` to one graph.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    name: str = "default"
    description: str = ""
    precision: Literal["fp32", "fp16", "bf16"] | None = None
    exporter: Exporter | None = None
    opset: int | None = Field(default=None, ge=13, le=23)
    dims: dict[str, ProfileDim] = Field(default_factory=dict)
    tolerance: ProfileTolerance | None = None
    graphs: dict[str, ExportProfileGraph] = Field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path) -> ExportProfile:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"profile not found: {path}")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"profile {path}: invalid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError(f"profile {path}: expected a mapping at the top level")
        data.setdefault("name", path.stem)
        return cls.model_validate(data)

    def apply(self, spec: GraphSpec) -> GraphSpec:
        g = self.graphs.get(spec.name)
        dims = {k: v for k, v in self.dims.items() if k in spec.dims}
        if g:
            dims.update(g.dims)
        unknown = sorted(set(dims) - set(spec.dims))
        if unknown:
            raise SpecError(f"profile {self.name}: graph {spec.name} has no dims {unknown}; it has {sorted(spec.dims)}")
        overrides = {
            name: Dim(name, d.min, d.opt, d.max, d.multiple_of or spec.dims[name].multiple_of) for name, d in dims.items()
        }
        spec = spec.with_dims(overrides)
        tol = (g.tolerance if g and g.tolerance else None) or self.tolerance
        if tol:
            spec = spec.replace(tolerance=Tolerance(tol.atol, tol.rtol, tol.psnr))
        opset = (g.opset if g and g.opset else None) or self.opset
        if opset:
            spec = spec.replace(opset=opset)
        return spec


class ExportProfileGraph(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    dims: dict[str, ProfileDim] = Field(default_factory=dict)
    tolerance: ProfileTolerance | None = None
    opset: int | None = Field(default=None, ge=13, le=23)
    skip: bool = False

    @model_validator(mode="after")
    def _ok(self) -> ExportProfileGraph:
        return self


ExportProfile.model_rebuild()


@dataclass
class ExportOptions:
    out_dir: Path
    onnx: bool = True
    trt: bool = False
    #: Also write each graph's int8 static-quantised copy (lossy; PSNR vs fp32 torch in the manifest).
    int8: bool = False
    precision: Literal["fp32", "fp16", "bf16"] = "fp32"
    exporter: Exporter = "dynamo"
    profile: ExportProfile = field(default_factory=ExportProfile)
    validate: bool = True
    #: Graphs larger than this are written with ONNX external data (protobuf's 2 GB limit).
    external_data_threshold: int = 1 << 30
    engine_cache: Path | None = None
    timing_cache: Path | None = None
    device: str = "cpu"
    seed: int = 0
    graphs: tuple[str, ...] | None = None  # restrict to these graph names
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class GraphExport:
    name: str
    onnx_path: Path | None = None
    engine_path: Path | None = None
    parity: dict[str, Any] = field(default_factory=dict)
    passed: bool = True


@dataclass
class ExportResult:
    out_dir: Path
    manifest_path: Path
    graphs: list[GraphExport]
    trt_error: str | None = None
    trtexec: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(g.passed for g in self.graphs)

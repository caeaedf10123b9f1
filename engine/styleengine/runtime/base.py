"""The Session protocol every runtime implements, and the Runtime base class.

A :class:`Session` runs one graph: named torch tensors in, named torch tensors out.  Style pipelines
(``Style.infer``) are written once against Sessions, so the same code runs on torch eager, ONNX
Runtime or TensorRT, and each graph of a style may run on a different runtime (per-graph fallback).

Tensors rather than numpy arrays are the common currency because pipelines do arithmetic between
graphs (AdaIN statistics, diffusion schedulers) in torch, and because on CUDA the ORT / TensorRT
sessions bind device memory directly instead of round-tripping through the host.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch

    from ..export.manifest import GraphRecord, Manifest
    from ..spec import GraphSpec

Precision = Literal["fp32", "fp16", "bf16", "int8"]
#: ``int8`` is a lossy artifact of its own (``engine export --int8``), run by the ONNX runtimes only.
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "bf16", "int8")
#: Precisions that live in a separate, lossy artifact file (``GraphRecord.quantized``).
QUANTIZED_PRECISIONS: tuple[str, ...] = ("int8",)


class RuntimeUnavailableError(RuntimeError):
    """The runtime cannot run here (package missing, no GPU, ...).  The message says why and what to install."""


class ArtifactMismatchError(RuntimeError):
    """An exported artifact does not match this machine or this request (refused at load time)."""


class DamagedArtifactError(ArtifactMismatchError):
    """An artifact file is missing or differs from the digest its manifest recorded (never loaded)."""


@runtime_checkable
class Session(Protocol):
    """One loaded graph.  ``run`` takes every input by name and returns every output by name."""

    graph: str
    runtime: str
    #: Where it really runs, read back from the backend (e.g. ``"CPUExecutionProvider"``, ``"cuda:0"``).
    device: str
    input_names: list[str]
    output_names: list[str]

    def run(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]: ...


@dataclass(frozen=True)
class SessionOptions:
    """What the caller asks of a runtime for one graph."""

    device: str = "cpu"
    precision: Precision = "fp32"
    #: ORT: which execution providers to try, in order; None = the runtime's default for ``device``.
    providers: tuple[str, ...] | None = None
    threads: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def replace(self, **changes: Any) -> SessionOptions:
        return dataclasses.replace(self, **changes)


class Runtime:
    """Base class of runtimes.  Register subclasses with the ``register_runtimes`` hook.

    ``needs`` says what ``load`` uses: ``"module"`` (torch eager: the GraphSpec's module),
    ``"onnx"`` (an exported ONNX file), ``"engine"`` (a serialised TensorRT engine).
    """

    name: ClassVar[str]
    needs: ClassVar[Literal["module", "onnx", "engine"]]
    description: ClassVar[str] = ""

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        """(usable here?, reason).  Must be cheap and never raise."""
        return True, "available"

    @classmethod
    def devices(cls) -> list[str]:
        """Devices this runtime can use on this machine (e.g. ``["cpu", "cuda:0"]``)."""
        return ["cpu"]

    def load(
        self,
        spec: GraphSpec,
        options: SessionOptions,
        *,
        artifact: Path | None = None,
        record: GraphRecord | None = None,
        manifest: Manifest | None = None,
    ) -> Session:
        raise NotImplementedError


def check_inputs(graph: str, expected: list[str], inputs: Mapping[str, Any]) -> None:
    """Every session checks names before running, so a pipeline bug is named, not a backend crash."""
    missing = [n for n in expected if n not in inputs]
    extra = [n for n in inputs if n not in expected]
    if missing or extra:
        raise KeyError(f"graph {graph}: missing inputs {missing}, unexpected inputs {extra}; expects {expected}")


def onnx_for_precision(graph: str, artifact: Path, record: GraphRecord | None, precision: str) -> Path:
    """The ONNX file an ONNX runtime loads for ``precision``: the exported fp32 graph, or for a quantised
    precision (int8) its own lossy artifact recorded in the manifest beside it (digest checked at load)."""
    if precision not in QUANTIZED_PRECISIONS:
        return artifact
    rec = record.quantized.get(precision) if record is not None else None
    if rec is None:
        raise ArtifactMismatchError(
            f"graph {graph}: no {precision} artifact in {artifact.parent} (export with `engine export STYLE --onnx --{precision}`)"
        )
    path = artifact.parent / rec.path
    if not path.is_file():
        raise DamagedArtifactError(f"graph {graph}: {path} is missing")
    return path

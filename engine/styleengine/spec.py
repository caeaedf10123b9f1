"""Graph specifications: one declaration from which export, validation, TensorRT and serving derive.

A style describes each exportable graph once, as a :class:`GraphSpec`: named input and output
tensors whose shapes mix fixed sizes and symbolic :class:`Dim` s (``Dim("height", 256, 512, 1024,
multiple_of=256)``).  Everything else is computed from it:

* ONNX ``dynamic_axes`` (:meth:`GraphSpec.dynamic_axes`),
* TensorRT optimisation profiles (:meth:`GraphSpec.trt_profile`),
* validation inputs at the min / opt / max points (:meth:`GraphSpec.shapes`, :meth:`GraphSpec.example_inputs`),
* the batch axis the server may stack requests on (:attr:`GraphSpec.batch_dim`).

This module is torch-free on purpose (numpy only) so manifests, profiles and the serving layer can
read specs without importing torch.  The torch module a graph exports lives on the GraphSpec as an
opaque object.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Point = Literal["min", "opt", "max"]
POINTS: tuple[Point, ...] = ("min", "opt", "max")

DTYPES = ("float32", "float16", "bfloat16", "int64", "int32", "bool")


class SpecError(ValueError):
    """A GraphSpec / Dim / profile declaration is inconsistent."""


@dataclass(frozen=True)
class Dim:
    """A symbolic dimension with an optimisation range.

    ``min <= opt <= max``; each a multiple of ``multiple_of``.  Dims with the same ``name`` in several
    tensors of a graph are the same axis (e.g. ``height`` of the input and of the output).
    """

    name: str
    min: int
    opt: int
    max: int
    multiple_of: int = 1

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise SpecError(f"Dim name {self.name!r} must be an identifier")
        if self.multiple_of < 1:
            raise SpecError(f"Dim {self.name}: multiple_of must be >= 1, got {self.multiple_of}")
        if not (1 <= self.min <= self.opt <= self.max):
            raise SpecError(
                f"Dim {self.name}: need 1 <= min <= opt <= max, got min={self.min} opt={self.opt} max={self.max}"
            )
        for label, v in (("min", self.min), ("opt", self.opt), ("max", self.max)):
            if v % self.multiple_of:
                raise SpecError(f"Dim {self.name}: {label}={v} is not a multiple of {self.multiple_of}")

    def at(self, point: Point) -> int:
        return {"min": self.min, "opt": self.opt, "max": self.max}[point]

    def accepts(self, value: int) -> bool:
        return self.min <= value <= self.max and value % self.multiple_of == 0

    def replace(self, **changes: int) -> Dim:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Derived:
    """An axis that is a fixed multiple/fraction of a Dim: ``Derived(height, div=64)`` is height // 64.

    Used for inputs whose size follows another input's (e.g. per-block dropout masks of a U-Net at
    1/64 of the image), so the exporter, TensorRT profiles and validation inputs all stay consistent.
    ``div`` must divide the Dim's ``multiple_of`` so the value is exact at every accepted size.
    """

    dim: Dim
    mul: int = 1
    div: int = 1

    def __post_init__(self) -> None:
        if self.mul < 1 or self.div < 1:
            raise SpecError(f"Derived({self.dim.name}): mul and div must be >= 1")
        if self.dim.multiple_of % self.div:
            raise SpecError(
                f"Derived({self.dim.name}, div={self.div}): {self.dim.name} must be a multiple of {self.div} "
                f"(its multiple_of is {self.dim.multiple_of})"
            )

    @property
    def name(self) -> str:
        return self.dim.name + (f"_x{self.mul}" if self.mul > 1 else "") + (f"_div{self.div}" if self.div > 1 else "")

    def at(self, point: Point) -> int:
        return self.dim.at(point) * self.mul // self.div

    def of(self, value: int) -> int:
        return value * self.mul // self.div

    def to_dict(self) -> dict[str, Any]:
        return {"derived": self.dim.to_dict(), "mul": self.mul, "div": self.div}


#: A shape entry: a fixed size, a Dim, a Derived axis, or (outputs only) the *name* of an axis that ONNX
#: should keep symbolic without a range of its own (e.g. ``"height_div8"`` for an encoder's feature map).
Axis = int | Dim | Derived | str


@dataclass(frozen=True)
class TensorSpec:
    """A named tensor: shape (fixed sizes and Dims), dtype and, for inputs, the expected value range."""

    name: str
    shape: tuple[Axis, ...]
    dtype: str = "float32"
    value_range: tuple[float, float] | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise SpecError(f"tensor name {self.name!r} must be an identifier")
        if self.dtype not in DTYPES:
            raise SpecError(f"tensor {self.name}: dtype {self.dtype!r} not one of {DTYPES}")
        object.__setattr__(self, "shape", tuple(self.shape))

    @property
    def dims(self) -> tuple[Dim, ...]:
        return tuple(a.dim if isinstance(a, Derived) else a for a in self.shape if isinstance(a, Dim | Derived))

    def at(self, point: Point) -> tuple[int, ...]:
        out = []
        for a in self.shape:
            if isinstance(a, Dim | Derived):
                out.append(a.at(point))
            elif isinstance(a, int):
                out.append(a)
            else:
                raise SpecError(f"tensor {self.name}: axis {a!r} has no size (only outputs may use named axes)")
        return tuple(out)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dtype": self.dtype,
            "shape": [a.to_dict() if isinstance(a, Dim | Derived) else a for a in self.shape],
            "value_range": list(self.value_range) if self.value_range else None,
        }


@dataclass(frozen=True)
class Tolerance:
    """Parity tolerance between a runtime and torch eager for one graph.

    An output passes when ``|a - b| <= atol + rtol * |b|`` holds element-wise (numpy's ``allclose``)
    *and*, when ``psnr`` is set, the PSNR over the output's value range is at least ``psnr`` dB.
    """

    atol: float = 1e-4
    rtol: float = 1e-3
    psnr: float | None = None

    def __post_init__(self) -> None:
        if not (self.atol >= 0 and self.rtol >= 0 and np.isfinite(self.atol) and np.isfinite(self.rtol)):
            raise SpecError(f"tolerance must be finite and >= 0, got atol={self.atol} rtol={self.rtol}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


ExampleFactory = Callable[[Mapping[str, tuple[int, ...]], np.random.Generator], dict[str, np.ndarray]]


@dataclass(frozen=True)
class GraphSpec:
    """One exportable graph of a style.

    ``module`` is the torch ``nn.Module`` to export; its ``forward`` takes the inputs as keyword
    arguments named like ``inputs`` (in order) and returns a tensor, a tuple in the order of
    ``outputs``, or a dict keyed by output names.  ``example`` builds validation inputs for given
    shapes; without it inputs are drawn uniformly from each input's ``value_range``.
    """

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    tolerance: Tolerance = field(default_factory=Tolerance)
    module: Any = field(default=None, compare=False, repr=False)
    example: ExampleFactory | None = field(default=None, compare=False, repr=False)
    batch_dim: str | None = "batch"
    opset: int = 18
    #: Force an ONNX exporter for this graph ("dynamo" / "torchscript"); None = the export options' choice.
    exporter: str | None = None
    #: Precisions this graph may be built in; graphs that overflow in fp16 (e.g. a VAE) say ("fp32",).
    precisions: tuple[str, ...] = ("fp32", "fp16", "bf16")
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        names = [t.name for t in self.inputs + self.outputs]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise SpecError(f"graph {self.name}: tensor names used twice: {sorted(dup)}")
        seen: dict[str, Dim] = {}
        for t in self.inputs + self.outputs:
            for d in t.dims:
                if d.name in seen and seen[d.name] != d:
                    raise SpecError(f"graph {self.name}: dim {d.name!r} declared twice with different ranges")
                seen[d.name] = d
        for t in self.inputs:
            if any(isinstance(a, str) for a in t.shape):
                raise SpecError(f"graph {self.name}: input {t.name} uses a named axis; inputs need Dims")
        if self.batch_dim is not None and self.batch_dim not in seen:
            raise SpecError(f"graph {self.name}: batch_dim {self.batch_dim!r} is not a Dim of any tensor")

    # -- derived views -------------------------------------------------------------------------
    @property
    def dims(self) -> dict[str, Dim]:
        out: dict[str, Dim] = {}
        for t in self.inputs + self.outputs:
            for d in t.dims:
                out.setdefault(d.name, d)
        return out

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """ONNX ``dynamic_axes`` for the TorchScript exporter: tensor name → {axis index: dim name}."""
        axes: dict[str, dict[int, str]] = {}
        for t in self.inputs + self.outputs:
            entry = {
                i: (a if isinstance(a, str) else a.name) for i, a in enumerate(t.shape) if isinstance(a, Dim | Derived | str)
            }
            if entry:
                axes[t.name] = entry
        return axes

    def shapes(self, point: Point) -> dict[str, tuple[int, ...]]:
        """Concrete input shapes with every Dim at ``point``."""
        return {t.name: t.at(point) for t in self.inputs}

    def trt_profile(self) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
        """One TensorRT optimisation profile: input name → (min, opt, max) shapes."""
        return {t.name: (t.at("min"), t.at("opt"), t.at("max")) for t in self.inputs}

    def example_inputs(self, point: Point | Mapping[str, tuple[int, ...]], seed: int = 0) -> dict[str, np.ndarray]:
        """Deterministic validation inputs at a point (or at explicit shapes)."""
        shapes = self.shapes(point) if isinstance(point, str) else dict(point)
        rng = np.random.default_rng(seed)
        if self.example is not None:
            return self.example(shapes, rng)
        out: dict[str, np.ndarray] = {}
        for t in self.inputs:
            shape = shapes[t.name]
            if t.dtype.startswith(("int", "bool")):
                lo, hi = t.value_range or (0, 2)
                out[t.name] = rng.integers(int(lo), int(hi), size=shape).astype(t.dtype)
            else:
                lo, hi = t.value_range or (-1.0, 1.0)
                out[t.name] = rng.uniform(lo, hi, size=shape).astype(np.float32)
        return out

    def check_shapes(self, shapes: Mapping[str, tuple[int, ...]]) -> None:
        """Raise :class:`SpecError` naming the tensor and axis when ``shapes`` fall outside the spec."""
        bound: dict[str, int] = {}
        for t in self.inputs:
            if t.name not in shapes:
                raise SpecError(f"graph {self.name}: missing input {t.name!r}")
            shape = tuple(shapes[t.name])
            if len(shape) != len(t.shape):
                raise SpecError(f"graph {self.name}: input {t.name} has rank {len(shape)}, expected {len(t.shape)}")
            for i, (a, v) in enumerate(zip(t.shape, shape, strict=True)):
                if isinstance(a, int) and a != v:
                    raise SpecError(f"graph {self.name}: input {t.name} axis {i} is {v}, expected {a}")
                if isinstance(a, Derived):
                    if bound.get(a.dim.name) is not None and a.of(bound[a.dim.name]) != v:
                        raise SpecError(f"graph {self.name}: input {t.name} axis {i} is {v}, expected {a.name}={a.of(bound[a.dim.name])}")
                if isinstance(a, Dim):
                    if not a.accepts(v):
                        raise SpecError(
                            f"graph {self.name}: input {t.name} {a.name}={v} outside "
                            f"[{a.min}, {a.max}] or not a multiple of {a.multiple_of}"
                        )
                    if bound.setdefault(a.name, v) != v:
                        raise SpecError(f"graph {self.name}: {a.name} is {bound[a.name]} in one input and {v} in another")

    def with_dims(self, overrides: Mapping[str, Dim | Mapping[str, int]]) -> GraphSpec:
        """A copy whose Dims named in ``overrides`` get new ranges (from a profile YAML)."""
        if not overrides:
            return self
        unknown = set(overrides) - set(self.dims)
        if unknown:
            raise SpecError(f"graph {self.name}: profile names unknown dims {sorted(unknown)}; known: {sorted(self.dims)}")
        new: dict[str, Dim] = {}
        for name, ov in overrides.items():
            new[name] = ov if isinstance(ov, Dim) else self.dims[name].replace(**dict(ov))

        def fix_axis(a: Axis) -> Axis:
            if isinstance(a, Dim):
                return new.get(a.name, a)
            if isinstance(a, Derived) and a.dim.name in new:
                return Derived(new[a.dim.name], a.mul, a.div)
            return a

        def fix(t: TensorSpec) -> TensorSpec:
            return dataclasses.replace(t, shape=tuple(fix_axis(a) for a in t.shape))

        return dataclasses.replace(
            self, inputs=tuple(fix(t) for t in self.inputs), outputs=tuple(fix(t) for t in self.outputs)
        )

    def replace(self, **changes: Any) -> GraphSpec:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GraphSpec:
        """Rebuild a (module-less) spec from :meth:`to_dict` output, e.g. from a manifest."""

        def axis(a: Any) -> Axis:
            if isinstance(a, Mapping) and "derived" in a:
                return Derived(Dim(**a["derived"]), a["mul"], a["div"])
            return Dim(**a) if isinstance(a, Mapping) else a

        def tensor(t: Mapping[str, Any]) -> TensorSpec:
            vr = t.get("value_range")
            return TensorSpec(t["name"], tuple(axis(a) for a in t["shape"]), t.get("dtype", "float32"), tuple(vr) if vr else None)

        return cls(
            name=data["name"],
            inputs=tuple(tensor(t) for t in data["inputs"]),
            outputs=tuple(tensor(t) for t in data["outputs"]),
            tolerance=Tolerance(**data.get("tolerance", {})),
            batch_dim=data.get("batch_dim", "batch"),
            opset=data.get("opset", 18),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe description (no module), recorded in manifests."""
        return {
            "name": self.name,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "tolerance": self.tolerance.to_dict(),
            "batch_dim": self.batch_dim,
            "opset": self.opset,
            "dims": {k: d.to_dict() for k, d in self.dims.items()},
        }


def image_tensor(
    name: str,
    *,
    channels: int = 3,
    batch: Dim | int | None = None,
    height: Dim | int,
    width: Dim | int,
    value_range: tuple[float, float] | None = (-1.0, 1.0),
    dtype: str = "float32",
) -> TensorSpec:
    """Shorthand for an NCHW image tensor."""
    b = batch if batch is not None else Dim("batch", 1, 1, 8)
    return TensorSpec(name, (b, channels, height, width), dtype=dtype, value_range=value_range)

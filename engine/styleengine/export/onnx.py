"""The engine's default ONNX export of one GraphSpec (the ``export_onnx`` hook's trylast implementation).

The exporter is always chosen explicitly and recorded in the manifest:

* ``dynamo`` (default): ``torch.onnx.export(..., dynamo=True)`` with ``dynamic_shapes`` derived from
  the spec's Dims.  A Dim with ``multiple_of=k`` becomes ``k * Dim(name_q)``, so the exported graph
  itself knows sizes come in multiples of k.
* ``torchscript``: the legacy tracer with ``dynamic_axes``; kept for graphs the dynamo exporter does
  not handle yet.

Weights go into ONNX external data (``<graph>.onnx.data``) when the graph is larger than the
threshold: protobuf cannot hold a single file above 2 GB (SD UNets are 3.4 GB in fp32).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path
from typing import Any

from ..spec import Derived, Dim, GraphSpec

log = logging.getLogger(__name__)


def trace_shapes(spec: GraphSpec) -> dict[str, tuple[int, ...]]:
    """Input shapes to trace at: the opt point, moved up where a dynamic axis would be traced at 1.

    ``torch.export`` specialises any dimension whose example value is 1 (and, for a multiple-of Dim,
    whose quotient is 1); tracing at 2 × multiple keeps it symbolic without tracing at the (possibly
    huge) max shape.
    """
    sizes: dict[str, int] = {}
    for name, d in spec.dims.items():
        v = d.opt
        if d.min != d.max and v // d.multiple_of < 2 and d.max // d.multiple_of >= 2:
            v = 2 * d.multiple_of
        sizes[name] = v
    shapes = {}
    for t in spec.inputs:
        shapes[t.name] = tuple(
            sizes[a.name] if isinstance(a, Dim) else a.of(sizes[a.dim.name]) if isinstance(a, Derived) else a for a in t.shape
        )
    return shapes


def _example_kwargs(spec: GraphSpec, seed: int) -> dict[str, Any]:
    import torch

    return {k: torch.from_numpy(v) for k, v in spec.example_inputs(trace_shapes(spec), seed=seed).items()}


def dynamic_shapes(spec: GraphSpec) -> dict[str, dict[int, Any]]:
    """``dynamic_shapes`` for ``torch.export``: one ``torch.export.Dim`` per spec Dim, shared by name."""
    import torch

    made: dict[str, Any] = {}

    def tdim(d: Dim) -> Any:
        if d.name not in made:
            if d.multiple_of > 1:
                q = made.setdefault(
                    f"{d.name}_q_base", torch.export.Dim(f"{d.name}_q", min=d.min // d.multiple_of, max=d.max // d.multiple_of)
                )
                made[d.name] = d.multiple_of * q
            else:
                made[d.name] = torch.export.Dim(d.name, min=d.min, max=d.max)
        return made[d.name]

    def derived(a: Derived) -> Any:
        # height = k * q  ->  height * mul / div = (k * mul / div) * q, exact because div | k
        d = a.dim
        base = tdim(d)
        if d.multiple_of > 1:
            q = made.setdefault(f"{d.name}_q_base", torch.export.Dim(f"{d.name}_q", min=d.min // d.multiple_of, max=d.max // d.multiple_of))
            return (d.multiple_of * a.mul // a.div) * q
        if a.div == 1:
            return a.mul * base
        raise ValueError(f"Derived axis {a.name} needs {d.name} to be a multiple of {a.div}")

    out: dict[str, dict[int, Any]] = {}
    for t in spec.inputs:
        axes = {}
        for i, a in enumerate(t.shape):
            if isinstance(a, Dim) and a.min != a.max:
                axes[i] = tdim(a)
            elif isinstance(a, Derived) and a.dim.min != a.dim.max:
                axes[i] = derived(a)
        out[t.name] = axes or None  # type: ignore[assignment]
    return out


def param_bytes(module: Any) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters()) + sum(
        b.numel() * b.element_size() for b in module.buffers()
    )


def export_graph(
    spec: GraphSpec, path: Path, *, exporter: str = "dynamo", external_data_threshold: int = 1 << 30, seed: int = 0
) -> dict[str, Any]:
    """Export ``spec.module`` to ``path``; returns what the manifest records about it."""
    import onnx
    import torch

    if spec.module is None:
        raise ValueError(f"graph {spec.name}: no torch module to export")
    module = spec.module.eval()
    kwargs = _example_kwargs(spec, seed)
    path = Path(path)
    large = param_bytes(module) > external_data_threshold
    quiet = io.StringIO()
    # torch.onnx warns about torchvision ops it cannot register: torchvision is deliberately absent.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    for noisy in ("onnx_ir", "onnxscript"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # A graph module may set itself up for tracing only while it is exported (``export_context()``: e.g. the
    # diffusion wrappers pin diffusers' classic attention, which exporters and TensorRT parse, and put the
    # fast SDPA processors back afterwards, so the torch runtime never runs the slow ones).
    export_context = getattr(module, "export_context", None)
    with warnings.catch_warnings(), contextlib.redirect_stdout(quiet), (export_context() if export_context else contextlib.nullcontext()):
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            program = torch.onnx.export(
                module,
                (),
                kwargs=kwargs,
                dynamo=True,
                input_names=spec.input_names,
                output_names=spec.output_names,
                opset_version=spec.opset,
                dynamic_shapes=dynamic_shapes(spec),
                optimize=True,
                verbose=False,
            )
            program.save(str(path), external_data=large)
        elif exporter == "torchscript":
            torch.onnx.export(
                module,
                (),
                str(path),
                kwargs=kwargs,
                dynamo=False,
                input_names=spec.input_names,
                output_names=spec.output_names,
                opset_version=spec.opset,
                dynamic_axes=spec.dynamic_axes(),
                do_constant_folding=True,
            )
        else:
            raise ValueError(f"unknown exporter {exporter!r}; choose dynamo or torchscript")
    onnx.checker.check_model(str(path))  # by path, so external data is checked too
    model = onnx.load(str(path), load_external_data=False)
    got_inputs = [i.name for i in model.graph.input]
    got_outputs = [o.name for o in model.graph.output]
    if got_inputs != spec.input_names or got_outputs != spec.output_names:
        raise RuntimeError(
            f"graph {spec.name}: exported names {got_inputs} -> {got_outputs} differ from the spec's "
            f"{spec.input_names} -> {spec.output_names} (an unused input is dropped by the exporter)"
        )
    data_files = sorted(p.name for p in path.parent.glob(path.name + "*.data")) + sorted(
        {
            e.value
            for t in model.graph.initializer
            for e in t.external_data
            if e.key == "location" and not e.value.startswith(path.name)
        }
    )
    return {
        "exporter": exporter,
        "opset": spec.opset,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "external_data": data_files,
    }

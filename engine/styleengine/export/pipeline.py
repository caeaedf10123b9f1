"""`engine export`: ONNX export → parity validation → manifest → (optionally) TensorRT engines.

Artifacts are built in a temporary sibling folder and swapped in only when the ONNX export and its
validation succeeded (:func:`styleengine.io.atomic_dir`): a failure leaves the previous artifact
folder exactly as it was.  Engines are added afterwards, each written atomically, and the manifest is
rewritten atomically to record them; so ``--trt`` on a machine without TensorRT keeps the validated
ONNX and its manifest in place.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..io import atomic_dir, sha256_file
from ..runtime.base import RuntimeUnavailableError, SessionOptions
from ..runtime.torch import TorchSession
from .manifest import EngineRecord, GraphRecord, Manifest, QuantizedRecord, library_versions, machine_info
from .options import ExportOptions, ExportResult, GraphExport
from .tensorrt import trtexec_command
from .validate import session_for_onnx, validate_graph, worst

if TYPE_CHECKING:
    from ..plugins import Engine
    from ..style import Style

log = logging.getLogger(__name__)


class ParityError(RuntimeError):
    """The exported graph does not match torch within the graph's tolerance."""


class TensorRTUnavailable(RuntimeError):
    """--trt was asked for where TensorRT cannot build; the ONNX artifacts are kept."""

    def __init__(self, message: str, result: ExportResult) -> None:
        super().__init__(message)
        self.result = result


def export_style(engine: Engine, style: Style, options: ExportOptions, *, progress: Any = None) -> ExportResult:
    say = progress or (lambda msg: log.info(msg))
    specs = [options.profile.apply(s) for s in style.export_graphs()]
    if options.graphs:
        unknown = set(options.graphs) - {s.name for s in specs}
        if unknown:
            raise ValueError(f"unknown graphs {sorted(unknown)}; {style.name} has {[s.name for s in specs]}")
        specs = [s for s in specs if s.name in options.graphs]
    if not specs:
        raise ValueError(f"style {style.name} has no exportable graph (capabilities: {sorted(c.value for c in style.capabilities)})")
    entry = engine.styles.get(style.name)
    manifest = Manifest(
        style=style.name,
        variant=style.variant,
        distribution=entry.distribution,
        style_version=entry.version,
        precision=options.precision,
        exporter=options.exporter,
        profile=options.profile.name,
        model_config=style.model_config.model_dump(mode="json"),
        # Absolute: `engine validate` and servers read it from other folders.
        weights={"path": str(Path(style.weights_path).resolve()), "sha256": style.weights_sha256} if style.weights_path else None,
        versions=library_versions(),
        machine=machine_info(),
    )
    for key, value in style.export_metadata().items():  # additive fields (the manifest allows extras)
        if key in Manifest.model_fields or key == "model_config":
            raise ValueError(f"style {style.name}: export_metadata() key {key!r} is a manifest field")
        setattr(manifest, key, value)
    exports: list[GraphExport] = []
    out_dir = Path(options.out_dir)
    with atomic_dir(out_dir) as tmp:
        for spec in specs:
            onnx_name = f"{spec.name}.onnx"
            say(f"[{spec.name}] exporting ONNX ({options.exporter}, opset {spec.opset})")
            info = engine.hook.export_onnx(spec=spec, path=tmp / onnx_name, options=options)
            record = GraphRecord(
                name=spec.name,
                onnx=onnx_name,
                onnx_sha256=sha256_file(tmp / onnx_name),
                external_data=list(info.get("external_data", [])),
                external_data_sha256={rel: sha256_file(tmp / rel) for rel in info.get("external_data", [])},
                exporter=info.get("exporter", options.exporter),
                opset=info.get("opset", spec.opset),
                spec=spec.to_dict(),
            )
            ge = GraphExport(spec.name, onnx_path=out_dir / onnx_name)
            if options.validate:
                say(f"[{spec.name}] validating onnxruntime vs torch at min/opt/max")
                parity = validate_graph(
                    spec, TorchSession(spec, SessionOptions()), session_for_onnx(spec, tmp / onnx_name), seed=options.seed
                )
                record.parity = parity
                ge.parity, ge.passed = parity, parity["passed"]
                w = worst(parity)
                say(
                    f"[{spec.name}] parity {'ok' if parity['passed'] else 'FAILED'}: max |err| {w['max_abs']:.3g}, "
                    f"PSNR {w['psnr']:.1f} dB (tolerance atol {spec.tolerance.atol}, rtol {spec.tolerance.rtol})"
                )
            if options.int8:
                quantize_graph(spec, tmp, onnx_name, record, ge, options, say)
            manifest.graphs[spec.name] = record
            exports.append(ge)
        failed = [g.name for g in exports if not g.passed]
        if failed:
            raise ParityError(
                f"parity check failed for graphs {failed}; previous artifacts in {out_dir} are untouched "
                "(details: rerun with -v)"
            )
        manifest.write(tmp)
    result = ExportResult(out_dir=out_dir, manifest_path=out_dir / "manifest.json", graphs=exports)
    say(f"wrote {out_dir}")
    if options.trt:
        build_engines(engine, specs, manifest, options, result, say)
    return result


def quantize_graph(spec: Any, tmp: Path, onnx_name: str, record: GraphRecord, ge: GraphExport, options: ExportOptions, say: Any) -> None:
    """``--int8``: the graph's int8 copy (own file and sha256, labelled lossy) and its PSNR against fp32 torch."""
    from .quantize import int8_tolerance, quantize_int8

    qname = f"{spec.name}.int8.onnx"
    say(f"[{spec.name}] int8 static quantisation (calibrated on the style's example inputs)")
    info = quantize_int8(spec, tmp / onnx_name, tmp / qname, seed=options.seed)
    tol = int8_tolerance(options.extra.get("int8_psnr_floor"))
    parity = validate_graph(spec.replace(tolerance=tol), TorchSession(spec, SessionOptions()), session_for_onnx(spec, tmp / qname), seed=options.seed)
    w = worst(parity)
    record.quantized["int8"] = QuantizedRecord(
        path=qname, sha256=sha256_file(tmp / qname), precision="int8", lossy=True, method=info["method"],
        calibration=info["calibration"], psnr_floor=tol.psnr, psnr=w["psnr"], parity=parity,
    )
    ge.passed = ge.passed and parity["passed"]
    say(f"[{spec.name}] int8 (lossy) {'ok' if parity['passed'] else 'FAILED'}: PSNR {w['psnr']:.1f} dB vs fp32 torch "
        f"(floor {tol.psnr} dB), max |err| {w['max_abs']:.3g}")


def build_engines(engine: Engine, specs: list[Any], manifest: Manifest, options: ExportOptions, result: ExportResult, say: Any) -> None:
    out_dir = Path(options.out_dir)
    for spec in specs:
        ge = next(g for g in result.graphs if g.name == spec.name)
        engine_name = f"{spec.name}.{options.precision}.plan"
        precision = options.precision if options.precision in spec.precisions else "fp32"
        result.trtexec.append(
            " ".join(trtexec_command(spec, out_dir / f"{spec.name}.onnx", out_dir / engine_name, precision, options.timing_cache))
        )
        try:
            say(f"[{spec.name}] building TensorRT engine ({precision})")
            info = engine.hook.build_engine(
                spec=spec, onnx_path=out_dir / f"{spec.name}.onnx", engine_path=out_dir / engine_name, options=options
            )
        except RuntimeUnavailableError as exc:
            result.trt_error = str(exc)
            continue
        rec = manifest.graphs[spec.name]
        rec.engine = EngineRecord(path=engine_name, sha256=sha256_file(out_dir / engine_name), **dict(info))
        ge.engine_path = out_dir / engine_name
        manifest.write(out_dir)
    if result.trt_error:
        raise TensorRTUnavailable(result.trt_error, result)

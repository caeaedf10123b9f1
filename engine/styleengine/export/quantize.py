"""int8 static quantisation of an exported graph (``engine export --int8``): a separate, lossy artifact.

ONNX Runtime's ``quantize_static`` rewrites the fp32 ONNX into QDQ form (int8 weights per channel, uint8
activations) for the convolutions and matrix products, calibrated on the style's **own** example inputs
(``GraphSpec.example_inputs`` at the opt shapes, several seeds).  The result is written beside the fp32
graph as ``GRAPH.int8.onnx`` with its own sha256, labelled ``lossy`` in the manifest, and validated against
fp32 torch at min / opt / max: its PSNR is recorded with the floor it had to meet (``INT8_PSNR_FLOOR`` unless
the graph's tolerance asks for more).  Below the floor the export fails, as any parity failure does.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..spec import GraphSpec, Tolerance

log = logging.getLogger(__name__)

#: dB over the output's value range.  On the trained pix2pix demo model int8 measured 45-47 dB (issue 13.3).
INT8_PSNR_FLOOR = 30.0
#: Calibration batches drawn from the style's example factory (opt shapes, seeds 0..N-1).
CALIBRATION_SAMPLES = 8
OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")


class _Reader:
    """onnxruntime.quantization's CalibrationDataReader protocol over a list of feeds."""

    def __init__(self, feeds: list[dict[str, Any]]) -> None:
        self._it = iter(feeds)

    def get_next(self) -> dict[str, Any] | None:
        return next(self._it, None)

    def rewind(self) -> None:  # pragma: no cover - not used by the MinMax calibrator
        pass


def calibration_feeds(spec: GraphSpec, samples: int = CALIBRATION_SAMPLES, seed: int = 0) -> list[dict[str, Any]]:
    """The style's own example inputs at the opt shapes (its ``example`` factory when it has one)."""
    return [spec.example_inputs("opt", seed=seed + 1000 + i) for i in range(samples)]


def int8_tolerance(floor: float | None = None) -> Tolerance:
    """Elementwise bounds do not apply to a lossy graph; the PSNR floor does."""
    return Tolerance(atol=1e30, rtol=0.0, psnr=INT8_PSNR_FLOOR if floor is None else floor)


def quantize_int8(spec: GraphSpec, onnx_path: Path, out_path: Path, *, samples: int = CALIBRATION_SAMPLES, seed: int = 0) -> dict[str, Any]:
    """Write the int8 QDQ copy of ``onnx_path`` to ``out_path``; returns how it was calibrated."""
    import tempfile

    try:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as exc:
        from ..runtime.base import RuntimeUnavailableError

        raise RuntimeUnavailableError("int8 quantisation needs onnxruntime: pip install 'styleengine[cpu]'") from exc
    feeds = calibration_feeds(spec, samples, seed)
    with tempfile.TemporaryDirectory(dir=out_path.parent) as tmp:
        pre = Path(tmp) / "pre.onnx"
        try:  # shape inference + constant folding, as onnxruntime recommends before quantising
            quant_pre_process(str(onnx_path), str(pre), skip_symbolic_shape=True)
            src = pre
        except Exception as exc:  # noqa: BLE001 - quantise the plain graph then
            log.info("quant_pre_process failed (%s); quantising the graph as exported", exc)
            src = onnx_path
        quantize_static(
            str(src),
            str(out_path),
            _Reader(feeds),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=list(OPS),
            calibrate_method=CalibrationMethod.MinMax,
        )
    return {
        "method": "onnxruntime.quantization.quantize_static (QDQ, per-channel int8 weights, uint8 activations, MinMax)",
        "calibration": {"samples": samples, "point": "opt", "shapes": {k: list(v.shape) for k, v in feeds[0].items()},
                        "inputs": "GraphSpec.example_inputs (the style's example factory)", "seed": seed + 1000},
        "ops": list(OPS),
    }

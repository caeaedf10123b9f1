"""The engine's own plugin: built-in runtimes and the default (trylast) verb and export steps.

It is registered like any other plugin (first, under the name ``styleengine``), so everything here
can be wrapped or overridden through the same hooks a third party uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .hookspecs import hookimpl

if TYPE_CHECKING:
    from .plugins import Engine


class EnginePlugin:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @hookimpl
    def register_runtimes(self, register: Any) -> None:
        from .runtime.onnxruntime import OnnxRuntimeRuntime
        from .runtime.tensorrt import TensorRTRuntime
        from .runtime.torch import TorchRuntime

        register(TorchRuntime)
        register(OnnxRuntimeRuntime)
        register(TensorRTRuntime)

    @hookimpl(trylast=True)
    def style_infer(self, style: Any, sessions: Any, batch: Any, cfg: Any) -> Any:
        return style.infer(sessions, batch, cfg)

    @hookimpl(trylast=True)
    def style_train(self, style: Any, cfg: Any, ctx: Any) -> Any:
        return style.train(cfg, ctx)

    @hookimpl(trylast=True)
    def style_export(self, style: Any, options: Any) -> Any:
        from .export.pipeline import export_style

        return export_style(self.engine, style, options, progress=options.extra.get("progress"))

    @hookimpl(trylast=True)
    def export_onnx(self, spec: Any, path: Path, options: Any) -> Any:
        from .export.onnx import export_graph

        return export_graph(
            spec,
            path,
            exporter=spec.exporter or options.exporter,
            external_data_threshold=options.external_data_threshold,
            seed=options.seed,
        )

    @hookimpl(trylast=True)
    def build_engine(self, spec: Any, onnx_path: Path, engine_path: Path, options: Any) -> Any:
        from .export.tensorrt import build_engine as _build

        precision = options.precision if options.precision in spec.precisions else "fp32"
        return _build(
            spec, onnx_path, engine_path, precision=precision, timing_cache=options.timing_cache, engine_cache=options.engine_cache
        )

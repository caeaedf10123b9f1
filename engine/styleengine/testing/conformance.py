"""The checks every style must pass: declarations, graphs, export parity, infer contract, batching."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest


class StyleConformance:
    style_class: ClassVar[type]
    model_config: ClassVar[Mapping[str, Any] | None] = None
    variant: ClassVar[str | None] = None
    image_size: ClassVar[tuple[int, int]] = (32, 48)
    #: Parameters for the infer checks (defaults of the style's Config when None).
    params: ClassVar[Mapping[str, Any] | None] = None
    #: Export points to check (all three by default; big graphs may check "min" only).
    export_points: ClassVar[tuple[str, ...]] = ("min", "opt", "max")
    batch_atol: ClassVar[float] = 1e-5

    # -- helpers ---------------------------------------------------------------------------------
    def make_style(self) -> Any:
        return self.style_class(self.model_config, variant=self.variant)

    def make_request(self, seed: int = 0) -> Any:
        from styleengine.style import StyleRequest

        rng = np.random.default_rng(seed)
        h, w = self.image_size
        images: dict[str, Any] = {}
        for f in self.style_class.inputs.images:
            img = rng.random((h, w, 3), dtype=np.float32)
            images[f.name] = [img] if f.multiple else img
        texts = {t.name: "a test" for t in self.style_class.inputs.texts}
        return StyleRequest(images=images, texts=texts, seed=seed, id=f"r{seed}")

    def sessions(self, style: Any) -> dict[str, Any]:
        from styleengine.runtime.base import SessionOptions
        from styleengine.runtime.torch import TorchSession

        return {s.name: TorchSession(s, SessionOptions()) for s in style.graphs()}

    # -- declarations ----------------------------------------------------------------------------------
    def test_declaration_is_valid(self) -> None:
        from styleengine.registry import check_style_class

        check_style_class(self.style_class, "conformance")
        assert self.style_class.variants, "a style declares at least one variant"
        assert self.style_class.inputs.images or self.style_class.inputs.texts

    def test_config_refuses_unknown_and_non_finite(self) -> None:
        from pydantic import ValidationError

        cfg = self.style_class.Config()
        with pytest.raises(ValidationError):
            self.style_class.Config(**{"definitely_not_a_field": 1})
        for name, field in self.style_class.Config.model_fields.items():
            if field.annotation is float:
                with pytest.raises(ValidationError):
                    self.style_class.Config(**{name: float("nan")})
        assert cfg == self.style_class.Config(**cfg.model_dump())

    # -- graphs -------------------------------------------------------------------------------------------------
    def test_graphs_run_at_declared_shapes(self) -> None:
        import torch

        style = self.make_style()
        specs = style.graphs()
        if "export" in {c.value for c in style.capabilities}:
            assert specs, "an exportable style declares graphs"
        for spec in specs:
            sess = self.sessions(style)[spec.name]
            feeds = {k: torch.from_numpy(v) for k, v in spec.example_inputs("min").items()}
            out = sess.run(feeds)
            assert set(out) == set(spec.output_names)
            for t in spec.outputs:
                assert torch.isfinite(out[t.name].float()).all(), f"{spec.name}.{t.name} is not finite"

    def test_export_parity(self, tmp_path: Path) -> None:
        from styleengine.export.onnx import export_graph
        from styleengine.export.validate import session_for_onnx, validate_graph
        from styleengine.runtime.base import SessionOptions
        from styleengine.runtime.torch import TorchSession

        style = self.make_style()
        for spec in style.graphs():
            path = tmp_path / f"{spec.name}.onnx"
            export_graph(spec, path, exporter=spec.exporter or "dynamo")
            parity = validate_graph(spec, TorchSession(spec, SessionOptions()), session_for_onnx(spec, path), points=self.export_points)
            assert parity["passed"], parity

    # -- infer ------------------------------------------------------------------------------------------------
    def test_infer_contract(self) -> None:
        style = self.make_style()
        cfg = style.parse_config(self.params)
        res = style.infer(self.sessions(style), [self.make_request(0)], cfg)
        assert len(res) == 1
        h, w = self.image_size
        img = res[0].image
        assert img.shape == (h, w, 3) and img.dtype == np.float32
        assert float(img.min()) >= 0.0 and float(img.max()) <= 1.0

    def test_batch_equals_single_runs(self) -> None:
        style = self.make_style()
        cfg = style.parse_config(self.params)
        sessions = self.sessions(style)
        reqs = [self.make_request(i) for i in range(3)]
        batched = style.infer(sessions, reqs, cfg)
        for req, got in zip(reqs, batched, strict=True):
            [alone] = style.infer(sessions, [req], cfg)
            np.testing.assert_allclose(got.image, alone.image, atol=self.batch_atol)

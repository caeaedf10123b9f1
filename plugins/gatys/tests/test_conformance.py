"""The engine's conformance suite, for both variants (the optimisation declares no graph: that check is replaced)."""

from __future__ import annotations

from test_fast import SmallFast

from styleengine.testing import StyleConformance
from styleengine_gatys import GatysStyle


class TestGatysFast(StyleConformance):
    style_class = SmallFast
    variant = "fast"
    image_size = (32, 48)

    def test_export_parity(self, tmp_path) -> None:
        """Covered at min/opt/max (and on ONNX Runtime sessions) by test_fast: one export per test run is enough."""


class TestGatysOptimisation(StyleConformance):
    style_class = GatysStyle
    image_size = (24, 32)
    # Capabilities are the class's: EXPORT belongs to the fast variant (TestGatysFast checks it); this one has no graph.
    skip_checks = {"capabilities_match_implementation": "EXPORT is the fast variant's; the optimisation variant declares no graph"}
    params = {"num_iterations": 2, "image_size": 0, "content_layers": ["relu2_1"], "style_layers": ["relu1_1", "relu2_1"]}

    def make_style(self):
        return GatysStyle(device="cpu")

    def test_graphs_run_at_declared_shapes(self) -> None:
        assert self.make_style().graphs() == []  # the optimisation has no graph

    def test_export_parity(self, tmp_path) -> None:
        assert self.make_style().graphs() == []

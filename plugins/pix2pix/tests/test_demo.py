"""``make demo`` (``python -m styleengine.demo``) end to end, with two training steps instead of 1000."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image


def test_demo_runs_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from styleengine import demo

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(demo, "STEPS", 2)
    demo.main()
    out = capsys.readouterr().out
    assert "before/after:" in out and "demo finished" in out
    panel = Image.open(tmp_path / "demo-output" / "before_after.png")
    assert panel.size == (3 * 256, 256)  # photo | pix2pix on ONNX Runtime | the filter
    assert (tmp_path / "demo-output" / "artifacts" / "pix2pix" / "manifest.json").is_file()
    assert (tmp_path / "demo-output" / "run" / "checkpoints" / "step-0000002").is_dir()

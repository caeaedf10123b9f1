"""`engine infer gatys`: the request seed, --set options, and intermediate images written with save_every."""

from __future__ import annotations

import numpy as np
from gatys_helpers import smooth_image
from PIL import Image


def test_engine_infer_writes_the_result_and_intermediate_images(tmp_path, capsys):
    import pytest

    from styleengine.cli import main

    for name, img in {"c.png": smooth_image(24, 32, 1), "s.png": smooth_image(20, 20, 2)}.items():
        Image.fromarray((img * 255).astype(np.uint8)).save(tmp_path / name)
    with pytest.raises(SystemExit) as exit_info:
        main(["infer", "gatys", str(tmp_path / "c.png"), "--image", f"style={tmp_path / 's.png'}", "--seed", "4", "-o", str(tmp_path / "out"),
              "--set", "num_iterations=4", "--set", "save_every=2", "--set", "image_size=0",
              "--set", "content_layers=[relu2_1]", "--set", "style_layers=[relu1_1]"])
    assert (exit_info.value.code or 0) == 0, capsys.readouterr().err
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["c.gatys.png", "c.gatys.step000002.png", "c.gatys.step000004.png"]
    assert Image.open(tmp_path / "out" / "c.gatys.png").size == (32, 24)

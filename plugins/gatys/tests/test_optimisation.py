"""The optimisation: exact reproducibility on CPU, loss decrease, colours, multi-scale, cancellation, warnings."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from styleengine import cancel
from styleengine.preprocess import to_tensor
from styleengine.style import StyleRequest
from styleengine_gatys import pipeline
from styleengine_gatys.pipeline import optimise, rgb_to_yuv

#: Shallow layers: the same code path as the defaults at a fraction of the cost (tests only).
FAST = {"content_layers": ["relu2_1"], "style_layers": ["relu1_1", "relu2_1"]}


def _req(images, seed=7, styles=("style",)):
    return StyleRequest(images={"content": images["content"], "style": [images[s] for s in styles]}, seed=seed)


def test_twenty_lbfgs_iterations_at_64px_are_exactly_reproducible_and_lower_the_loss(style, images):
    cfg = style.parse_config({"num_iterations": 20, "image_size": 64, "print_iter": 0})  # every default layer
    runs = [style.infer({}, [_req(images)], cfg)[0]]
    assert runs[0].image.shape == (64, 64, 3)
    c, s = to_tensor(images["content"], (0, 1)), to_tensor(images["style"], (0, 1))
    out = optimise(style.modules["vgg"], cfg, c, [s], seed=7)
    assert len(out.log) == 20 and out.log[0].step == 1 and out.log[-1].iteration == 20
    totals = [r.losses["total"] for r in out.log] + [out.final_losses["total"]]
    assert totals[-1] < totals[0], totals
    assert all(b <= a for a, b in zip(totals, totals[1:])), totals  # L-BFGS descends at every iteration here
    np.testing.assert_array_equal(out.image[0].permute(1, 2, 0).numpy(), runs[0].image)  # a second run: bit for bit
    assert out.final_losses == runs[0].info["losses"]
    assert torch.equal(pipeline.random_init((1, 3, 4, 4), 7, 255), pipeline.random_init((1, 3, 4, 4), 7, 255))
    assert not torch.equal(pipeline.random_init((1, 3, 4, 4), 8, 255), pipeline.random_init((1, 3, 4, 4), 7, 255))


def test_adam_tutorial_preset_clamps_every_step_and_starts_from_the_content(style, images):
    cfg = style.parse_config({"preset": "tutorial", "num_iterations": 5, "image_size": 32, **FAST})
    c, s = to_tensor(images["content"], (0, 1)), to_tensor(images["style"], (0, 1))
    seen = []
    out = optimise(style.modules["vgg"], cfg, c, [s], seed=0, on_iteration=seen.append)
    assert len(seen) == 5 and out.image.min() >= 0 and out.image.max() <= 1
    assert out.log[0].losses["content"] == pytest.approx(0.0, abs=1e-6)  # init=image: content loss starts at 0
    assert out.log[0].losses["tv"] == 0.0


def test_original_colors_keeps_the_contents_chroma(style, images):
    cfg = style.parse_config({"num_iterations": 3, "image_size": 32, "original_colors": True, **FAST})
    [res] = style.infer({}, [_req(images)], cfg)
    out = torch.from_numpy(res.image).permute(2, 0, 1)[None]
    content = torch.nn.functional.interpolate(to_tensor(images["content"], (0, 1)), size=(32, 32), mode="bilinear", antialias=True)
    inside = ((out > 0.002) & (out < 0.998)).all(1)  # pixels the final clamp did not touch
    assert inside.float().mean() > 0.5
    uv_out, uv_c = rgb_to_yuv(out)[:, 1:], rgb_to_yuv(content)[:, 1:]
    np.testing.assert_allclose(uv_out[:, :, inside[0]].numpy(), uv_c[:, :, inside[0]].numpy(), atol=2e-5)
    [plain] = style.infer({}, [_req(images)], style.parse_config({**cfg.model_dump(), "original_colors": False}))
    y_plain = rgb_to_yuv(torch.from_numpy(plain.image).permute(2, 0, 1)[None])[:, 0]
    np.testing.assert_allclose(rgb_to_yuv(out)[:, 0][inside].numpy(), y_plain[inside].numpy(), atol=2e-5)  # luminance kept


def test_multi_scale_runs_every_scale_coarse_to_fine(style, images):
    cfg = style.parse_config({"num_iterations": 2, "image_size": 64, "scales": 3, **FAST})
    c, s = to_tensor(images["content"], (0, 1)), to_tensor(images["style"], (0, 1))
    reports = []
    with cancel.use_token(cancel.CancelToken(on_progress=reports.append)):
        out = optimise(style.modules["vgg"], cfg, c, [s], seed=0)
    assert out.sizes == [(16, 16), (32, 32), (64, 64)]
    assert [(r.scale, r.iteration) for r in out.log] == [(k, i) for k in range(3) for i in (1, 2)]
    assert [r["stage"] for r in reports if r["iteration"] == 2] == ["scale 1/3 16x16", "scale 2/3 32x32", "scale 3/3 64x64"]
    assert reports[-1]["step"] == reports[-1]["total"] == 6
    assert out.image.shape == (1, 3, 64, 64)
    assert pipeline.scale_sizes(40, 60, 0, 2, 2.0) == [(20, 30), (40, 60)]
    assert pipeline.scale_sizes(30, 60, 0, 2, 2.0) == [(30, 60)]  # a coarse scale under 16 px is skipped


def test_cancel_stops_within_one_iteration(style, images):
    cfg = style.parse_config({"num_iterations": 50, "image_size": 32, "print_iter": 1, **FAST})
    c, s = to_tensor(images["content"], (0, 1)), to_tensor(images["style"], (0, 1))
    log = []
    token = cancel.CancelToken()

    def on_progress(info):
        if info["step"] == 3:
            token.cancel("client cancelled")

    token.on_progress = on_progress
    with cancel.use_token(token), pytest.raises(cancel.Cancelled, match="client cancelled"):
        optimise(style.modules["vgg"], cfg, c, [s], seed=0, on_iteration=log.append)
    assert [r.step for r in log] == [1, 2, 3]  # no iteration ran after the cancel


def test_intermediate_images_and_progress_with_losses(style, images):
    cfg = style.parse_config({"num_iterations": 4, "image_size": 32, "print_iter": 2, "save_every": 2, **FAST})
    reports = []
    with cancel.use_token(cancel.CancelToken(on_progress=reports.append)):
        style.infer({}, [_req(images)], cfg)
    assert [r["step"] for r in reports] == [2, 4]
    assert all(r["preview"].shape == (32, 32, 3) and set(r["losses"]) == {"content", "style", "tv", "total"} for r in reports)


def test_style_blend_weights_blend_the_grams(style, images):
    from styleengine_gatys.nets import gram_matrix, vgg_features
    from styleengine_gatys.pipeline import Objective

    cfg = style.parse_config({"style_blend_weights": [1, 3], **FAST})
    vgg = style.modules["vgg"]
    c, s1, s2 = (to_tensor(images[k], (0, 1)) for k in ("content", "style", "style2"))
    obj = Objective(vgg, cfg, c, [s1, s2], pipeline.blend_weights(cfg.style_blend_weights, 2))
    with torch.no_grad():
        want = 0.25 * gram_matrix(vgg_features(vgg, s1, ["relu2_1"])["relu2_1"]) + 0.75 * gram_matrix(vgg_features(vgg, s2, ["relu2_1"])["relu2_1"])
    torch.testing.assert_close(obj.style_targets["relu2_1"], want)
    with pytest.raises(ValueError, match="style_blend_weights has 2"):
        style.infer({}, [_req(images, styles=("style",))], cfg)
    [r] = style.infer({}, [_req(images, styles=("style", "style2"))], style.parse_config({**cfg.model_dump(), "num_iterations": 1, "image_size": 16}))
    assert r.image.shape == (16, 16, 3)


def test_random_vgg_warns_once_and_requests_are_checked(style, images, monkeypatch):
    monkeypatch.setattr(pipeline, "_warned", False)
    cfg = style.parse_config({"num_iterations": 1, "image_size": 16, **FAST})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        style.infer({}, [_req(images)], cfg)
        style.infer({}, [_req(images)], cfg)
    assert [str(w.message) for w in caught if "RANDOM VGG" in str(w.message)] == [pipeline.RANDOM_VGG_WARNING]
    with pytest.raises(ValueError, match="no style image"):
        style.infer({}, [StyleRequest(images={"content": images["content"]})], cfg)
    assert not style.needs_weights and style.graphs() == [] and style.long_running

"""The style: declarations, the conformance suite, batching, guidance switch-off, cancellation, sizes, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ip2p_helpers import FAST, TINY, max_diff, request, run_cli
from pydantic import ValidationError
from styleengine_instruct_pix2pix import Config, InstructPix2PixStyle

from styleengine.testing import StyleConformance


class TestInstructPix2PixConformance(StyleConformance):
    style_class = InstructPix2PixStyle
    model_config = TINY
    params = FAST
    image_size = (32, 48)

    def test_export_parity(self, exported) -> None:  # type: ignore[override]
        """Every graph exported and validated at min/opt/max: shared with test_export.py (one export per session)."""
        from styleengine.export.manifest import Manifest

        out, _ = exported
        manifest = Manifest.load(out)
        assert sorted(manifest.graphs) == sorted(s.name for s in self.make_style().graphs())
        for rec in manifest.graphs.values():
            assert rec.parity and rec.parity["passed"], rec.name



def test_declaration():
    cls = InstructPix2PixStyle
    assert cls.name == "instruct_pix2pix" and set(cls.aliases) == {"instruct-pix2pix", "ip2p"}
    texts = {t.name: t for t in cls.inputs.texts}
    assert texts["instruction"].required and texts["instruction"].max_length == 500
    assert not texts["negative_prompt"].required
    assert cls.inputs.seeded and [f.name for f in cls.inputs.images] == ["image"]
    cfg = Config()
    assert (cfg.steps, cfg.guidance_scale, cfg.image_guidance_scale, cfg.scheduler, cfg.resolution) == (
        100, 7.5, 1.5, "euler_ancestral", 512)
    for bad in ({"steps": 0}, {"steps": 501}, {"guidance_scale": float("inf")}, {"image_guidance_scale": -1},
                {"scheduler": "lms"}, {"resolution": 32}, {"resolution": 4096}):
        with pytest.raises(ValidationError):
            Config(**bad)
    pre = cls.pretrained["timbrooks"]
    assert pre.url.startswith("hf://timbrooks/instruct-pix2pix@") and len(pre.url.rsplit("@", 1)[1]) == 40


def test_registered_through_its_entry_point():
    from styleengine.plugins import get_engine

    engine = get_engine()
    assert engine.style_class("ip2p") is InstructPix2PixStyle
    assert engine.styles.get("instruct_pix2pix").distribution == "styleengine-instruct-pix2pix"


def test_graphs(tiny_style):
    specs = {s.name: s for s in tiny_style.graphs()}
    assert list(specs) == ["text_encoder", "unet", "vae_encoder", "vae_decoder"]
    unet = specs["unet"]
    assert unet.inputs[0].shape[1] == 8 and unet.batch_dim == "unet_batch"
    ub, b = unet.dims["unet_batch"], specs["text_encoder"].dims["batch"]
    assert (ub.min, ub.max, ub.multiple_of) == (3 * b.min, 3 * b.max, 3)
    assert specs["vae_encoder"].precisions == specs["vae_decoder"].precisions == ("fp32",)


def test_batched_requests_with_different_instructions_equal_single_runs(tiny_style, torch_sessions):
    """Different instructions, seeds, negative prompts and sizes (two working sizes: two loops) in one call."""
    reqs = [request(0, "make it snowy", (40, 56)), request(1, "turn the sky red", (40, 56), negative="blurry"),
            request(2, "add a boat", (64, 128)), request(3, "make it night", (48, 64))]
    cfg = tiny_style.parse_config({**FAST, "resolution": 128})
    batched = tiny_style.infer(torch_sessions, reqs, cfg)
    assert [r.image.shape for r in batched] == [(40, 56, 3), (40, 56, 3), (64, 128, 3), (48, 64, 3)]
    assert [r.seed for r in batched] == [0, 1, 2, 3]
    # resolve_size at 128: 40x56 and 48x64 -> 128x128 (one loop of 3), 64x128 stays 64x128 (a loop of 1)
    assert [r.info["working_size"] for r in batched] == [[128, 128], [128, 128], [64, 128], [128, 128]]
    assert [r.info["batch"] for r in batched] == [3, 3, 1, 3]
    for req, got in zip(reqs, batched, strict=True):
        [alone] = tiny_style.infer(torch_sessions, [req], cfg)
        assert max_diff(got.image, alone.image) < 1e-5
    assert max_diff(batched[0].image, batched[1].image) > 1e-3  # different instruction + seed: different edits


def test_seed_and_output_size(tiny_style, torch_sessions):
    cfg = tiny_style.parse_config({**FAST, "output_size": "working"})
    req = request(5, size=(40, 72))
    req.seed = None
    [res] = tiny_style.infer(torch_sessions, [req], cfg)
    assert res.image.shape == (64, 64, 3) and isinstance(res.seed, int)  # resolve_size(40, 72, 64) = 64x64
    req.seed = res.seed
    [again] = tiny_style.infer(torch_sessions, [req], cfg)
    assert max_diff(res.image, again.image) == 0.0


def test_guidance_off_is_the_conditional_prediction_on_every_runtime(tiny_style, torch_sessions):
    """s_I < 1 switches guidance off (diffusers): torch runs 1 UNet row per request; an exported UNet (3 rows per
    request) runs the 3-way formula with unit scales, which is the same prediction."""

    class NotTorch:
        def __init__(self, inner):
            self.inner, self.runtime, self.calls = inner, "onnxruntime", []

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def run(self, feeds):
            self.calls.append(feeds["sample"].shape[0])
            return self.inner.run(feeds)

    cfg = tiny_style.parse_config({**FAST, "image_guidance_scale": 0.5})
    [one] = tiny_style.infer(torch_sessions, [request(0)], cfg)
    wrapped = NotTorch(torch_sessions["unet"])
    [three] = tiny_style.infer({**torch_sessions, "unet": wrapped}, [request(0)], cfg)
    assert wrapped.calls == [3, 3] and one.info["guidance"] == "off"
    assert max_diff(one.image, three.image) < 1e-4


def test_cancellation_stops_between_steps(tiny_style, torch_sessions):
    from styleengine import cancel

    token = cancel.CancelToken()
    calls = []

    class Cancelling:
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def run(self, feeds):
            calls.append(1)
            token.cancel("client went away")
            return self.inner.run(feeds)

    sessions = {**torch_sessions, "unet": Cancelling(torch_sessions["unet"])}
    with cancel.use_token(token), pytest.raises(cancel.Cancelled, match="client went away"):
        tiny_style.infer(sessions, [request(0)], tiny_style.parse_config({**FAST, "steps": 5}))
    assert len(calls) == 1  # stopped after the first step's UNet call


def test_bad_requests(tiny_style, torch_sessions):
    from styleengine.preprocess import SizeError

    with pytest.raises(ValueError, match="instruction"):
        tiny_style.infer(torch_sessions, [request(0, instruction="  ")], tiny_style.parse_config(FAST))
    with pytest.raises(SizeError, match="64-256 px"):  # tiny graphs take latents 8..32
        tiny_style.infer(torch_sessions, [request(0)], tiny_style.parse_config({**FAST, "resolution": 512}))


def test_engine_infer_cli(tmp_path):
    from PIL import Image

    Image.fromarray((np.random.default_rng(0).random((40, 56, 3)) * 255).astype(np.uint8)).save(tmp_path / "img.png")
    code, out, err = run_cli("infer", "instruct_pix2pix", str(tmp_path / "img.png"), "--text", "instruction=make it snowy",
                             "--set", "steps=2", "--set", "resolution=64", "--model-set", "size=tiny",
                             "--allow-random-weights", "--seed", "7", "-o", str(tmp_path / "out"))
    assert code == 0, err
    result = np.asarray(Image.open(out.strip()))
    assert result.shape == (40, 56, 3)
    code, _, err = run_cli("infer", "ip2p", str(tmp_path / "img.png"), "--model-set", "size=tiny", "--allow-random-weights")
    assert code == 1 and "needs --text instruction=" in err
    code, _, err = run_cli("infer", "ip2p", str(tmp_path / "img.png"), "--text", "instruction=x")
    assert code == 1 and "--model-set source=hf://timbrooks/instruct-pix2pix@" in err and "Traceback" not in err
    code, _, err = run_cli("infer", "ip2p", str(tmp_path / "img.png"), "--text", "instruction=x", "--model-set", "sizes=tiny")
    assert code == 1 and "sizes" in err


def test_styles_json_lists_it():
    code, out, _ = run_cli("styles", "--json")
    assert code == 0
    [row] = [s for s in json.loads(out)["styles"] if s["name"] == "instruct_pix2pix"]
    assert row["capabilities"] == ["export", "infer", "train"] and row["distribution"] == "styleengine-instruct-pix2pix"

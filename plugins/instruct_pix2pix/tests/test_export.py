"""Export (``engine export instruct_pix2pix``, tiny model, tiny profile) and the loop on ONNX Runtime."""

from __future__ import annotations

import gc

import pytest
import torch
from ip2p_helpers import FAST, TINY, max_diff, request, run_cli
from styleengine_instruct_pix2pix import InstructPix2PixStyle

pytest.importorskip("onnxruntime")

GRAPHS = ["text_encoder", "unet", "vae_encoder", "vae_decoder"]


def test_every_graph_exports_and_matches_at_min_opt_max(exported):
    from styleengine.export.manifest import Manifest

    out, err = exported
    manifest = Manifest.load(out)
    assert manifest.style == "instruct_pix2pix" and manifest.model_config_["size"] == "tiny"
    assert sorted(manifest.graphs) == sorted(GRAPHS)
    for name in GRAPHS:
        rec = manifest.graphs[name]
        assert rec.parity["passed"], (name, rec.parity)
        for point in ("min", "opt", "max"):
            res = rec.parity[point]
            assert res["passed"], (name, point, res)
            for output, o in res["outputs"].items():
                print(f"{name}.{output} @ {point} {res['shapes']}: max |err| {o['max_abs']:.3g}, PSNR {o['psnr']:.1f} dB")
        assert f"[{name}] parity ok" in err
    unet = manifest.graphs["unet"].spec
    assert unet["dims"]["unet_batch"] == {"name": "unet_batch", "min": 3, "opt": 6, "max": 6, "multiple_of": 3}
    assert unet["inputs"][0]["shape"][1] == 8
    code, _, err = run_cli("validate", str(out))  # re-hash and re-check parity from the manifest alone
    gc.collect()  # the validation's ONNX Runtime sessions
    assert code == 0, err


@pytest.fixture(scope="module")
def ort_runs(exported):
    """The same requests through torch, with the UNet on ONNX Runtime, and with every graph on ONNX Runtime."""
    from styleengine.plugins import get_engine
    from styleengine.runtime.base import SessionOptions
    from styleengine.sessions import open_sessions

    out, _ = exported
    engine = get_engine()
    style = InstructPix2PixStyle(TINY)
    cfg = style.parse_config({**FAST, "steps": 3, "resolution": 128})
    reqs = [request(0, "make it snowy", (40, 56)), request(1, "turn the sky red", (48, 64), negative="blurry")]
    results = {}
    for label, runtimes in (("torch", "torch"), ("unet_ort", {"*": "torch", "unet": "onnxruntime"})):
        sessions = open_sessions(engine, style, runtimes, artifacts=out, options=SessionOptions(threads=1))
        results[label] = (sessions, style.infer(sessions, reqs, cfg))
    # Serving from artifacts alone: a fresh style whose torch modules are never built (tokenizer + scheduler only).
    fresh = InstructPix2PixStyle(TINY)
    sessions = open_sessions(engine, fresh, "onnxruntime", artifacts=out, options=SessionOptions(threads=1))
    results["all_ort"] = (sessions, fresh.infer(sessions, reqs, cfg))
    assert fresh._modules is None
    # Keep what the tests check, not the sessions: ONNX Runtime's threads spin while a session lives.
    summary = {k: ({n: (s.runtime, s.device) for n, s in sess.items()}, res) for k, (sess, res) in results.items()}
    del results, sessions
    gc.collect()
    return summary


def test_loop_with_the_unet_on_onnxruntime_matches_torch(ort_runs):
    sessions, ort = ort_runs["unet_ort"]
    assert sessions["unet"] == ("onnxruntime", "CPUExecutionProvider")
    assert all(sessions[g][0] == "torch" for g in ("text_encoder", "vae_encoder", "vae_decoder"))
    _, ref = ort_runs["torch"]
    for a, b in zip(ort, ref, strict=True):
        err = max_diff(a.image, b.image)
        print(f"UNet on ORT vs torch, 3 steps, image in [0, 1]: max |diff| {err:.3g}")
        assert err < 1e-3


def test_every_graph_on_onnxruntime_matches_torch(ort_runs):
    sessions, ort = ort_runs["all_ort"]
    assert {rt for rt, _ in sessions.values()} == {"onnxruntime"}
    _, ref = ort_runs["torch"]
    for a, b in zip(ort, ref, strict=True):
        err = max_diff(a.image, b.image)
        print(f"all graphs on ORT vs torch, 3 steps: max |diff| {err:.3g}")
        assert err < 1e-3


def test_latents_on_onnxruntime_match_torch(exported, tiny_style, torch_sessions):
    """Below the image: the final latents of the edit loop, UNet on ORT vs torch (relative to their scale)."""
    from styleengine.runtime.base import SessionOptions
    from styleengine.runtime.onnxruntime import OrtSession
    from styleengine_instruct_pix2pix.pipeline import edit

    out, _ = exported
    spec = next(s for s in tiny_style.graphs() if s.name == "unet")
    sessions = {**torch_sessions, "unet": OrtSession(spec, out / "unet.onnx", SessionOptions(threads=1))}
    tokenizer, _, scaling = tiny_style.pipeline_parts()
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    kw = dict(seeds=[1, 2], steps=4, output="latent", scaling_factor=scaling)
    a = edit(sessions, tokenizer, tiny_style.scheduler("euler_ancestral"), images, ["a", "b"], **kw)
    b = edit(torch_sessions, tokenizer, tiny_style.scheduler("euler_ancestral"), images, ["a", "b"], **kw)
    rel = float((a - b).abs().max()) / max(1.0, float(b.abs().max()))
    print(f"latents after 4 steps, UNet ORT vs torch: max |diff| {float((a - b).abs().max()):.3g} (rel {rel:.3g})")
    del sessions
    gc.collect()
    assert rel < 1e-4

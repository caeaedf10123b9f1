"""``engine export dreambooth`` with a LoRA fused (tiny model, tiny profile): parity at min/opt/max, the manifest
naming the LoRA, and the exported graphs on ONNX Runtime giving the torch runtime's per-request-LoRA image."""

from __future__ import annotations

import gc
import json

import pytest
from db_helpers import FAST, TINY, max_diff, request
from styleengine_dreambooth import DreamBoothStyle

pytest.importorskip("onnxruntime")

def test_fused_export_parity_and_manifest(exported):
    from styleengine.export.manifest import Manifest

    out, lora, err = exported
    manifest = Manifest.load(out)
    assert sorted(manifest.graphs) == ["text_encoder", "unet", "vae_decoder", "vae_encoder"]
    for name, rec in manifest.graphs.items():
        assert rec.parity["passed"], (name, rec.parity)
        for point in ("min", "opt", "max"):
            for output, o in rec.parity[point]["outputs"].items():
                print(f"{name}.{output} @ {point}: max |err| {o['max_abs']:.3g}, PSNR {o['psnr']:.1f} dB")
    raw = json.loads((out / "manifest.json").read_text())
    from styleengine.weights import sha256_path

    assert raw["lora"]["name"] == "dog" and raw["lora"]["sha256"] == sha256_path(lora)


def test_exported_fused_lora_equals_torch_switching(exported):
    from styleengine.plugins import get_engine
    from styleengine.runtime.base import SessionOptions
    from styleengine.sessions import open_sessions
    from styleengine_dreambooth.pipeline import UnknownLoraError

    out, lora, _ = exported
    engine = get_engine()
    cfg = {**FAST, "steps": 3}
    multi = DreamBoothStyle({**TINY, "loras": {"dog": str(lora)}})
    sessions = open_sessions(engine, multi, "torch", options=SessionOptions(threads=1))
    [want] = multi.infer(sessions, [request(4, lora="dog")], multi.parse_config(cfg))
    fresh = DreamBoothStyle(TINY)  # serving artifacts: tokenizer + scheduler only, no torch weights
    ort = open_sessions(engine, fresh, "onnxruntime", artifacts=out, options=SessionOptions(threads=1))
    [got] = fresh.infer(ort, [request(4)], fresh.parse_config(cfg))
    d = max_diff(got.image, want.image)
    print(f"ONNX Runtime (LoRA fused) vs torch (LoRA switched per request): max |diff| {d:.2e}")
    assert d < 1e-4
    with pytest.raises(UnknownLoraError, match="exported graphs carry their LoRA fused"):
        fresh.infer(ort, [request(4, lora="dog")], fresh.parse_config(cfg))
    del ort
    gc.collect()

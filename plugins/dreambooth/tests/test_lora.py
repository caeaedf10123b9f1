"""LoRA at serve time (several loaded, switched per request and grouped), the diffusers / kohya layouts, and the
fused export graphs."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from db_helpers import FAST, TINY, max_diff, random_lora, request
from safetensors.torch import load_file, save_file
from styleengine_dreambooth import DreamBoothStyle

PROMPT = "a photo of sks dog"


@pytest.fixture(scope="module")
def loras(tmp_path_factory):
    d = tmp_path_factory.mktemp("loras")
    return {"dog": random_lora(d / "dog.safetensors", 1), "van_gogh": random_lora(d / "vg.safetensors", 2, text_encoder=True)}


@pytest.fixture(scope="module")
def multi(loras):
    style = DreamBoothStyle({**TINY, "loras": {k: str(v) for k, v in loras.items()}})
    from styleengine.runtime.base import SessionOptions
    from styleengine.runtime.torch import TorchSession

    return style, {s.name: TorchSession(s, SessionOptions()) for s in style.graphs()}


def _fused(path):
    from styleengine.runtime.base import SessionOptions
    from styleengine.runtime.torch import TorchSession

    style = DreamBoothStyle({**TINY, "fused_lora": str(path)})
    return style, {s.name: TorchSession(s, SessionOptions()) for s in style.graphs()}


def test_switching_per_request_gives_each_loras_own_output_and_never_mixes(multi, loras):
    style, sessions = multi
    calls = []

    class Spy:
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def run(self, feeds):
            from styleengine.diffusion.lora import _active

            calls.append((feeds["sample"].shape[0], _active.get(self.inner.module.unet)))
            return self.inner.run(feeds)

    reqs = [request(0, lora="dog"), request(1, lora="van_gogh"), request(2), request(3, lora="dog"),
            request(4, lora="dog:0.5,van_gogh:0.5")]
    cfg = style.parse_config(FAST)
    out = style.infer({**sessions, "unet": Spy(sessions["unet"])}, reqs, cfg)
    assert [r.info["lora"] for r in out] == [{"dog": 1.0}, {"van_gogh": 1.0}, {}, {"dog": 1.0}, {"dog": 0.5, "van_gogh": 0.5}]
    assert [r.info["batch"] for r in out] == [2, 1, 1, 2, 1]
    # 4 groups x 2 steps; every UNet call ran under one adapter state (2 rows per request: CFG)
    assert [c[0] for c in calls] == [4, 4, 2, 2, 2, 2, 2, 2]
    assert [c[1] for c in calls[::2]] == [(("dog", 1.0),), (("van_gogh", 1.0),), (), (("dog", 0.5), ("van_gogh", 0.5))]

    base_style = DreamBoothStyle(TINY)
    from styleengine.runtime.base import SessionOptions
    from styleengine.runtime.torch import TorchSession

    base_sessions = {s.name: TorchSession(s, SessionOptions()) for s in base_style.graphs()}
    [base] = base_style.infer(base_sessions, [request(2)], cfg)
    assert max_diff(out[2].image, base.image) < 1e-5  # no LoRA = the base model
    for i, name in ((0, "dog"), (1, "van_gogh"), (3, "dog")):
        fs, fsess = _fused(loras[name])
        [own] = fs.infer(fsess, [request(i)], cfg)
        d = max_diff(out[i].image, own.image)
        assert d < 1e-4, (name, d)
    assert max_diff(out[0].image, out[1].image) > 1e-3
    # switching back gives the same image (batch of 1 here vs 2 above: float reassociation only)
    [again] = style.infer(sessions, [request(0, lora="dog")], cfg)
    assert max_diff(again.image, out[0].image) < 1e-5


def test_switched_lora_equals_diffusers_load_lora_weights(multi, loras):
    from diffusion_support import sd_pipeline

    style, sessions = multi
    [ours] = style.infer(sessions, [request(9, lora="van_gogh:0.7")], style.parse_config({**FAST, "steps": 3}))
    fresh = DreamBoothStyle(TINY)
    pipe = sd_pipeline(replace(fresh.components, scheduler=fresh.scheduler("dpmpp")))
    pipe.load_lora_weights(str(loras["van_gogh"]), adapter_name="vg")
    pipe.set_adapters(["vg"], [0.7])
    ref = pipe(PROMPT, height=64, width=64, num_inference_steps=3, generator=torch.Generator().manual_seed(9),
               output_type="pt").images
    d = max_diff(ours.image, ref[0].permute(1, 2, 0).numpy())
    print(f"per-request LoRA (text encoder + UNet, weight 0.7) vs diffusers: max |diff| {d:.2e}")
    assert d < 1e-4


def test_unknown_lora_error_names_the_loaded_ones(multi):
    from styleengine_dreambooth.pipeline import UnknownLoraError

    style, sessions = multi
    with pytest.raises(UnknownLoraError, match=r"'cat' is not loaded; available: dog, van_gogh"):
        style.infer(sessions, [request(0, lora="cat")], style.parse_config(FAST))
    with pytest.raises(ValueError, match="must be a number"):
        style.infer(sessions, [request(0, lora="dog:lots")], style.parse_config(FAST))


def test_kohya_layout_loads_like_the_diffusers_layout(loras, tmp_path):
    """The A1111 / kohya layout (``lora_unet_<module>.lora_down/lora_up/alpha``) of the same adapter gives the same image."""
    from styleengine_dreambooth.importer import lora_layout, weights_kind

    sd = load_file(str(loras["dog"]))
    kohya = {}
    for k, v in sd.items():
        mod, _, kind = k.removeprefix("unet.").rpartition(".lora.")
        base = "lora_unet_" + mod.replace(".", "_")
        kohya[f"{base}.{'lora_down' if kind.startswith('down') else 'lora_up'}.weight"] = v
        kohya[f"{base}.alpha"] = torch.tensor(4.0)
    path = tmp_path / "dog_kohya.safetensors"
    save_file(kohya, str(path))
    assert lora_layout(path) == "kohya" and lora_layout(loras["dog"]) == "diffusers" and weights_kind(path) == "lora"
    cfg = {**FAST, "steps": 2}
    a, sa = _fused(loras["dog"])
    b, sb = _fused(path)
    [x] = a.infer(sa, [request(1)], a.parse_config(cfg))
    [y] = b.infer(sb, [request(1)], b.parse_config(cfg))
    assert max_diff(x.image, y.image) < 1e-5


def test_export_graphs_fuse_the_named_lora(loras):
    from styleengine_dreambooth.pipeline import UnknownLoraError

    mc = {**TINY, "loras": {k: str(v) for k, v in loras.items()}}
    style = DreamBoothStyle({**mc, "export_lora": "van_gogh"})
    specs = {s.name: s for s in style.export_graphs()}
    fused_style, _ = _fused(loras["van_gogh"])
    ref = {s.name: s for s in fused_style.graphs()}

    for name in ("unet", "text_encoder"):
        feeds = {k: torch.from_numpy(v) for k, v in specs[name].example_inputs("opt").items()}
        with torch.no_grad():
            got, want = specs[name].module(**feeds), ref[name].module(**feeds)
        assert float((got - want).abs().max()) < 1e-5, name
        assert not any("lora_" in n for n, _ in specs[name].module.named_parameters())
    meta = style.export_metadata()["lora"]
    assert meta["name"] == "van_gogh" and len(meta["sha256"]) == 64 and meta["file"].endswith("vg.safetensors")
    assert style.components.unet.peft_config  # the serving model keeps its switchable adapters
    fused = DreamBoothStyle({**TINY, "fused_lora": str(loras["dog"])}).export_metadata()
    assert fused["lora"] is None and fused["fused_lora"]["file"].endswith("dog.safetensors")
    with pytest.raises(UnknownLoraError, match="available: dog, van_gogh"):
        DreamBoothStyle({**mc, "export_lora": "cat"}).export_graphs()

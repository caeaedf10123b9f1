"""Training: both dataset layouts with their preflight, loss going down, identical resume, LoRA, the CLI."""

from __future__ import annotations

import json

import pytest
import torch
from ip2p_helpers import TINY, run_cli
from safetensors.torch import load_file
from styleengine_instruct_pix2pix import InstructPix2PixStyle, TrainConfig
from styleengine_instruct_pix2pix.data import load_dataset

from styleengine.data import DatasetError
from styleengine.training import TrainContext

#: 64-px training on the tiny model: a step takes a fraction of a second on a CPU.
FAST_TRAIN = dict(model=TINY, resolution=64, batch_size=2, validation_steps=2, num_workers=0)


def _paths(exc: DatasetError) -> dict[str, str]:
    return {str(b.path): b.reason for b in exc.bad}


def test_preflight_simple_layout_reports_every_bad_triplet(make_simple, tmp_path):
    root = make_simple(tmp_path / "data", n=5)
    (root / "edited" / "1.png").unlink()  # missing edited image
    data = (root / "input" / "2.png").read_bytes()
    (root / "input" / "2.png").write_bytes(data[: len(data) // 2])  # truncated
    lines = (root / "prompts.jsonl").read_text().splitlines()
    lines[3] = json.dumps({"file": "3.png", "instruction": "  "})  # empty instruction
    lines.append("{not json")
    (root / "prompts.jsonl").write_text("\n".join(lines) + "\n")
    (root / "input" / "stray.png").write_bytes((root / "input" / "0.png").read_bytes())  # no instruction for it
    with pytest.raises(DatasetError) as err:
        load_dataset(root, on_bad_file="fail")
    bad = _paths(err.value)
    assert "missing edited image" in bad[str(root / "edited" / "1.png")]
    assert "truncated" in bad[str(root / "input" / "2.png")] or "decode" in bad[str(root / "input" / "2.png")]
    assert "empty instruction" in bad[str(root / "input" / "3.png")]
    assert "not listed" in bad[str(root / "input" / "stray.png")]
    assert "line 6: not JSON" in bad[str(root / "prompts.jsonl")]
    for path in bad:
        assert path in str(err.value)  # the message names every one
    ok = load_dataset(root, on_bad_file="skip")
    assert [i.key for i in ok.items] == ["0.png", "4.png"] and ok.layout == "simple"


def test_preflight_reference_layout_reports_every_bad_triplet(make_reference, tmp_path):
    root = make_reference(tmp_path / "data", n=5)
    entries = json.loads((root / "seeds.json").read_text())
    name1, seeds1 = entries[1]
    (root / name1 / f"{seeds1[0]}_1.jpg").unlink()  # missing edited image (the prompt's other seed survives)
    (root / entries[2][0] / "prompt.json").write_text(json.dumps({"input": "a", "edit": "", "output": "b"}))
    (root / entries[3][0] / "prompt.json").unlink()
    name0, seeds0 = entries[0]
    (root / name0 / f"{seeds0[1]}_0.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(DatasetError) as err:
        load_dataset(root, on_bad_file="fail")
    bad = _paths(err.value)
    assert "missing edited image" in bad[str(root / name1 / f"{seeds1[0]}_1.jpg")]
    assert "empty instruction" in bad[str(root / entries[2][0] / "prompt.json")]
    assert "missing prompt.json" in bad[str(root / entries[3][0] / "prompt.json")]
    assert str(root / name0 / f"{seeds0[1]}_0.jpg") in bad
    ok = load_dataset(root, on_bad_file="skip")
    assert ok.layout == "reference"
    assert {i.key: len(i.pairs) for i in ok.items} == {name0: 1, name1: 1, entries[4][0]: 2}
    assert len(load_dataset(make_reference(tmp_path / "split", n=20), split="train").items) == 18  # 90 / 5 / 5


def test_not_a_dataset(tmp_path):
    with pytest.raises(DatasetError, match="seeds.json"):
        load_dataset(tmp_path)


def _train(out, data, *, max_steps, resume=False, sample_every=100, **overrides):
    cfg = TrainConfig(**{**FAST_TRAIN, **overrides})
    style = InstructPix2PixStyle(cfg.model)
    ctx = TrainContext(out_dir=out, data={"data": data}, max_steps=max_steps, resume=resume, sample_every=sample_every,
                       checkpoint_every=100, show_progress=False, cpu=True)
    return style, style.train(cfg, ctx)


def _tensors_equal(a, b) -> bool:
    x, y = load_file(str(a)), load_file(str(b))
    return set(x) == set(y) and all(torch.equal(x[k], y[k]) for k in x)


def test_three_steps_lower_the_loss_and_resume_identically(make_simple, tmp_path):
    data = make_simple(tmp_path / "data", n=4)
    opts = dict(learning_rate=1e-3, use_ema=True, ema_decay=0.5)
    style, run = _train(tmp_path / "a", data, max_steps=3, sample_every=2, **opts)
    m = run.metrics
    print(f"fixed-noise loss on the first batch: {m['eval_loss_initial']:.4f} -> {m['eval_loss_final']:.4f}; "
          f"step losses {[round(h['loss'], 4) for h in run.history]}")
    assert run.steps == 3 and m["eval_loss_final"] < m["eval_loss_initial"]
    assert (tmp_path / "a" / "samples" / "step-0000002.png").is_file()
    ckpt = tmp_path / "a" / "checkpoints" / "step-0000003"
    assert {p.name for p in ckpt.iterdir()} >= {"model.safetensors", "config.json", "training_state.safetensors", "training_state.json"}
    assert any(k.startswith("optim.ema") for k in load_file(str(ckpt / "training_state.safetensors")))

    _, first = _train(tmp_path / "b", data, max_steps=2, **opts)
    _, resumed = _train(tmp_path / "b", data, max_steps=3, resume=True, **opts)
    assert first.steps == 2 and resumed.steps == 3 and resumed.history[0]["step"] == 3
    assert resumed.history[0]["loss"] == run.history[2]["loss"]
    for f in ("model.safetensors", "training_state.safetensors"):
        assert _tensors_equal(ckpt / f, tmp_path / "b" / "checkpoints" / "step-0000003" / f), f
    assert _tensors_equal(run.checkpoint / "model.safetensors", resumed.checkpoint / "model.safetensors")

    # The final (EMA) UNet weights are an engine checkpoint --weights accepts: base from its model config + UNet.
    assert set(k.split(".")[0] for k in load_file(str(run.checkpoint / "model.safetensors"))) == {"unet"}
    loaded = InstructPix2PixStyle()
    loaded.load_weights(run.checkpoint)
    assert loaded.model_config.size == "tiny" and loaded.weights_path == run.checkpoint
    base = InstructPix2PixStyle(TINY)
    a, b = loaded.modules["unet"].state_dict(), base.modules["unet"].state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(loaded.modules["vae"].state_dict()[k], v) for k, v in base.modules["vae"].state_dict().items())


def test_lora_through_the_cli_and_infer_with_its_weights(make_reference, tmp_path):
    data = make_reference(tmp_path / "data", n=4)
    run = tmp_path / "run"
    code, out, err = run_cli(
        "train", "instruct_pix2pix", "--data", str(data), "--set", "model={size: tiny}", "--set", "method=lora",
        "--set", "resolution=64", "--set", "batch_size=2", "--set", "validation_images=0", "--set", "num_workers=0",
        "--set", "learning_rate=0.01", "--max-steps", "2", "--cpu", "--no-progress", "--out", str(run))
    assert code == 0, err
    weights = run / "weights"
    assert out.strip() == str(weights)
    keys = load_file(str(weights / "model.safetensors"))
    assert keys and all(k.startswith("lora.") and "lora_" in k for k in keys)
    config = json.loads((weights / "config.json").read_text())
    assert config["model"]["lora"]["rank"] == 4 and config["model"]["size"] == "tiny"

    style = InstructPix2PixStyle()
    style.load_weights(weights)  # LoRA fused into the tiny base's UNet: plain weights again
    assert not any("lora" in n for n, _ in style.modules["unet"].named_parameters())
    base = InstructPix2PixStyle(TINY).modules["unet"].state_dict()
    assert any(not torch.equal(v, base[k]) for k, v in style.modules["unet"].state_dict().items())

    from PIL import Image

    Image.fromarray((torch.rand(40, 56, 3).numpy() * 255).astype("uint8")).save(tmp_path / "img.png")
    code, out, err = run_cli("infer", "instruct_pix2pix", str(tmp_path / "img.png"), "--weights", str(weights),
                             "--text", "instruction=make it snowy", "--set", "steps=2", "--set", "resolution=64",
                             "-o", str(tmp_path / "out"))
    assert code == 0, err
    assert out.strip() == str(tmp_path / "out" / "img.instruct_pix2pix.png")


def test_training_needs_a_base(make_simple, tmp_path):
    from styleengine.style import WeightsRequiredError

    data = make_simple(tmp_path / "data", n=2)
    ctx = TrainContext(out_dir=tmp_path / "run", data={"data": data}, show_progress=False, cpu=True)
    with pytest.raises(WeightsRequiredError, match="needs a base model"):
        InstructPix2PixStyle().train(TrainConfig(), ctx)
    cfg = TrainConfig(model={"source": str(tmp_path), "widen_unet": True}, method="lora")
    with pytest.raises(ValueError, match="method=full"):
        InstructPix2PixStyle(cfg.model).train(cfg, ctx)

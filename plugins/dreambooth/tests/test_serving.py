"""The generic service's runner with several LoRAs loaded (torch runtime): prompt (+ LoRA) in, image out, batched
per LoRA; a request naming an unknown LoRA gets a 400 naming the loaded ones, the others in its batch still answer."""

from __future__ import annotations

import time

import numpy as np
import pytest
from db_helpers import FAST, random_lora

pytest.importorskip("starlette")


def test_runner_serves_loras_per_request_and_refuses_unknown_ones(tmp_path):
    from styleengine.serving.args import ServeArgs
    from styleengine.serving.runner import RunnerCore, RunnerItem
    from styleengine.serving.ui import style_info
    from styleengine_dreambooth import DreamBoothStyle

    loras = {"dog": str(random_lora(tmp_path / "dog.safetensors", 1)), "cat": str(random_lora(tmp_path / "cat.safetensors", 2))}
    args = ServeArgs(style="dreambooth", runtime="torch", model_set={"size": "tiny", "loras": loras},
                     allow_random_weights=True, max_batch_size=4, warmup=False)
    core = RunnerCore(args)
    core.start(background=False)
    assert core.ready, core.error

    def item(i: int, lora: str = "") -> RunnerItem:
        texts = {"prompt": "a photo of sks dog", **({"lora": lora} if lora else {})}
        return RunnerItem(id=f"r{i}", images={}, texts=texts, params=dict(FAST), seed=10 + i, sent_at=time.time())

    outs = core.run_batch([item(0, "dog"), item(1, "cat"), item(2), item(3, "dog:0.5")])
    assert [o.status for o in outs] == [200] * 4, [o.detail for o in outs]
    assert [o.info["lora"] for o in outs] == [{"dog": 1.0}, {"cat": 1.0}, {}, {"dog": 0.5}]
    assert all(o.image.shape == (64, 64, 3) for o in outs)
    assert len({o.image.tobytes() for o in outs}) == 4
    alone = core.run_batch([item(1, "cat")])[0]
    assert np.abs(alone.image.astype(int) - outs[1].image.astype(int)).max() <= 1

    mixed = core.run_batch([item(0, "dog"), item(5, "horse")])
    assert [o.status for o in mixed] == [200, 400]
    assert mixed[1].error == "invalid_request" and "'horse' is not loaded; available: cat, dog" in mixed[1].detail
    assert np.array_equal(mixed[0].image, outs[0].image)
    core.stop()

    info = style_info(DreamBoothStyle, args, 4)
    texts = {t["name"]: t for t in info["texts"]}
    assert set(texts) == {"prompt", "negative_prompt", "lora"}
    assert texts["lora"]["choices"] == ["cat", "dog"] and texts["prompt"]["choices"] == []  # the playground offers them

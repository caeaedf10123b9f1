"""``slow-style``: an iterative style that takes as long as asked, for overload / timeout / cancellation tests.

Loaded into a server with ``engine -p slow_style serve slow-style`` (tests/serving on PYTHONPATH).  Each
step sleeps ``step_ms`` and then checks :func:`styleengine.cancel.check`, like a diffusion loop would; every
step it starts is appended to the file named by ``SLOW_STYLE_LOG`` (``<request id> <step>``), so a test can
see that a timed-out request's work really stopped.  Its output is the input inverted.

With ``SLOW_STYLE_FAIL_INFER`` set, every inference raises (its value is the message): warm-up then fails inside
the worker, the start-up failure path that only a running server can show.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import Field

import styleengine
from styleengine import cancel
from styleengine.style import Capability, InputContract, Style, StyleConfig, StyleRequest, StyleResult, TextField


class Config(StyleConfig):
    steps: int = Field(1, ge=1, le=1000, description="iterations")
    step_ms: int = Field(0, ge=0, le=5000, description="sleep per iteration (ms)")


class SlowStyle(Style):
    name = "slow-style"
    description = "sleeps step_ms per step, checking for cancellation between steps (tests)"
    capabilities = frozenset({Capability.INFER})
    Config = Config
    inputs = InputContract(texts=(TextField("note", "free text, unused", required=False, max_length=16),), size_policy="none", max_side=512, seeded=True)

    def build(self) -> dict[str, Any]:
        return {}

    def infer(self, sessions: Mapping[str, Any], batch: Sequence[StyleRequest], cfg: Config) -> list[StyleResult]:
        failure = os.environ.get("SLOW_STYLE_FAIL_INFER")
        if failure:
            raise RuntimeError(failure)
        log = os.environ.get("SLOW_STYLE_LOG")
        for step in range(cfg.steps):
            if log:
                with open(log, "a") as fh:
                    fh.write("".join(f"{r.id} {step} {cfg.steps}\n" for r in batch))
            time.sleep(cfg.step_ms / 1000)
            cancel.check()
        return [StyleResult(np.ascontiguousarray(1.0 - r.image(), dtype=np.float32), seed=r.seed) for r in batch]


@styleengine.hookimpl
def register_styles(register: Any) -> None:
    register(SlowStyle)

"""Glue between the ``engine bench`` command and the library: list options, output."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["parse_ints", "parse_names", "parse_params", "emit"]

PRECISIONS = ("fp32", "fp16", "bf16", "int8")


def parse_ints(raw: str, what: str) -> tuple[int, ...]:
    """``"1,4,8"`` → (1, 4, 8); duplicates dropped, order kept."""
    try:
        vals = tuple(dict.fromkeys(int(x) for x in raw.replace(" ", "").split(",") if x))
    except ValueError:
        raise ValueError(f"--{what} expects comma-separated integers, got {raw!r}") from None
    if not vals or any(v < 1 for v in vals):
        raise ValueError(f"--{what} expects positive integers, got {raw!r}")
    return vals


def parse_names(raw: str, what: str, choices: tuple[str, ...] | None = None) -> tuple[str, ...]:
    vals = tuple(dict.fromkeys(x.strip() for x in raw.split(",") if x.strip()))
    if not vals:
        raise ValueError(f"--{what} needs at least one value")
    if choices:
        bad = [v for v in vals if v not in choices]
        if bad:
            raise ValueError(f"--{what}: unknown {bad}; choose from {', '.join(choices)}")
    return vals


def parse_params(items: Sequence[str], parse: Callable[[Sequence[str]], dict[str, Any]]) -> dict[str, Any]:
    """``--set`` values, parsed by ``parse`` (YAML scalars), except ``KEY={size}``: the benchmark's size."""
    from .inputs import SIZE_PLACEHOLDER

    sized = {i.partition("=")[0].strip(): SIZE_PLACEHOLDER for i in items if i.partition("=")[2].strip() == SIZE_PLACEHOLDER}
    return {**parse([i for i in items if i.partition("=")[2].strip() != SIZE_PLACEHOLDER]), **sized}


def emit(report: Mapping[str, Any], *, as_json: bool, out: Path | None, echo: Callable[[str], None], say: Callable[[str], None],
         name: str | None = None) -> None:
    """Print the table (or the JSON) and write JSON + Markdown + plots under ``out``."""
    from .report import table, write_report

    if out is not None:
        for p in write_report(report, out, name):
            say(f"wrote {p}")
    echo(json.dumps(report, indent=2, default=str) if as_json else table(report))

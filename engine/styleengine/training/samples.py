"""Sample grids written during training: rows of (input | output | target ...) images."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..io import atomic_write_bytes


def grid(rows: Sequence[Sequence[torch.Tensor]], value_range: tuple[float, float] = (-1.0, 1.0), pad: int = 2) -> np.ndarray:
    """Tile CHW tensors (same size within a column) into one uint8 HxWx3 image."""
    lo, hi = value_range
    cells = [[((t.detach().float().cpu() - lo) / (hi - lo)).clamp(0, 1) for t in row] for row in rows]
    h = max(c.shape[-2] for row in cells for c in row)
    w = max(c.shape[-1] for row in cells for c in row)
    ncol = max(len(r) for r in cells)
    out = torch.ones(3, len(cells) * (h + pad) + pad, ncol * (w + pad) + pad)
    for i, row in enumerate(cells):
        for j, c in enumerate(row):
            c = c.expand(3, -1, -1) if c.shape[0] == 1 else c[:3]
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            out[:, y : y + c.shape[-2], x : x + c.shape[-1]] = c
    return (out.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


def save_grid(path: str | Path, rows: Sequence[Sequence[torch.Tensor]], value_range: tuple[float, float] = (-1.0, 1.0)) -> Path:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(grid(rows, value_range)).save(buf, format="PNG")
    return atomic_write_bytes(path, buf.getvalue())

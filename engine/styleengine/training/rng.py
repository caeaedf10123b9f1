"""Random streams derived from a run's seed: the same numbers on a resumed run as on an uninterrupted one.

A training loop that draws its data order, crops, noise and timesteps from ``derived_generator(seed, kind,
step, ...)`` instead of the global RNG is a pure function of ``(seed, step)``: ``--resume`` continues exactly
where the interrupted run was, whatever happened to the global RNG state in between.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["derive_seed", "derived_generator"]


def derive_seed(*parts: int) -> int:
    """A 63-bit seed mixed from integers (numpy's SeedSequence: well spread, order-sensitive)."""
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(1, dtype=np.uint64)[0] >> 1)


def derived_generator(*parts: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with :func:`derive_seed` of ``parts``."""
    return torch.Generator().manual_seed(derive_seed(*parts))

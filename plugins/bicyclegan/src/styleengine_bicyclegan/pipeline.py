"""The BicycleGAN inference pipeline over Sessions: choose each request's latent codes, run the generator once
per row (input x z), restore the outputs.

Written once for every runtime: the ``generator`` and ``encoder`` Sessions may be torch, ONNX Runtime or
TensorRT.  Where the z of a request come from (:class:`~.config.Config`), first match wins:

1. ``z`` given: those vectors, one output each;
2. a ``style`` example image: z = the encoder's mean ``mu`` of it (resized to the encoder's one size), one
   output: the reference's "encoded" result, deterministic;
3. otherwise ``n_samples`` draws of ``torch.randn`` from a CPU generator seeded with the request's seed (or
   ``sync_seed`` with ``sync``, so every input gets the same codes, as the reference's ``--sync``).

With ``frames``, the two endpoint codes (the two ``z`` vectors; the encoded z and one seeded draw; or two
seeded draws) are interpolated (``slerp`` as the reference's ``video.py``, or ``linear``) into ``frames``
outputs.  z is drawn on the host, so every runtime sees the same numbers.

Every output is one batch row: rows of all requests that share a processed size are stacked, up to the batch
Dim's max, whatever request they come from.  Instance norm normalises each row alone and eval mode has no
dropout, so a batch equals its single runs.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from styleengine.preprocess import fit, from_tensor, resize, restore, to_tensor
from styleengine.style import StyleRequest, StyleResult

from .config import DEFAULT_SEED, Config

if TYPE_CHECKING:
    from .style import BicycleGAN

#: ITU-R 601-2 luma, as PIL's ``convert("L")`` (the reference's ``transforms.Grayscale``) computes it.
LUMA = (0.299, 0.587, 0.114)


def draw_z(seed: int, n: int, nz: int) -> torch.Tensor:
    """``n`` latent codes ~ N(0, 1) (the reference's ``get_z_random``, ``gauss``) from a CPU generator seeded with ``seed``."""
    return torch.randn(n, nz, generator=torch.Generator().manual_seed(int(seed)))


def interpolate(z0: torch.Tensor, z1: torch.Tensor, frames: int, mode: str = "slerp") -> torch.Tensor:
    """``frames`` codes from ``z0`` to ``z1`` (both ends included), as the reference's ``util.interp_z``:
    spherical interpolation by the angle between the directions (falling back to linear when they are
    parallel), or linear."""
    a, b = z0.double().numpy(), z1.double().numpy()
    ratios = np.linspace(0.0, 1.0, frames)
    if mode == "slerp":
        na, nb = a / (np.linalg.norm(a) + 1e-10), b / (np.linalg.norm(b) + 1e-10)
        omega = float(np.arccos(np.clip(np.dot(na, nb), -1.0, 1.0)))
        s = math.sin(omega)
        if abs(s) >= 1e-10:
            out = np.stack([math.sin((1 - r) * omega) / s * a + math.sin(r * omega) / s * b for r in ratios])
            return torch.from_numpy(out.astype(np.float32))
    out = np.stack([(1 - r) * a + r * b for r in ratios])
    return torch.from_numpy(out.astype(np.float32))


def to_luma(x: torch.Tensor) -> torch.Tensor:
    return sum(c * x[:, k : k + 1] for k, c in enumerate(LUMA))  # type: ignore[return-value]


def tile(images: Sequence[np.ndarray], cols: int | None = None) -> np.ndarray:
    """Images of one size side by side, ``cols`` per row (default: one row); empty cells are white."""
    cols = min(cols or len(images), len(images))
    rows = -(-len(images) // cols)
    h, w, c = images[0].shape
    out = np.ones((rows * h, cols * w, c), dtype=np.float32)
    for k, img in enumerate(images):
        r, q = divmod(k, cols)
        out[r * h : (r + 1) * h, q * w : (q + 1) * w] = img
    return out


def _dims(session: Any, defaults: tuple[Any, ...], names: Sequence[str]) -> list[Any]:
    """The Dims of a session's own spec (an export profile may have narrowed them), else the style's."""
    dims = getattr(getattr(session, "spec", None), "dims", None) or {}
    return [dims.get(n, d) for n, d in zip(names, defaults, strict=True)]


def encode(style: BicycleGAN, sessions: Mapping[str, Any], images: Sequence[np.ndarray]) -> tuple[torch.Tensor, float]:
    """The encoder's ``mu`` for example images (HxWx3 in [0, 1]), each resized to the encoder's size."""
    mc = style.model_config
    session = sessions.get("encoder")
    if session is None:
        raise ValueError("this bicyclegan model has no encoder session; a style image needs the encoder graph (export it too)")
    side = mc.encoder_size
    (bdim,) = _dims(session, (style.dims()[0],), ("batch",))
    x = torch.cat([resize(to_tensor(img, style.inputs.value_range), (side, side)) for img in images])
    if mc.output_nc == 1:
        x = to_luma(x)
    t0 = time.perf_counter()
    mus = [session.run({"image": x[i : i + bdim.max]})["mu"].float().cpu() for i in range(0, x.shape[0], bdim.max)]
    return torch.cat(mus), (time.perf_counter() - t0) * 1000


def latent_codes(style: BicycleGAN, req: StyleRequest, cfg: Config, encoded: torch.Tensor | None) -> tuple[torch.Tensor, str, int | None]:
    """One request's codes (rows x nz), where they came from, and the seed drawn from (None if none)."""
    nz = style.model_config.nz
    seed = None
    if cfg.z is not None:
        vectors = cfg.vectors()
        if len(vectors[0]) != nz:
            raise ValueError(f"z holds {len(vectors[0])} values per vector; this model takes nz={nz}")
        base, source = torch.tensor(vectors, dtype=torch.float32), "explicit"
    else:
        seed = cfg.sync_seed if cfg.sync else (req.seed if req.seed is not None else DEFAULT_SEED)
        if encoded is not None:
            base, source = encoded[None], "encoded"
            if cfg.frames is not None:  # from the example's code to a random one
                base = torch.cat([base, draw_z(seed, 1, nz)])
            else:
                seed = None
        else:
            base, source = draw_z(seed, 2 if cfg.frames is not None else cfg.n_samples, nz), "random"
    if cfg.frames is not None:
        return interpolate(base[0], base[1], cfg.frames, cfg.interp), source + "-interpolation", seed
    return base, source, seed


def run(style: BicycleGAN, sessions: Mapping[str, Any], batch: Sequence[StyleRequest], cfg: Config) -> list[StyleResult]:
    mc = style.model_config
    session = sessions["generator"]
    bdim, hdim, wdim = _dims(session, style.dims(), ("batch", "height", "width"))
    contract = style.input_contract
    if cfg.size is not None:
        side = min(max(round(cfg.size / mc.size_multiple) * mc.size_multiple, hdim.min), hdim.max)
        contract = dataclasses.replace(contract, size_policy="fixed", fixed_size=side)
    t0 = time.perf_counter()
    fitted = [fit(req.image("image"), contract, hdim, wdim) for req in batch]
    t_pre = (time.perf_counter() - t0) * 1000

    # z: encode the example images of the requests that bring one (and no explicit z) in one pass
    wants = [i for i, req in enumerate(batch) if cfg.z is None and req.images.get("style") is not None]
    encoded: dict[int, torch.Tensor] = {}
    enc_ms = 0.0
    if wants:
        mus, enc_ms = encode(style, sessions, [batch[i].image("style") for i in wants])
        encoded = {i: mus[j] for j, i in enumerate(wants)}
    codes = [latent_codes(style, req, cfg, encoded.get(i)) for i, req in enumerate(batch)]

    # one batch row per (request, code); rows of equal processed size are stacked across requests
    groups: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for i, (z, _, _) in enumerate(codes):
        for k in range(z.shape[0]):
            groups.setdefault(tuple(fitted[i].tensor.shape[-2:]), []).append((i, k))
    outputs: dict[tuple[int, int], torch.Tensor] = {}
    gen_ms = [0.0] * len(batch)
    for rows in groups.values():
        for start in range(0, len(rows), bdim.max):
            chunk = rows[start : start + bdim.max]
            x = torch.cat([fitted[i].tensor for i, _ in chunk])
            if mc.input_nc == 1:
                x = to_luma(x)
            z = torch.stack([codes[i][0][k] for i, k in chunk])
            t1 = time.perf_counter()
            out = session.run({"image": x, "z": z})["output"].float().cpu()
            elapsed = (time.perf_counter() - t1) * 1000
            if mc.output_nc == 1:
                out = out.expand(-1, 3, -1, -1)
            for j, key in enumerate(chunk):
                outputs[key] = out[j : j + 1]
            for i in {i for i, _ in chunk}:
                gen_ms[i] += elapsed

    results = []
    for i, f in enumerate(fitted):
        z, source, seed = codes[i]
        images = [from_tensor(restore(outputs[(i, k)], f), contract.value_range) for k in range(z.shape[0])]
        shown = images[0] if len(images) == 1 else tile(images, cfg.grid_cols)
        info = {
            "z_source": source, "z": z.tolist(), "size": list(f.tensor.shape[-2:]), "runtime": getattr(session, "runtime", "?"),
            "samples": len(images),
        }
        timings = {"preprocess_ms": t_pre, "generator_ms": gen_ms[i]}
        if i in encoded:
            timings["encoder_ms"] = enc_ms
        results.append(StyleResult(shown, seed=seed, images=None if cfg.grid or len(images) == 1 else images, timings=timings, info=info))
    return results

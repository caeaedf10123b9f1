"""The pix2pix inference pipeline over Sessions: fit each image, run the generator, restore the output.

Written once for every runtime: the ``generator`` Session may be torch, ONNX Runtime or TensorRT.  Images of
equal processed size are stacked (up to the batch Dim's max) and run together; the ``reference`` variant's
dropout masks are drawn per image from its seed, so a batch equals its single runs.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from styleengine.nn import dropout_mask_shapes, make_dropout_masks
from styleengine.preprocess import fit, from_tensor, restore
from styleengine.style import StyleRequest, StyleResult

from .config import DEFAULT_SEED, Config
from .nets import mask_names

if TYPE_CHECKING:
    from .style import Pix2Pix

#: ITU-R 601-2 luma, as PIL's ``convert("L")`` (the reference's ``transforms.Grayscale``) computes it.
LUMA = (0.299, 0.587, 0.114)


def run(style: Pix2Pix, sessions: Mapping[str, Any], batch: Sequence[StyleRequest], cfg: Config) -> list[StyleResult]:
    """Fit each image to an accepted size, stack images of equal size (up to the batch Dim's max),
    run the generator once per stack (masks drawn per image from its seed), restore each output."""
    mc = style.model_config
    session = sessions["generator"]
    bdim, hdim, wdim = style.dims()
    # A session that knows its graph's spec (e.g. from an export profile's narrower dims) bounds the sizes.
    dims = getattr(getattr(session, "spec", None), "dims", None) or {}
    bdim, hdim, wdim = dims.get("batch", bdim), dims.get("height", hdim), dims.get("width", wdim)
    contract = style.input_contract
    if cfg.size is not None:
        side = min(max(round(cfg.size / mc.size_multiple) * mc.size_multiple, hdim.min), hdim.max)
        contract = dataclasses.replace(contract, size_policy="fixed", fixed_size=side)
    t0 = time.perf_counter()
    fitted = [fit(req.image("image"), contract, hdim, wdim) for req in batch]
    seeds = [req.seed if req.seed is not None else DEFAULT_SEED for req in batch]
    t_pre = time.perf_counter() - t0
    groups: dict[tuple[int, int], list[int]] = {}
    for i, f in enumerate(fitted):
        groups.setdefault(tuple(f.tensor.shape[-2:]), []).append(i)
    outputs: dict[int, torch.Tensor] = {}
    run_ms: dict[int, float] = {}
    for (h, w), members in groups.items():
        for start in range(0, len(members), bdim.max):
            chunk = members[start : start + bdim.max]
            x = torch.cat([fitted[i].tensor for i in chunk])
            if mc.input_nc == 1:
                x = sum(c * x[:, k : k + 1] for k, c in enumerate(LUMA))
            feeds: dict[str, torch.Tensor] = {"image": x}
            if style.uses_masks:
                shapes = dropout_mask_shapes(mc.netG, len(chunk), h, w, ngf=mc.ngf)
                feeds.update(zip(mask_names(len(shapes)), make_dropout_masks(shapes, [seeds[i] for i in chunk]), strict=True))
            t1 = time.perf_counter()
            out = session.run(feeds)["output"].float().cpu()
            elapsed = (time.perf_counter() - t1) * 1000
            if mc.output_nc == 1:
                out = out.expand(-1, 3, -1, -1)
            for j, i in enumerate(chunk):
                outputs[i] = out[j : j + 1]
                run_ms[i] = elapsed
    results = []
    for i, (req, f) in enumerate(zip(batch, fitted, strict=True)):
        image = from_tensor(restore(outputs[i], f), contract.value_range)
        info = {"variant": style.variant, "size": list(f.tensor.shape[-2:]), "runtime": getattr(session, "runtime", "?")}
        results.append(
            StyleResult(image, seed=seeds[i] if style.uses_masks else req.seed, timings={"preprocess_ms": t_pre * 1000, "generator_ms": run_ms[i]}, info=info)
        )
    return results

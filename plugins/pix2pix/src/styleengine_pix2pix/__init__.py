"""``pix2pix``: conditional-GAN image-to-image translation (Isola et al., "Image-to-Image Translation
with Conditional Adversarial Networks", CVPR 2017), faithful to junyanz/pytorch-CycleGAN-and-pix2pix.

One graph, ``generator`` (U-Net or ResNet from :mod:`styleengine.nn`), in two variants:

``eval`` (default)
    ``model.eval()``: BatchNorm with its running statistics, dropout off.  Deterministic, no extra
    inputs, batch-independent; what the reference's ``test.py --eval`` computes.
``reference``
    What the reference's ``test.py`` computes *without* ``--eval`` (its default: the model stays in
    train mode, batch size 1): every image normalised with its own BatchNorm statistics
    (:class:`~styleengine.nn.PerSampleBatchNorm2d`) and dropout active, as the paper's noise source.
    The dropout masks are graph inputs drawn per request from its seed, so a given seed gives the
    same image on every runtime and in any batch.

See the plugin README for the choice, dataset formats, training options and limitations.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

import styleengine
from styleengine.spec import Dim, GraphSpec
from styleengine.style import Capability, ImageField, InputContract, Style, StyleRequest, StyleResult

from .config import SIZE_MULTIPLE, Config, ModelConfig, TrainConfig
from .graph import generator_spec, mask_names, wrap
from .pretrained import PRETRAINED

__all__ = ["DEFAULT_SEED", "PRETRAINED", "Config", "ModelConfig", "Pix2Pix", "TrainConfig", "register_styles"]
__version__ = "0.1.0"

log = logging.getLogger(__name__)

#: Seed of the ``reference`` variant's dropout masks when a request brings none: results stay
#: reproducible (and equal across runtimes) by default; pass a seed per request for other draws.
DEFAULT_SEED = 0

#: ITU-R 601-2 luma, as PIL's ``convert("L")`` (the reference's ``transforms.Grayscale``) computes it.
_LUMA = (0.299, 0.587, 0.114)

#: Largest side the graph accepts by default (export profiles may change the range).
MAX_SIDE = 1024


class Pix2Pix(Style):
    name = "pix2pix"
    aliases = ("p2p",)
    description = "pix2pix conditional-GAN image-to-image translation (U-Net / ResNet generator)"
    capabilities = frozenset({Capability.INFER, Capability.EXPORT, Capability.TRAIN})
    Config = Config
    ModelConfig = ModelConfig
    TrainConfig = TrainConfig
    #: Other sizes are resized to the nearest accepted one (the generator's multiple, within the graph's
    #: range) and the output resized back.  The multiple depends on netG: 256 (unet_256), 128 (unet_128),
    #: 4 (resnet_*); :attr:`input_contract` gives an instance's exact contract.
    inputs = InputContract(
        images=(ImageField("image", "input image (domain A; domain B for weights trained with direction=BtoA)"),),
        value_range=(-1.0, 1.0),
        size_multiple=4,
        size_policy="resize",
        max_side=8192,
        seeded=True,
    )
    variants = ("eval", "reference")
    pretrained = PRETRAINED
    weights_hint = (
        "pull published weights (`engine pull pix2pix:facades_label2photo`, see `engine pull --help`), import a "
        "reference checkpoint with --weights latest_net_G.pth, or train with `engine train pix2pix --data DIR`"
    )

    #: Training-only tensors found in a loaded checkpoint (the discriminator), for fine-tuning.
    discriminator_state: dict[str, torch.Tensor] | None

    def __init__(self, model_config: Any = None, variant: str | None = None) -> None:
        super().__init__(model_config, variant)
        self.discriminator_state = None

    # -- shapes ----------------------------------------------------------------------------------
    @property
    def input_contract(self) -> InputContract:
        return dataclasses.replace(type(self).inputs, size_multiple=self.model_config.size_multiple)

    def dims(self) -> tuple[Dim, Dim, Dim]:
        """(batch, height, width) the graph accepts by default."""
        m = SIZE_MULTIPLE[self.model_config.netG]
        lo = m if m >= 128 else 64
        opt = max(lo, 256 if m != 128 else 128)
        batch = Dim("batch", 1, 1, 8)
        return batch, Dim("height", lo, opt, MAX_SIDE, m), Dim("width", lo, opt, MAX_SIDE, m)

    @property
    def uses_masks(self) -> bool:
        return self.variant == "reference" and not self.model_config.no_dropout

    @property
    def num_masks(self) -> int:
        from styleengine.nn import dropout_mask_shapes

        cfg = self.model_config
        return len(dropout_mask_shapes(cfg.netG, 1, cfg.size_multiple, cfg.size_multiple, ngf=cfg.ngf)) if self.uses_masks else 0

    # -- modules and weights ---------------------------------------------------------------------
    def build(self) -> dict[str, torch.nn.Module]:
        from styleengine.nn import convert_batchnorm_to_per_sample, define_G

        cfg = self.model_config
        net = define_G(
            cfg.input_nc, cfg.output_nc, cfg.ngf, cfg.netG, cfg.norm, use_dropout=not cfg.no_dropout,
            generator=torch.Generator().manual_seed(self.init_seed),
        )
        if self.variant == "reference":
            net = convert_batchnorm_to_per_sample(net)
        return {"generator": net}

    def load_state_dict(self, tensors: Mapping[str, torch.Tensor], source: str = "state dict") -> None:
        """Engine checkpoints: ``generator.*`` is loaded; ``discriminator.*`` (training checkpoints keep
        it for ``--resume`` and fine-tuning) is set aside in :attr:`discriminator_state`."""
        disc = {k.partition(".")[2]: v for k, v in tensors.items() if k.startswith("discriminator.")}
        self.discriminator_state = disc or None
        super().load_state_dict({k: v for k, v in tensors.items() if not k.startswith("discriminator.")}, source)

    def import_weights(self, path: Path) -> None:
        """Load a reference generator checkpoint (``latest_net_G.pth``, ``<name>.pth``), see :mod:`.importer`."""
        from styleengine.nn import CheckpointMismatchError, load_into, load_reference_state_dict

        from .importer import describe, detect_generator, is_discriminator

        state = load_reference_state_dict(path)
        if is_discriminator(state):
            raise ValueError(
                f"{path} holds a discriminator ({describe(state)}); inference needs the generator "
                "checkpoint (latest_net_G.pth / <epoch>_net_G.pth)"
            )
        found = detect_generator(state)
        if found is None:
            raise ValueError(f"{path} is not a pix2pix generator checkpoint: it looks like {describe(state)}")
        if found["norm"] not in ("batch", "instance"):
            raise ValueError(f"{path}: generator with norm={found['norm']!r} ({describe(state)}); pix2pix supports batch and instance")
        cfg = self.model_config
        explicit = cfg.model_fields_set
        conflicts = {k: v for k, v in found.items() if k in explicit and getattr(cfg, k) != v}
        if conflicts:
            wanted = ", ".join(f"{k}={getattr(cfg, k)}" for k in conflicts)
            raise CheckpointMismatchError(
                f"{path} holds {describe(state)}, but the model config asks for {wanted}; "
                f"use {', '.join(f'{k}={v}' for k, v in conflicts.items())} (or leave them unset)",
                missing=[], unexpected=[], shape_mismatches=[], hint=describe(state),
            )
        updates = {k: v for k, v in found.items() if getattr(cfg, k) != v}
        if updates:
            log.info("%s: using the checkpoint's architecture %s", path, updates)
            self.model_config = self.ModelConfig(**{k: getattr(cfg, k) for k in explicit}, **updates)
            self._modules = None
        try:
            load_into(self.modules["generator"], state)
        except CheckpointMismatchError as exc:
            raise CheckpointMismatchError(
                f"{path}: {exc}", missing=exc.missing, unexpected=exc.unexpected, shape_mismatches=exc.shape_mismatches, hint=exc.hint
            ) from exc
        self.discriminator_state = None

    # -- export ----------------------------------------------------------------------------------
    def graphs(self) -> list[GraphSpec]:
        cfg = self.model_config
        batch, height, width = self.dims()
        net = self.modules["generator"]
        return [
            generator_spec(
                wrap(net, self.num_masks), netG=cfg.netG, ngf=cfg.ngf, input_nc=cfg.input_nc, output_nc=cfg.output_nc,
                batch=batch, height=height, width=width, with_masks=self.uses_masks,
            )
        ]

    # -- infer -----------------------------------------------------------------------------------
    def infer(self, sessions: Mapping[str, Any], batch: Sequence[StyleRequest], cfg: Config) -> list[StyleResult]:
        """Fit each image to an accepted size, stack images of equal size (up to the batch Dim's max),
        run the generator once per stack (masks drawn per image from its seed), restore each output."""
        from styleengine.nn import dropout_mask_shapes, make_dropout_masks
        from styleengine.preprocess import fit, from_tensor, restore

        cfg = self.parse_config(cfg)  # type: ignore[assignment]
        mc = self.model_config
        session = sessions["generator"]
        bdim, hdim, wdim = self.dims()
        # A session that knows its graph's spec (e.g. from an export profile's narrower dims) bounds the sizes.
        dims = getattr(getattr(session, "spec", None), "dims", None) or {}
        bdim, hdim, wdim = dims.get("batch", bdim), dims.get("height", hdim), dims.get("width", wdim)
        contract = self.input_contract
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
                    x = sum(c * x[:, k : k + 1] for k, c in enumerate(_LUMA))
                feeds: dict[str, torch.Tensor] = {"image": x}
                if self.uses_masks:
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
            info = {"variant": self.variant, "size": list(f.tensor.shape[-2:]), "runtime": getattr(session, "runtime", "?")}
            results.append(
                StyleResult(image, seed=seeds[i] if self.uses_masks else req.seed, timings={"preprocess_ms": t_pre * 1000, "generator_ms": run_ms[i]}, info=info)
            )
        return results

    # -- train -----------------------------------------------------------------------------------
    def train(self, cfg: TrainConfig, ctx: Any) -> Any:
        from .train import train

        return train(self, cfg, ctx)


@styleengine.hookimpl
def register_styles(register: Any) -> None:
    register(Pix2Pix)

"""The ``pix2pix`` Style: declarations, modules, graphs; inference is :mod:`.pipeline`, training :mod:`.train`.

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

Importing this module imports no torch (the CLI loads every plugin at start-up); torch comes with
``build``, ``graphs``, ``infer`` and the importers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from styleengine.spec import Dim, GraphSpec
from styleengine.style import Capability, ImageField, InputContract, Style, StyleRequest, StyleResult

from .config import SIZE_MULTIPLE, Config, ModelConfig, TrainConfig
from .importer import PRETRAINED

if TYPE_CHECKING:
    import torch

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
    #: The real U-Net structure at a quarter of the width (the serving and CLI tests' model).
    tiny_model_set = {"netG": "unet_128", "ngf": 4}
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
        import torch

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
        from .importer import import_generator

        import_generator(self, path)

    # -- export ----------------------------------------------------------------------------------
    def graphs(self) -> list[GraphSpec]:
        from .nets import generator_spec, wrap

        cfg = self.model_config
        batch, height, width = self.dims()
        return [
            generator_spec(
                wrap(self.modules["generator"], self.num_masks), netG=cfg.netG, ngf=cfg.ngf, input_nc=cfg.input_nc,
                output_nc=cfg.output_nc, batch=batch, height=height, width=width, with_masks=self.uses_masks,
            )
        ]

    # -- infer -----------------------------------------------------------------------------------
    def infer(self, sessions: Mapping[str, Any], batch: Sequence[StyleRequest], cfg: Config) -> list[StyleResult]:
        from .pipeline import run

        return run(self, sessions, batch, self.parse_config(cfg))  # type: ignore[arg-type]

    # -- train -----------------------------------------------------------------------------------
    def train(self, cfg: TrainConfig, ctx: Any) -> Any:
        from .train import train

        return train(self, cfg, ctx)

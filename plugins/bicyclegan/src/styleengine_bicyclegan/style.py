"""The ``bicyclegan`` Style: declarations, modules, graphs; inference is :mod:`.pipeline`, training :mod:`.train`.

Two modules and two graphs: ``generator`` (``G(A, z)``: a z-injecting U-Net from :mod:`styleengine.nn`) and
``encoder`` (``E(B) -> (mu, logvar)``).  One variant: the reference's ``test.py`` always calls
``model.eval()``, and instance norm (the default) behaves the same in train and eval mode, so inference is
deterministic given z and batch-independent.

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

from .config import Config, ModelConfig, TrainConfig
from .importer import PRETRAINED

if TYPE_CHECKING:
    import torch

#: Largest side the generator graph accepts by default (export profiles may change the range).
MAX_SIDE = 1024
#: Rows (input x sample) one generator call takes by default: each sample of each request is a batch row.
MAX_BATCH = 8

#: Module names of training-only networks an engine checkpoint may carry (set aside for fine-tuning / resume).
TRAINING_MODULES = ("discriminator", "discriminator2")


class BicycleGAN(Style):
    name = "bicyclegan"
    aliases = ("bicycle_gan",)
    description = "BicycleGAN multimodal image-to-image translation (z-injecting U-Net + encoder)"
    capabilities = frozenset({Capability.INFER, Capability.EXPORT, Capability.TRAIN})
    Config = Config
    ModelConfig = ModelConfig
    TrainConfig = TrainConfig
    #: Other sizes are resized to the nearest accepted one (multiples of 256 for unet_256, 128 for unet_128,
    #: within the graph's range) and the output resized back.  The ``style`` example image is resized to the
    #: encoder's one accepted size (256 x 256 for resnet_256 / conv_256, 128 for the *_128 encoders): the
    #: reference's encoders end in a fixed average pool and a linear layer sized for it.
    inputs = InputContract(
        images=(
            ImageField("image", "input image (domain A; domain B for weights trained with direction=BtoA)"),
            ImageField(
                "style", "example output (domain B): its encoded z sets the style of the output; resized to the encoder's one "
                "input size (256 x 256 for resnet_256 / conv_256, 128 x 128 for the *_128 encoders)", required=False,
            ),
        ),
        value_range=(-1.0, 1.0),
        size_multiple=256,
        size_policy="resize",
        max_side=8192,
        seeded=True,
    )
    variants = ("default",)
    #: The real structures (U-Net with 7 downsamplings, E_ResNet 128) at 1/16 of the filters: tests and CPU demos.
    tiny_model_set = {"netG": "unet_128", "ngf": 4, "nef": 4, "netE": "resnet_128"}
    pretrained = PRETRAINED
    weights_hint = (
        "pull published weights (`engine pull bicyclegan:edges2shoes`, see `engine pull --help`), import a reference "
        "checkpoint with --weights DIR (holding latest_net_G.pth + latest_net_E.pth), or train with "
        "`engine train bicyclegan --data DIR`"
    )

    #: Training-only tensors found in a loaded checkpoint (``discriminator.*``, ``discriminator2.*``).
    training_state: dict[str, dict[str, torch.Tensor]]

    def __init__(self, model_config: Any = None, variant: str | None = None) -> None:
        super().__init__(model_config, variant)
        self.training_state = {}

    # -- shapes ----------------------------------------------------------------------------------
    @property
    def input_contract(self) -> InputContract:
        return dataclasses.replace(type(self).inputs, size_multiple=self.model_config.size_multiple)

    def dims(self) -> tuple[Dim, Dim, Dim]:
        """(batch, height, width) the generator accepts by default."""
        m = self.model_config.size_multiple  # 256 or 128; opt 256: the reference's test size, a multiple of both
        batch = Dim("batch", 1, 1, MAX_BATCH)
        return batch, Dim("height", m, 256, MAX_SIDE, m), Dim("width", m, 256, MAX_SIDE, m)

    # -- modules and weights ---------------------------------------------------------------------
    def build(self) -> dict[str, torch.nn.Module]:
        import torch

        from styleengine.nn import define_E, define_G_z, init_weights

        cfg = self.model_config
        G = define_G_z(
            cfg.input_nc, cfg.output_nc, cfg.nz, cfg.ngf, cfg.netG, cfg.norm, cfg.nl, use_dropout=cfg.use_dropout,
            where_add=cfg.where_add, upsample=cfg.upsample,
        )
        E = define_E(cfg.output_nc, cfg.nz, cfg.nef, cfg.netE, cfg.norm, vae_like=True)
        # the reference's initialisation (xavier, gain 0.02), seeded: random-weight artifacts stay reproducible
        init_weights(G, "xavier", 0.02, generator=torch.Generator().manual_seed(self.init_seed))
        init_weights(E, "xavier", 0.02, generator=torch.Generator().manual_seed(self.init_seed + 1))
        return {"generator": G, "encoder": E}

    def load_state_dict(self, tensors: Mapping[str, torch.Tensor], source: str = "state dict") -> None:
        """Engine checkpoints: ``generator.*`` and ``encoder.*`` load; the discriminators (training checkpoints
        keep them for ``--resume`` and fine-tuning) are set aside in :attr:`training_state`."""
        self.training_state = {}
        for m in TRAINING_MODULES:
            part = {k.partition(".")[2]: v for k, v in tensors.items() if k.startswith(m + ".")}
            if part:
                self.training_state[m] = part
        super().load_state_dict({k: v for k, v in tensors.items() if k.partition(".")[0] not in TRAINING_MODULES}, source)

    def import_weights(self, path: Path) -> None:
        """Load reference checkpoints: a folder with ``latest_net_G.pth`` (+ ``latest_net_E.pth``), or the
        generator file itself with the encoder found beside it; see :mod:`.importer`."""
        from .importer import import_reference

        import_reference(self, path)

    # -- export ----------------------------------------------------------------------------------
    def graphs(self) -> list[GraphSpec]:
        from .nets import EncoderGraph, GeneratorGraph, encoder_spec, generator_spec

        cfg = self.model_config
        batch, height, width = self.dims()
        return [
            generator_spec(
                GeneratorGraph(self.modules["generator"]), input_nc=cfg.input_nc, output_nc=cfg.output_nc, nz=cfg.nz,
                batch=batch, height=height, width=width,
            ),
            encoder_spec(EncoderGraph(self.modules["encoder"]), output_nc=cfg.output_nc, nz=cfg.nz, side=cfg.encoder_size, batch=batch),
        ]

    # -- infer -----------------------------------------------------------------------------------
    def infer(self, sessions: Mapping[str, Any], batch: Sequence[StyleRequest], cfg: Config) -> list[StyleResult]:
        from .pipeline import run

        return run(self, sessions, batch, self.parse_config(cfg))  # type: ignore[arg-type]

    # -- train -----------------------------------------------------------------------------------
    def train(self, cfg: TrainConfig, ctx: Any) -> Any:
        from .train import train

        return train(self, cfg, ctx)

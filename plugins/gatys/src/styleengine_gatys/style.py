"""The ``gatys`` Style: neural style by optimisation (variant ``default``) and its fast network (variant ``fast``).

``default``: no graph (the optimisation is a loop of forward/backward passes through VGG, not a graph one
exports); ``infer`` runs it in torch on ``self.device`` (CUDA when available, unless set), needs no trained
weights (the loss network is VGG: ``--weights vgg19.pth``, ``$STYLEENGINE_GATYS_VGG``, or a seeded random VGG
with a warning), and is *long-running*: the server offers it as a task (submit / status / get / cancel).

``fast``: the reference ``TransformerNet`` as graph ``transformer`` (dynamic batch, height and width; RGB in
[0, 1]), trained with ``engine train gatys`` or imported from fast_neural_style's published ``.pth`` files;
it exports and runs on every runtime like any feed-forward style.

Importing this module imports no torch.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from styleengine.spec import Dim, GraphSpec, Tolerance, image_tensor
from styleengine.style import Capability, ImageField, InputContract, Style, StyleRequest, StyleResult

from .config import Config, ModelConfig, TrainConfig
from .importer import FAST_HOW_TO_GET, VGG_ENV, VGG_HOW_TO_GET

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["GatysStyle"]


class GatysStyle(Style):
    name = "gatys"
    aliases = ("neural-style", "fast-neural-style")
    description = "neural style by optimisation (Gatys et al., CVPR 2016); variant fast: Johnson et al.'s feed-forward network"
    capabilities = frozenset({Capability.INFER, Capability.EXPORT, Capability.TRAIN})
    Config = Config
    ModelConfig = ModelConfig
    TrainConfig = TrainConfig
    variants = ("default", "fast")
    inputs = InputContract(
        images=(
            ImageField("content", "the photograph to stylise"),
            ImageField("style", "style image(s); several are blended with style_blend_weights (variant default only)", required=False, multiple=True),
            ImageField("init_image", "optional start image (init=image); variant default only", required=False),
        ),
        value_range=(0.0, 1.0),
        size_multiple=1,
        size_policy="resize",
        min_side=8,
        max_side=4096,
        seeded=True,
    )
    train_data = ("data", "style")
    long_running = True
    #: Two iterations at 32 px: a CPU smoke request (the serving tests); real runs take hundreds.
    tiny_params = {"image_size": 32, "num_iterations": 2}
    weights_hint = f"the fast variant needs a trained TransformerNet: `engine train gatys --style IMAGE --data DIR`, or {FAST_HOW_TO_GET}"

    #: The transformer's exported range.  Kept CPU-validatable (the parity check runs the max point: 4 x 512^2 is
    #: ~0.3 TFLOP); a GPU deployment widens it with an export profile (export/profiles/gatys-fast-gpu.yaml).
    batch = Dim("batch", 1, 1, 4)
    height = Dim("height", 64, 256, 512, multiple_of=4)
    width = Dim("width", 64, 256, 512, multiple_of=4)
    #: Parity of the transformer graph (output in [0, 1]; instance norm keeps ONNX Runtime within ~1e-5).
    tolerance: ClassVar[Tolerance] = Tolerance(atol=2e-4, rtol=1e-3, psnr=70.0)

    def __init__(self, model_config: Any = None, variant: str | None = None, *, device: str | None = None) -> None:
        super().__init__(model_config, variant)
        #: Where the optimisation runs (the default variant has no Session to say so).
        self.device = device
        self._vgg_loaded = False

    @property  # type: ignore[override]
    def needs_weights(self) -> bool:
        """Only the fast network needs trained weights; the optimisation runs on any VGG."""
        return self.variant == "fast"

    # -- modules and weights ---------------------------------------------------------------------
    def build(self) -> dict[str, nn.Module]:
        if self.variant == "fast":
            from .nets import TransformerNet

            return {"transformer": TransformerNet()}
        from styleengine.nn.vgg import NormalisedVGG, VGG16Features, VGG19Features

        from .nets import init_random_vgg_

        mc = self.model_config
        if mc.layout == "normalised":
            if mc.network != "vgg19":
                raise ValueError("gatys: layout=normalised is AdaIN's vgg_normalised, a VGG-19; use network=vgg19")
            vgg: nn.Module = NormalisedVGG()
        elif mc.network == "vgg16":
            vgg = VGG16Features(upto="relu5_3")
        else:
            vgg = VGG19Features(upto="relu5_4")
        return {"vgg": init_random_vgg_(vgg)}

    @property
    def modules(self) -> dict[str, nn.Module]:
        mods = super().modules
        if self.variant == "default" and not self._vgg_loaded and self.weights_path is None and os.environ.get(VGG_ENV):
            self._vgg_loaded = True  # before loading: load_weights reads self.modules
            self.load_weights(os.environ[VGG_ENV])
            mods = super().modules
        return mods

    def import_weights(self, path: Path) -> None:
        from .importer import load_fast_neural_style, read_loss_network

        if self.variant == "fast":
            net = load_fast_neural_style(path)
            self.modules["transformer"].load_state_dict(net.state_dict(), strict=True)
            return
        network, layout, vgg = read_loss_network(path)
        self.model_config = self.ModelConfig(network=network, layout=layout)
        self._modules = {"vgg": vgg.eval().requires_grad_(False)}

    def load_weights(self, path: str | Path) -> None:
        self._vgg_loaded = True
        super().load_weights(path)

    @property
    def random_vgg(self) -> bool:
        return self.variant == "default" and self.weights_path is None

    # -- graphs ---------------------------------------------------------------------------------------
    def graphs(self) -> list[GraphSpec]:
        if self.variant != "fast":
            return []  # the optimisation has no graph
        from .nets import TransformerGraph

        img = dict(batch=self.batch, height=self.height, width=self.width, value_range=(0.0, 1.0))
        return [
            GraphSpec(
                "transformer",
                inputs=(image_tensor("image", **img),),
                outputs=(image_tensor("stylized", **img),),
                tolerance=self.tolerance,
                module=TransformerGraph(self.modules["transformer"]),
                description="fast_neural_style TransformerNet: RGB [0, 1] -> stylised RGB [0, 1] (sides multiples of 4)",
            )
        ]

    # -- inference --------------------------------------------------------------------------------------
    def optimisation_device(self) -> torch.device:
        import torch

        if self.device is not None:
            return torch.device(self.device)
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def infer(self, sessions: Mapping[str, Any], batch: Sequence[StyleRequest], cfg: Any) -> list[StyleResult]:
        from . import pipeline

        if self.variant == "fast":
            return pipeline.run_fast(sessions, batch, self.batch.max)
        cfg = self.parse_config(cfg)
        if batch and all(r.id.startswith("warmup-") for r in batch):
            # The server's warm-up (ids "warmup-*"): it is there to load the loss network and allocate, which one
            # iteration at the warm-up image's own size does; 1000 iterations at 512 px would hold start-up for minutes.
            cfg = cfg.model_copy(update={"num_iterations": 1, "image_size": 0, "scales": 1})
        device = self.optimisation_device()
        vgg = self.modules["vgg"].to(device)
        return pipeline.run_optimisation(vgg, batch, cfg, device=device, lo=self.inputs.min_side, hi=self.inputs.max_side,
                                         random_vgg=self.random_vgg)

    # -- training ---------------------------------------------------------------------------------------
    def train(self, cfg: Any, ctx: Any) -> Any:
        from .train import train

        return train(self, cfg, ctx)


#: The loss network's source, for messages: where to get VGG weights.
VGG_HINT = VGG_HOW_TO_GET

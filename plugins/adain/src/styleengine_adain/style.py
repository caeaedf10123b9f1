"""The ``adain`` Style: arbitrary style transfer with adaptive instance normalisation.

Two graphs -- ``encoder`` (``vgg_normalised`` up to relu4_1, RGB in [0, 1]) and ``decoder`` (relu4_1
features back to RGB) -- and a pipeline between them (:mod:`styleengine_adain.pipeline`) that does the AdaIN
arithmetic, style interpolation, masks, the alpha blend and colour preservation in torch, so every runtime
(torch, ONNX Runtime, TensorRT) runs the same code.  Style statistics are cached per style image
(:class:`styleengine_adain.pipeline.StyleFeatureCache`).

Importing this module imports no torch (the CLI loads every plugin at start-up); torch comes with
``build``, ``graphs``, ``infer`` and the importers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from styleengine.spec import Derived, Dim, GraphSpec, TensorSpec, Tolerance, image_tensor
from styleengine.style import Capability, ImageField, InputContract, Style, StyleRequest, StyleResult

from .config import MULTIPLE, Config, ModelConfig, TrainConfig
from .importer import HOW_TO_GET, PRETRAINED

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn

    from .nets import AdaINNet

__all__ = ["AdaINStyle", "Config", "ModelConfig", "TrainConfig"]


class AdaINStyle(Style):
    name = "adain"
    aliases = ("adain-style",)
    description = "arbitrary style transfer with adaptive instance normalisation (Huang & Belongie, ICCV 2017)"
    capabilities = frozenset({Capability.INFER, Capability.EXPORT, Capability.TRAIN})
    Config = Config
    ModelConfig = ModelConfig
    TrainConfig = TrainConfig
    inputs = InputContract(
        images=(
            ImageField("content", "the photograph to stylise"),
            ImageField("style", "style image; several are blended with style_weights, or with a mask: foreground, background", multiple=True),
            ImageField("mask", "optional mask, same size as the content: white = first style, black = second style (or the content)", required=False),
        ),
        value_range=(0.0, 1.0),
        size_multiple=MULTIPLE,
        size_policy="resize",
        max_side=8192,
    )
    train_data = ("content", "style")
    #: AdaIN has no smaller architecture; a small working size keeps a CPU request quick.
    tiny_params = {"content_size": 64, "style_size": 64}
    pretrained = PRETRAINED
    weights_hint = f"AdaIN needs its reference weights: {HOW_TO_GET}; or train a decoder with `engine train adain --content DIR --style DIR --set vgg=vgg_normalised.pth`"

    batch = Dim("batch", 1, 1, 4)
    height = Dim("height", 64, 512, 1024, multiple_of=MULTIPLE)
    width = Dim("width", 64, 512, 1024, multiple_of=MULTIPLE)
    #: Style images whose statistics are kept (a few KB each).
    style_cache_size: ClassVar[int] = 256
    #: Parity tolerances, measured (see README "Export"): relu4_1 features reach ~1e2-1e3, so the encoder's
    #: absolute slack is scaled to them; the decoder's image is in [0, 1].
    encoder_tolerance: ClassVar[Tolerance] = Tolerance(atol=1e-2, rtol=1e-3, psnr=80.0)
    decoder_tolerance: ClassVar[Tolerance] = Tolerance(atol=1e-4, rtol=1e-3, psnr=80.0)

    def __init__(self, model_config: Any = None, variant: str | None = None, *, cache_size: int | None = None) -> None:
        from .pipeline import StyleFeatureCache

        super().__init__(model_config, variant)
        self.style_cache = StyleFeatureCache(self.style_cache_size if cache_size is None else cache_size)
        #: Bumped whenever the weights change (part of the style-feature cache's key).
        self.weights_version = 0
        self._encoder_file: Path | None = None

    # -- modules and weights ---------------------------------------------------------------------
    def build(self) -> dict[str, nn.Module]:
        from styleengine.nn.vgg import NormalisedVGG

        from .nets import AdaINDecoder, init_random_encoder_

        return {"encoder": init_random_encoder_(NormalisedVGG(upto="relu4_1")), "decoder": AdaINDecoder()}

    def net(self) -> AdaINNet:
        """The modules as an :class:`AdaINNet` (sharing their weights): the reference's test/train network."""
        from .nets import AdaINNet

        return AdaINNet(self.modules["encoder"], self.modules["decoder"])

    def _weights_changed(self) -> None:
        self.weights_version += 1
        self.style_cache.clear()

    def load_state_dict(self, tensors: Mapping[str, torch.Tensor], source: str = "state dict") -> None:
        super().load_state_dict(tensors, source)
        self._weights_changed()

    def import_weights(self, path: Path, vgg: str | Path | None = None) -> None:
        """Reference weights: a folder with ``decoder.pth`` + ``vgg_normalised.pth``, or one decoder file whose
        encoder comes from ``vgg``, ``$STYLEENGINE_ADAIN_VGG`` or a ``vgg_normalised.pth`` beside it."""
        from .importer import encoder_state, find_reference_files, load_reference_decoder

        decoder_file, vgg_file = find_reference_files(path, vgg)
        encoder = encoder_state(vgg_file)
        decoder = load_reference_decoder(decoder_file).state_dict()
        self.modules["encoder"].load_state_dict(encoder, strict=True)
        self.modules["decoder"].load_state_dict(decoder, strict=True)
        self._encoder_file = vgg_file if Path(path).is_file() else None
        self._weights_changed()

    def load_weights(self, path: str | Path) -> None:
        self._encoder_file = None
        super().load_weights(path)
        if self._encoder_file is not None:  # decoder file + separate encoder: the identity covers both
            from styleengine.weights import sha256_path

            combined = hashlib.sha256(f"{self.weights_sha256}:{sha256_path(self._encoder_file)}".encode())
            self.weights_sha256 = combined.hexdigest()

    # -- graphs ---------------------------------------------------------------------------------------
    def _features(self) -> TensorSpec:
        h, w = Derived(self.height, div=MULTIPLE), Derived(self.width, div=MULTIPLE)
        return TensorSpec("features", (self.batch, 512, h, w), value_range=None, description="relu4_1 features")

    def _decoder_example(self, shapes: Mapping[str, tuple[int, ...]], rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Realistic decoder inputs: AdaIN targets of random images through this style's encoder."""
        import numpy as np
        import torch

        from styleengine.nn.adain_ops import calc_mean_std

        from . import pipeline

        n, _, fh, fw = shapes["features"]
        m = MULTIPLE
        content = torch.from_numpy(rng.uniform(0, 1, size=(n, 3, fh * m, fw * m)).astype(np.float32))
        style = torch.from_numpy(rng.uniform(0, 1, size=(1, 3, fh * m, fw * m)).astype(np.float32)) ** 2
        with torch.inference_mode():
            enc = self.modules["encoder"]
            fc, stats = enc(content), calc_mean_std(enc(style))
            feat = pipeline.adain(fc, calc_mean_std(fc), stats)
        return {"features": feat.numpy()}

    def graphs(self) -> list[GraphSpec]:
        from .nets import DecoderGraph, EncoderGraph

        img = dict(batch=self.batch, height=self.height, width=self.width, value_range=(0.0, 1.0))
        return [
            GraphSpec(
                "encoder",
                inputs=(image_tensor("image", **img),),
                outputs=(self._features(),),
                tolerance=self.encoder_tolerance,
                module=EncoderGraph(self.modules["encoder"]),
                description="vgg_normalised up to relu4_1: RGB [0, 1] -> (N, 512, H/8, W/8)",
            ),
            GraphSpec(
                "decoder",
                inputs=(self._features(),),
                outputs=(image_tensor("image", **img),),
                tolerance=self.decoder_tolerance,
                module=DecoderGraph(self.modules["decoder"]),
                example=self._decoder_example,
                description="AdaIN decoder: (N, 512, h, w) -> RGB (N, 3, 8h, 8w)",
            ),
        ]

    # -- inference --------------------------------------------------------------------------------------
    @property
    def size_range(self) -> tuple[int, int]:
        """The sides (min, max) images are processed at: the graphs' height/width range."""
        return max(self.height.min, self.width.min), min(self.height.max, self.width.max)

    def infer(self, sessions: Mapping[str, Any], batch: Sequence[StyleRequest], cfg: Config) -> list[StyleResult]:
        from .pipeline import run

        return run(self, sessions, batch, self.parse_config(cfg))  # type: ignore[arg-type]

    # -- training ---------------------------------------------------------------------------------------
    def train(self, cfg: TrainConfig, ctx: Any) -> Any:
        from .train import train

        return train(self, cfg, ctx)

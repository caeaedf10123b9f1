"""The ``adain`` style: arbitrary style transfer with adaptive instance normalisation.

Two graphs -- ``encoder`` (``vgg_normalised`` up to relu4_1, RGB in [0, 1]) and ``decoder`` (relu4_1
features back to RGB) -- and a pipeline between them (:mod:`styleengine_adain.pipeline`) that does the AdaIN
arithmetic, style interpolation, masks, the alpha blend and colour preservation in torch, so every runtime
(torch, ONNX Runtime, TensorRT) runs the same code.  Style statistics are cached per style image
(:mod:`styleengine_adain.cache`).
"""

from __future__ import annotations

import hashlib
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator
from torch import nn

from styleengine.nn.adain_ops import calc_mean_std, coral
from styleengine.nn.vgg import NormalisedVGG
from styleengine.preprocess import SizeError, from_tensor, resize
from styleengine.pull import Pretrained
from styleengine.spec import Derived, Dim, GraphSpec, TensorSpec, Tolerance, image_tensor
from styleengine.style import Capability, ImageField, InputContract, Style, StyleConfig, StyleRequest, StyleResult

from . import pipeline
from .cache import StyleFeatureCache, image_key
from .net import BATCH_SIZE, CONTENT_WEIGHT, LEARNING_RATE, LR_DECAY, MAX_ITER, STYLE_WEIGHT, AdaINDecoder, AdaINNet, init_random_encoder_
from .reference import HOW_TO_GET, RELEASE, encoder_state, find_reference_files


class ModelConfig(StyleConfig):
    """AdaIN has no architecture options: the encoder is ``vgg_normalised`` up to relu4_1, the decoder its mirror."""


class Config(StyleConfig):
    """Per-request parameters (the references' test options)."""

    alpha: float = Field(1.0, ge=0.0, le=1.0, description="degree of stylisation: 0 = the content's reconstruction, 1 = full style")
    style_weights: tuple[Annotated[float, Field(ge=0.0, le=1e6)], ...] | None = Field(
        None, min_length=1, max_length=16,
        description="interpolation weights, one per style image (divided by their sum); default: equal weights",
    )
    preserve_color: bool = Field(False, description="keep the content's colours (CORAL on the style image, as the references)")
    content_size: int = Field(512, ge=0, le=4096, description="short side the content is processed at (0 = keep its size)")
    style_size: int = Field(512, ge=0, le=4096, description="short side the style image(s) are encoded at (0 = keep)")
    crop: bool = Field(False, description="centre-crop the style image(s) to a square first (the references' --crop)")

    @field_validator("style_weights")
    @classmethod
    def _positive_sum(cls, v: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if v is not None and sum(v) <= 0:
            raise ValueError("style_weights must have a positive sum")
        return v


class TrainConfig(StyleConfig):
    """Training options (naoto0804/pytorch-AdaIN ``train.py`` defaults)."""

    model: ModelConfig = ModelConfig()
    vgg: str | None = Field(None, description="vgg_normalised.pth (or an AdaIN checkpoint) for the frozen encoder")
    allow_random_encoder: bool = Field(False, description="train against a random encoder (tests only: the result cannot stylise)")
    lr: float = Field(LEARNING_RATE, gt=0.0, le=1.0)
    lr_decay: float = Field(LR_DECAY, ge=0.0, le=1.0)
    max_iter: int = Field(MAX_ITER, ge=1, le=100_000_000)
    batch_size: int = Field(BATCH_SIZE, ge=1, le=512)
    content_weight: float = Field(CONTENT_WEIGHT, ge=0.0, le=1e6)
    style_weight: float = Field(STYLE_WEIGHT, ge=0.0, le=1e6)
    load_size: int = Field(512, ge=8, le=4096, description="images are resized to load_size x load_size ...")
    crop_size: int = Field(256, ge=8, le=4096, multiple_of=8, description="... then a random crop_size square is taken")
    num_workers: int = Field(4, ge=0, le=64, description="threads decoding the next batch while the current one trains")
    preflight: Literal["full", "header"] = "full"
    samples: int = Field(4, ge=1, le=16, description="rows (content | style | output) in each sample grid")

    @model_validator(mode="after")
    def _crop_fits(self) -> TrainConfig:
        if self.crop_size > self.load_size:
            raise ValueError(f"crop_size {self.crop_size} is larger than load_size {self.load_size}")
        return self


class EncoderGraph(nn.Module):
    """``image`` (N, 3, H, W) RGB in [0, 1] -> ``features`` (N, 512, H/8, W/8), relu4_1."""

    def __init__(self, encoder: NormalisedVGG) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.encoder(image)


class DecoderGraph(nn.Module):
    """``features`` (N, 512, h, w) -> ``image`` (N, 3, 8h, 8w), RGB nominally in [0, 1] (not clamped)."""

    def __init__(self, decoder: AdaINDecoder) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.decoder(features)


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
        size_multiple=pipeline.MULTIPLE,
        size_policy="resize",
        max_side=8192,
    )
    train_data = ("content", "style")
    pretrained = {
        "default": Pretrained(
            url=f"{RELEASE}/decoder.pth",
            # Not downloaded by us (no network here): the sha256 values are the ones several independent projects
            # record for these release assets (vgg_normalised.pth is 80,102,481 bytes).  A mismatch fails the pull.
            sha256="379ca41d59f3a37eed3599bbbc2560c19da5c458870a5ffd3a9dd41aa88f9472",
            description="naoto0804/pytorch-AdaIN release v0.0.0: decoder.pth + vgg_normalised.pth (converted from the Lua models)",
            companions=(
                Pretrained(url=f"{RELEASE}/vgg_normalised.pth", sha256="804ca2835ecf7539f0cd2a7ac3c18ce81e6f8468969ae7117ac0c148d286bb4a"),
            ),
        )
    }
    weights_hint = f"AdaIN needs its reference weights: {HOW_TO_GET}; or train a decoder with `engine train adain --content DIR --style DIR --set vgg=vgg_normalised.pth`"

    batch = Dim("batch", 1, 1, 4)
    height = Dim("height", 64, 512, 1024, multiple_of=pipeline.MULTIPLE)
    width = Dim("width", 64, 512, 1024, multiple_of=pipeline.MULTIPLE)
    #: Style images whose statistics are kept (a few KB each).
    style_cache_size: ClassVar[int] = 256
    #: Parity tolerances, measured (see README "Export"): relu4_1 features reach ~1e2-1e3, so the encoder's
    #: absolute slack is scaled to them; the decoder's image is in [0, 1].
    encoder_tolerance: ClassVar[Tolerance] = Tolerance(atol=1e-2, rtol=1e-3, psnr=80.0)
    decoder_tolerance: ClassVar[Tolerance] = Tolerance(atol=1e-4, rtol=1e-3, psnr=80.0)

    def __init__(self, model_config: Any = None, variant: str | None = None, *, cache_size: int | None = None) -> None:
        super().__init__(model_config, variant)
        self.style_cache = StyleFeatureCache(self.style_cache_size if cache_size is None else cache_size)
        self._weights_version = 0
        self._encoder_file: Path | None = None

    # -- modules and weights ---------------------------------------------------------------------
    def build(self) -> dict[str, nn.Module]:
        return {"encoder": init_random_encoder_(NormalisedVGG(upto="relu4_1")), "decoder": AdaINDecoder()}

    def net(self) -> AdaINNet:
        """The modules as an :class:`AdaINNet` (sharing their weights): the reference's test/train network."""
        return AdaINNet(self.modules["encoder"], self.modules["decoder"])

    def _weights_changed(self) -> None:
        self._weights_version += 1
        self.style_cache.clear()

    def load_state_dict(self, tensors: Mapping[str, torch.Tensor], source: str = "state dict") -> None:
        super().load_state_dict(tensors, source)
        self._weights_changed()

    def import_weights(self, path: Path, vgg: str | Path | None = None) -> None:
        """Reference weights: a folder with ``decoder.pth`` + ``vgg_normalised.pth``, or one decoder file whose
        encoder comes from ``vgg``, ``$STYLEENGINE_ADAIN_VGG`` or a ``vgg_normalised.pth`` beside it."""
        from .net import load_reference_decoder

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
        h, w = Derived(self.height, div=pipeline.MULTIPLE), Derived(self.width, div=pipeline.MULTIPLE)
        return TensorSpec("features", (self.batch, 512, h, w), value_range=None, description="relu4_1 features")

    def _decoder_example(self, shapes: Mapping[str, tuple[int, ...]], rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Realistic decoder inputs: AdaIN targets of random images through this style's encoder."""
        n, _, fh, fw = shapes["features"]
        m = pipeline.MULTIPLE
        content = torch.from_numpy(rng.uniform(0, 1, size=(n, 3, fh * m, fw * m)).astype(np.float32))
        style = torch.from_numpy(rng.uniform(0, 1, size=(1, 3, fh * m, fw * m)).astype(np.float32)) ** 2
        with torch.inference_mode():
            enc = self.modules["encoder"]
            fc, stats = enc(content), calc_mean_std(enc(style))
            feat = pipeline.adain(fc, calc_mean_std(fc), stats)
        return {"features": feat.numpy()}

    def graphs(self) -> list[GraphSpec]:
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

    def _run_grouped(self, session: Any, in_name: str, out_name: str, tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Run ``session`` on one-sample tensors, stacking those of the same shape (up to the batch Dim's max)."""
        groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for i, t in enumerate(tensors):
            groups[tuple(t.shape[1:])].append(i)
        out: list[torch.Tensor | None] = [None] * len(tensors)
        step = self.batch.max
        for idx in groups.values():
            for k in range(0, len(idx), step):
                chunk = idx[k : k + step]
                res = session.run({in_name: torch.cat([tensors[i] for i in chunk])})[out_name]
                for j, i in enumerate(chunk):
                    out[i] = res[j : j + 1]
        return out  # type: ignore[return-value]

    def _session_id(self, session: Any) -> tuple[Any, ...]:
        return (getattr(session, "runtime", "?"), str(getattr(session, "device", "?")), getattr(session, "precision", None), self._weights_version)

    def _check_request(self, req: StyleRequest) -> tuple[np.ndarray, list[np.ndarray], np.ndarray | None]:
        if "content" not in req.images:
            raise ValueError("adain: the request has no content image")
        content = req.image("content")
        styles = req.images.get("style")
        if styles is None or (isinstance(styles, list) and not styles):
            raise ValueError("adain: the request has no style image (give one or several under 'style')")
        styles = list(styles) if isinstance(styles, list | tuple) else [styles]
        mask = req.images.get("mask")
        if isinstance(mask, list):
            mask = mask[0] if mask else None
        lo_side, hi_side = self.inputs.min_side, self.inputs.max_side
        for what, img in [("content", content), *(("style", s) for s in styles), *((("mask", mask),) if mask is not None else ())]:
            h, w = img.shape[:2]
            if min(h, w) < lo_side or max(h, w) > hi_side:
                raise SizeError(f"adain: {what} image is {w}x{h}; sides must be within [{lo_side}, {hi_side}]")
        return content, styles, mask

    def infer(self, sessions: Mapping[str, Any], batch: Sequence[StyleRequest], cfg: Config) -> list[StyleResult]:
        t0 = time.perf_counter()
        enc, dec = sessions["encoder"], sessions["decoder"]
        lo, hi = self.size_range
        checked = [self._check_request(req) for req in batch]
        for _, styles, mask in checked:
            if mask is not None and (len(styles) > 2 or cfg.style_weights is not None):
                raise ValueError("adain: with a mask give one style (foreground only) or two (foreground, background), and no style_weights")
        weights = [pipeline.normalise_weights(cfg.style_weights, len(s)) if m is None else None for _, s, m in checked]
        contents = [pipeline.prepare_image(c, cfg.content_size, lo, hi) for c, _, _ in checked]
        t1 = time.perf_counter()
        content_feats = self._run_grouped(enc, "image", "features", contents)
        t2 = time.perf_counter()

        sid = self._session_id(enc)
        settings = (cfg.style_size, cfg.crop, lo, hi)
        infos: list[dict[str, Any]] = []
        targets = []
        for (_, styles, mask), w, content, fc in zip(checked, weights, contents, content_feats, strict=True):
            stats, hits, misses = [], 0, 0
            for s in styles:
                key = None if cfg.preserve_color else (image_key(s), settings, sid)
                cached = self.style_cache.get(key) if key is not None else None
                if cached is None:
                    st = pipeline.prepare_image(s, cfg.style_size, lo, hi, crop=cfg.crop)
                    if cfg.preserve_color:
                        st = coral(st, content)
                    cached = calc_mean_std(enc.run({"image": st})["features"])
                    if key is not None:
                        self.style_cache.put(key, cached)
                        misses += 1
                else:
                    hits += 1
                stats.append(cached)
            fmask = pipeline.feature_mask(pipeline.mask_tensor(mask), fc.shape[-2:], fc.device) if mask is not None else None
            targets.append(pipeline.target_features(fc, stats, weights=w, mask=fmask, alpha=cfg.alpha))
            infos.append(
                {
                    "working_size": list(content.shape[-2:]),
                    "styles": len(styles),
                    "style_weights": w,
                    "mask": mask is not None,
                    "style_cache": "bypass" if cfg.preserve_color else ("hit" if not misses else "miss" if not hits else "partial"),
                    "style_cache_hits": hits,
                    "style_cache_misses": misses,
                }
            )
        t3 = time.perf_counter()
        images = self._run_grouped(dec, "features", "image", targets)
        t4 = time.perf_counter()
        results = []
        for (content, _, _), out, info, req in zip(checked, images, infos, batch, strict=True):
            out = resize(out.float().cpu(), tuple(content.shape[:2]))
            img = from_tensor(out, (0.0, 1.0)).astype(np.float32, copy=False)
            results.append(StyleResult(img, seed=req.seed, info=info))
        t5 = time.perf_counter()
        timings = {
            "prepare_ms": (t1 - t0) * 1e3,
            "encode_content_ms": (t2 - t1) * 1e3,
            "styles_ms": (t3 - t2) * 1e3,
            "decode_ms": (t4 - t3) * 1e3,
            "finish_ms": (t5 - t4) * 1e3,
            "total_ms": (t5 - t0) * 1e3,
        }
        for r in results:
            r.timings = dict(timings)
        return results

    # -- training ---------------------------------------------------------------------------------------
    def train(self, cfg: TrainConfig, ctx: Any) -> Any:
        from .train import train

        return train(self, cfg, ctx)

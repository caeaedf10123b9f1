"""Export-friendly wrappers of the SD components and their :class:`~styleengine.spec.GraphSpec` s.

Each wrapper takes plain tensors by name and returns plain tensors, so every runtime can serve it:

* ``text_encoder``: ``input_ids`` int64 ``[B, 77]`` → ``last_hidden_state`` ``[B, 77, D]`` (the final
  layer, after the final layer norm: what SD 1.x conditions on; no CLIP-skip).
* ``unet``: ``sample`` ``[N, C, h, w]``, ``timestep`` float32 ``[N]``, ``encoder_hidden_states``
  ``[N, 77, D]`` → ``noise_pred`` ``[N, 4, h, w]``.  ``N`` is the guidance-expanded batch (dim
  ``unet_batch`` = multiplicity × request batch: 2 for text CFG, 3 for InstructPix2Pix); the timestep is
  per sample so one call may serve samples at different steps.  With ControlNets the UNet graph also takes
  the summed ControlNet residuals (``down_residual_<i>``, ``mid_residual``).
* ``vae_encoder``: ``image`` in [-1, 1] ``[B, 3, H, W]`` → ``latent_mean`` and ``latent_std`` of the VAE
  posterior, *unscaled* (diffusers' ``vae.encode(x).latent_dist.mean / .std``).  Both moments rather than a
  sample: InstructPix2Pix conditions on the mode (= mean), img2img draws ``mean + std * noise`` with the
  request's own generator in the loop, so no randomness lives inside a graph.
* ``vae_decoder``: unscaled ``latents`` ``[B, 4, h, w]`` → ``image`` ``[B, 3, 8h, 8w]`` (≈ [-1, 1], not
  clamped).  The loop divides by ``scaling_factor`` before calling it.
* ``controlnet`` (``controlnet_<i>`` for several): ``sample``, ``timestep``, ``encoder_hidden_states``,
  ``controlnet_cond`` in [0, 1] ``[N, 3, H, W]``, ``conditioning_scale`` (scalar) → the residuals.

Attention processors are pinned **while a graph is exported** (each wrapper's ``export_context()``, which the
engine's ONNX export enters): diffusers' classic ``AttnProcessor`` (explicit ``baddbmm`` + softmax) and
transformers' ``eager`` attention, which every exporter and TensorRT parse the same way.  Afterwards the
modules get their own processors back (SDPA by default), so the torch runtime, which runs these very modules,
keeps the fast kernels: pinning them for good made the torch UNet ~3x slower than diffusers on the same model.

The VAE graphs default to fp32 only: the SD 1.x VAE's activations exceed fp16's range at large sizes
(the reason for community "fp16-fix" VAEs); pass ``vae_precisions`` for a VAE known to be fp16-safe.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

import numpy as np
import torch
from torch import nn

from ..spec import Dim, GraphSpec, TensorSpec, Tolerance

#: Per-graph parity tolerances of an fp32 runtime (ONNX Runtime, TensorRT fp32) against torch eager fp32.
#: See :data:`TOLERANCE_NOTES` for the measurements behind them.  Reduced-precision builds (fp16 / bf16
#: engines) need looser, per-precision tolerances; those belong in the export profile.
TOLERANCES: dict[str, Tolerance] = {
    "text_encoder": Tolerance(atol=1e-3, rtol=1e-3, psnr=80.0),
    "unet": Tolerance(atol=1e-3, rtol=1e-3, psnr=70.0),
    "controlnet": Tolerance(atol=1e-3, rtol=1e-3, psnr=70.0),
    "vae_encoder": Tolerance(atol=1e-3, rtol=1e-3, psnr=80.0),
    "vae_decoder": Tolerance(atol=5e-3, rtol=1e-3, psnr=60.0),
}

TOLERANCE_NOTES = """
Measured: ONNX Runtime 1.32 CPU vs torch 2.13 eager CPU, fp32, dynamo exporter (opset 18), worst over the
min/opt/max points (batch 1-2 requests, latents 8-16 px), max |diff| / PSNR:

  graph         tiny components      SD 1.5-sized, random weights
  text_encoder  1.3e-6 / 148 dB      4.3e-6 / 139 dB
  unet          1.7e-6 / 137 dB      2.4e-6 / 132 dB   (8-channel InstructPix2Pix UNet, tiny: 1.5e-6)
  controlnet    6.0e-7 / 140 dB      -
  vae_encoder   1.5e-6 / 136 dB      2.2e-6 / 130 dB
  vae_decoder   1.7e-5 / 123 dB      2.3e-5 / 118 dB

The tolerances sit ~100-400x above those (absolute) so that real weights (CLIP's hidden states reach
~30, the VAE decoder's activations ~1e3), larger latents and GPU kernels (TF32 is on by default in
TensorRT fp32 builds: ~1e-3 relative) pass, while a wrong graph (a dropped input, a broken attention,
a mis-scaled latent) fails by orders of magnitude.  The decoder's 5e-3 is under one 8-bit level (1/127.5)
of the [-1, 1] image.
"""


def pin_export_attention(*modules: Any) -> None:
    """Pin export-friendly attention for good: diffusers ``AttnProcessor`` / transformers ``eager``.
    Prefer :func:`export_attention`, which puts the previous processors back."""
    for m in modules:
        if m is None:
            continue
        if hasattr(m, "set_default_attn_processor"):
            m.set_default_attn_processor()
        elif hasattr(m, "set_attn_implementation"):
            m.set_attn_implementation("eager")


@contextmanager
def export_attention(*modules: Any) -> Iterator[None]:
    """Export-friendly attention on ``modules`` while the block runs; their own processors afterwards."""
    saved: list[tuple[Any, str, Any]] = []
    for m in modules:
        if m is None:
            continue
        if hasattr(m, "attn_processors") and hasattr(m, "set_attn_processor"):
            saved.append((m, "processors", dict(m.attn_processors)))
        elif hasattr(m, "set_attn_implementation"):
            saved.append((m, "implementation", getattr(m.config, "_attn_implementation", None)))
    pin_export_attention(*modules)
    try:
        yield
    finally:
        for m, kind, value in reversed(saved):
            if kind == "processors":
                m.set_attn_processor(value)
            elif value is not None:
                m.set_attn_implementation(value)


class _ExportsWithClassicAttention:
    """Mixin of the graph wrappers: the engine's export enters ``export_context()`` around tracing."""

    pin_attention: bool = True

    def export_context(self) -> Any:
        if not self.pin_attention:
            return nullcontext()
        return export_attention(*self.children())  # type: ignore[attr-defined]


# -- wrappers -----------------------------------------------------------------------------------------


class TextEncoderGraph(_ExportsWithClassicAttention, nn.Module):
    def __init__(self, text_encoder: nn.Module) -> None:
        super().__init__()
        self.text_encoder = text_encoder

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.text_encoder(input_ids=input_ids)[0]


class UNetGraph(_ExportsWithClassicAttention, nn.Module):
    """``UNet2DConditionModel`` with positional, tensor-only inputs (and optional ControlNet residuals).

    The residuals are explicit keyword parameters (exporters bind inputs by signature): up to
    :data:`MAX_RESIDUALS` down residuals (SD 1.x / 2.x have 12) and the mid-block residual.
    """

    def __init__(self, unet: nn.Module, num_residuals: int = 0) -> None:
        super().__init__()
        if num_residuals > MAX_RESIDUALS:
            raise ValueError(f"UNet has {num_residuals} skip connections; the graph wrapper supports {MAX_RESIDUALS}")
        self.unet = unet
        self.num_residuals = num_residuals

    def forward(
        self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor,
        down_residual_0: torch.Tensor | None = None, down_residual_1: torch.Tensor | None = None,
        down_residual_2: torch.Tensor | None = None, down_residual_3: torch.Tensor | None = None,
        down_residual_4: torch.Tensor | None = None, down_residual_5: torch.Tensor | None = None,
        down_residual_6: torch.Tensor | None = None, down_residual_7: torch.Tensor | None = None,
        down_residual_8: torch.Tensor | None = None, down_residual_9: torch.Tensor | None = None,
        down_residual_10: torch.Tensor | None = None, down_residual_11: torch.Tensor | None = None,
        mid_residual: torch.Tensor | None = None,
    ) -> torch.Tensor:
        extra: dict[str, Any] = {}
        if self.num_residuals:
            given = locals()
            extra["down_block_additional_residuals"] = tuple(
                given[f"down_residual_{i}"] for i in range(self.num_residuals)
            )
            extra["mid_block_additional_residual"] = mid_residual
        return self.unet(sample, timestep, encoder_hidden_states=encoder_hidden_states, return_dict=False, **extra)[0]


MAX_RESIDUALS = 12


class ControlNetGraph(_ExportsWithClassicAttention, nn.Module):
    def __init__(self, controlnet: nn.Module) -> None:
        super().__init__()
        self.controlnet = controlnet

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor,
                controlnet_cond: torch.Tensor, conditioning_scale: torch.Tensor) -> tuple[torch.Tensor, ...]:
        down, mid = self.controlnet(
            sample, timestep, encoder_hidden_states=encoder_hidden_states, controlnet_cond=controlnet_cond,
            conditioning_scale=conditioning_scale, guess_mode=False, return_dict=False,
        )
        return (*down, mid)


class VaeEncoderGraph(_ExportsWithClassicAttention, nn.Module):
    def __init__(self, vae: nn.Module) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dist = self.vae.encode(image).latent_dist
        return dist.mean, dist.std


class VaeDecoderGraph(_ExportsWithClassicAttention, nn.Module):
    def __init__(self, vae: nn.Module) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latents, return_dict=False)[0]


# -- specs --------------------------------------------------------------------------------------------


def residual_layout(unet_config: Any) -> list[tuple[int, int]]:
    """(channels, downscale) of each ControlNet down residual, in the UNet's skip-connection order."""
    channels = list(unet_config.block_out_channels)
    lpb = unet_config.layers_per_block
    layers = [lpb] * len(channels) if isinstance(lpb, int) else list(lpb)
    out = [(channels[0], 1)]
    for i, c in enumerate(channels):
        out += [(c, 2**i)] * layers[i]
        if i < len(channels) - 1:
            out.append((c, 2 ** (i + 1)))
    return out


def _scaled(d: Dim, name: str, factor: int, divide: bool = False) -> Dim:
    if divide:
        return Dim(name, d.min // factor, d.opt // factor, d.max // factor, max(1, d.multiple_of // factor))
    return Dim(name, d.min * factor, d.opt * factor, d.max * factor, d.multiple_of * factor)


def _randn_example(specs: Sequence[TensorSpec], overrides: Mapping[str, Any] | None = None):
    """Example factory: N(0, 1) floats, uniform integer ids, uniform timesteps in [0, 1000)."""

    def make(shapes: Mapping[str, tuple[int, ...]], rng: np.random.Generator) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for t in specs:
            shape = shapes[t.name]
            if t.dtype.startswith("int"):
                lo, hi = t.value_range or (0, 2)
                out[t.name] = rng.integers(int(lo), int(hi), size=shape).astype(t.dtype)
            elif t.name == "timestep":
                out[t.name] = rng.integers(0, 1000, size=shape).astype(np.float32)
            elif t.value_range is not None:
                out[t.name] = rng.uniform(*t.value_range, size=shape).astype(np.float32)
            else:
                out[t.name] = rng.standard_normal(size=shape).astype(np.float32)
        return out

    return make


def text_encoder_spec(text_encoder: Any, *, batch: Dim, max_length: int = 77) -> GraphSpec:
    hidden = int(text_encoder.config.hidden_size)
    vocab = int(text_encoder.config.vocab_size)
    inputs = (TensorSpec("input_ids", (batch, max_length), dtype="int64", value_range=(0, vocab)),)
    return GraphSpec(
        name="text_encoder",
        inputs=inputs,
        outputs=(TensorSpec("last_hidden_state", (batch, max_length, hidden)),),
        tolerance=TOLERANCES["text_encoder"],
        module=TextEncoderGraph(text_encoder).eval(),
        example=_randn_example(inputs),
        batch_dim=batch.name,
        description="CLIP text encoder: token ids → last hidden state (SD 1.x conditioning)",
    )


def unet_spec(unet: Any, *, unet_batch: Dim, latent_h: Dim, latent_w: Dim, max_length: int = 77,
              num_residuals: int = 0) -> GraphSpec:
    cfg = unet.config
    d = int(cfg.cross_attention_dim)
    inputs = [
        TensorSpec("sample", (unet_batch, int(cfg.in_channels), latent_h, latent_w)),
        TensorSpec("timestep", (unet_batch,), value_range=(0.0, 999.0)),
        TensorSpec("encoder_hidden_states", (unet_batch, max_length, d)),
    ]
    if num_residuals:
        for i, (ch, s) in enumerate(residual_layout(cfg)):
            h = latent_h if s == 1 else _scaled(latent_h, f"{latent_h.name}_div{s}", s, divide=True)
            w = latent_w if s == 1 else _scaled(latent_w, f"{latent_w.name}_div{s}", s, divide=True)
            inputs.append(TensorSpec(f"down_residual_{i}", (unet_batch, ch, h, w)))
        s = 2 ** (len(cfg.block_out_channels) - 1)
        inputs.append(TensorSpec("mid_residual", (
            unet_batch, int(cfg.block_out_channels[-1]),
            _scaled(latent_h, f"{latent_h.name}_div{s}", s, divide=True),
            _scaled(latent_w, f"{latent_w.name}_div{s}", s, divide=True),
        )))
    return GraphSpec(
        name="unet",
        inputs=tuple(inputs),
        outputs=(TensorSpec("noise_pred", (unet_batch, int(cfg.out_channels), latent_h, latent_w)),),
        tolerance=TOLERANCES["unet"],
        module=UNetGraph(unet, num_residuals=len(residual_layout(cfg)) if num_residuals else 0).eval(),
        example=_randn_example(inputs),
        batch_dim=unet_batch.name,
        description="denoising UNet (epsilon / v prediction per the scheduler config); batch = guidance × requests",
    )


def controlnet_spec(controlnet: Any, unet: Any, *, name: str, unet_batch: Dim, latent_h: Dim, latent_w: Dim,
                    scale_factor: int = 8, max_length: int = 77) -> GraphSpec:
    cfg = unet.config
    height = _scaled(latent_h, "height", scale_factor)
    width = _scaled(latent_w, "width", scale_factor)
    inputs = (
        TensorSpec("sample", (unet_batch, int(controlnet.config.in_channels), latent_h, latent_w)),
        TensorSpec("timestep", (unet_batch,), value_range=(0.0, 999.0)),
        TensorSpec("encoder_hidden_states", (unet_batch, max_length, int(cfg.cross_attention_dim))),
        TensorSpec("controlnet_cond", (unet_batch, int(controlnet.config.conditioning_channels), height, width),
                   value_range=(0.0, 1.0)),
        TensorSpec("conditioning_scale", (), value_range=(0.0, 2.0)),
    )
    outputs = []
    for i, (ch, s) in enumerate(residual_layout(cfg)):
        outputs.append(TensorSpec(f"down_residual_{i}", (unet_batch, ch, f"{latent_h.name}_div{s}", f"{latent_w.name}_div{s}")))
    s = 2 ** (len(cfg.block_out_channels) - 1)
    outputs.append(TensorSpec("mid_residual", (unet_batch, int(cfg.block_out_channels[-1]),
                                               f"{latent_h.name}_div{s}", f"{latent_w.name}_div{s}")))
    return GraphSpec(
        name=name,
        inputs=inputs,
        outputs=tuple(outputs),
        tolerance=TOLERANCES["controlnet"],
        module=ControlNetGraph(controlnet).eval(),
        example=_randn_example(inputs),
        batch_dim=unet_batch.name,
        description="ControlNet: residuals for the UNet's skip connections (summed over ControlNets)",
    )


def vae_encoder_spec(vae: Any, *, batch: Dim, height: Dim, width: Dim,
                     precisions: tuple[str, ...] = ("fp32",)) -> GraphSpec:
    c = int(vae.config.latent_channels)
    inputs = (TensorSpec("image", (batch, int(vae.config.in_channels), height, width), value_range=(-1.0, 1.0)),)
    return GraphSpec(
        name="vae_encoder",
        inputs=inputs,
        outputs=(TensorSpec("latent_mean", (batch, c, "latent_height", "latent_width")),
                 TensorSpec("latent_std", (batch, c, "latent_height", "latent_width"))),
        tolerance=TOLERANCES["vae_encoder"],
        module=VaeEncoderGraph(vae).eval(),
        batch_dim=batch.name,
        precisions=precisions,
        description="VAE encoder: image in [-1, 1] → posterior mean and std (unscaled latents)",
    )


def vae_decoder_spec(vae: Any, *, batch: Dim, latent_h: Dim, latent_w: Dim,
                     precisions: tuple[str, ...] = ("fp32",)) -> GraphSpec:
    c = int(vae.config.latent_channels)
    inputs = (TensorSpec("latents", (batch, c, latent_h, latent_w)),)
    return GraphSpec(
        name="vae_decoder",
        inputs=inputs,
        outputs=(TensorSpec("image", (batch, int(vae.config.out_channels), "height", "width"), value_range=(-1.0, 1.0)),),
        tolerance=TOLERANCES["vae_decoder"],
        module=VaeDecoderGraph(vae).eval(),
        example=_randn_example(inputs),
        batch_dim=batch.name,
        precisions=precisions,
        description="VAE decoder: unscaled latents → image (≈[-1, 1], unclamped)",
    )


def diffusion_graphs(
    components: Any,
    *,
    guidance_multiplicity: int = 2,
    batch_range: tuple[int, int, int] = (1, 2, 4),
    latent_range: tuple[int, int, int] = (64, 64, 96),
    latent_multiple: int = 8,
    include: Sequence[str] = ("text_encoder", "unet", "vae_encoder", "vae_decoder", "controlnet"),
    vae_precisions: tuple[str, ...] = ("fp32",),
    pin_attention: bool = True,
) -> list[GraphSpec]:
    """GraphSpecs for a :class:`~styleengine.diffusion.components.Components`.

    ``batch_range`` (min, opt, max) counts *requests*; the UNet / ControlNet batch dim ``unet_batch`` is
    ``guidance_multiplicity`` times it (1: no guidance, 2: text CFG, 3: InstructPix2Pix).  ``latent_range``
    is the latent height/width range (pixels / 8), each a multiple of ``latent_multiple`` (8 keeps every
    SD 1.x UNet level even).  ``include`` selects graphs; ``controlnet`` only yields specs when the
    components have ControlNets (``controlnet`` for one, ``controlnet_<i>`` for several), and then the UNet
    graph takes residual inputs.  ``pin_attention``: export the graphs with classic attention (the modules keep
    their own processors otherwise, and always outside the export).
    """
    if guidance_multiplicity not in (1, 2, 3):
        raise ValueError(f"guidance_multiplicity must be 1, 2 or 3, got {guidance_multiplicity}")
    m = guidance_multiplicity
    bmin, bopt, bmax = batch_range
    batch = Dim("batch", bmin, bopt, bmax)
    unet_batch = Dim("unet_batch", m * bmin, m * bopt, m * bmax, multiple_of=m)
    lmin, lopt, lmax = latent_range
    latent_h = Dim("latent_height", lmin, lopt, lmax, multiple_of=latent_multiple)
    latent_w = Dim("latent_width", lmin, lopt, lmax, multiple_of=latent_multiple)
    f = components.vae_scale_factor
    L = components.max_length
    with_control = "controlnet" in include and bool(components.controlnets)
    specs: list[GraphSpec] = []
    if "text_encoder" in include:
        specs.append(text_encoder_spec(components.text_encoder, batch=batch, max_length=L))
    if "unet" in include:
        specs.append(unet_spec(components.unet, unet_batch=unet_batch, latent_h=latent_h, latent_w=latent_w,
                               max_length=L, num_residuals=int(with_control)))
    if "vae_encoder" in include:
        specs.append(vae_encoder_spec(components.vae, batch=batch, height=_scaled(latent_h, "height", f),
                                      width=_scaled(latent_w, "width", f), precisions=vae_precisions))
    if "vae_decoder" in include:
        specs.append(vae_decoder_spec(components.vae, batch=batch, latent_h=latent_h, latent_w=latent_w,
                                      precisions=vae_precisions))
    if with_control:
        many = len(components.controlnets) > 1
        for i, cn in enumerate(components.controlnets):
            specs.append(controlnet_spec(cn, components.unet, name=f"controlnet_{i}" if many else "controlnet",
                                         unet_batch=unet_batch, latent_h=latent_h, latent_w=latent_w,
                                         scale_factor=f, max_length=L))
    for spec in specs:  # classic attention while exported (see export_context), never left on the modules
        if isinstance(spec.module, _ExportsWithClassicAttention):
            spec.module.pin_attention = pin_attention
    return specs

"""Helpers shared by the diffusion tests (conftest puts this folder on sys.path)."""

from __future__ import annotations


def torch_sessions(components, **graph_kwargs):
    """TorchSessions for every graph of ``diffusion_graphs(components, ...)``, keyed by graph name."""
    from styleengine.diffusion import diffusion_graphs
    from styleengine.runtime.base import SessionOptions
    from styleengine.runtime.torch import TorchSession

    graph_kwargs.setdefault("batch_range", (1, 2, 4))
    graph_kwargs.setdefault("latent_range", (8, 16, 16))
    specs = diffusion_graphs(components, **graph_kwargs)
    return {s.name: TorchSession(s, SessionOptions()) for s in specs}


def sd_pipeline(components, cls_name="StableDiffusionPipeline", **extra):
    """A diffusers pipeline over the *same* modules (the reference our loop must reproduce)."""
    import diffusers

    cls = getattr(diffusers, cls_name)
    pipe = cls(
        vae=components.vae, text_encoder=components.text_encoder, tokenizer=components.tokenizer,
        unet=components.unet, scheduler=components.scheduler, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False, **extra,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def assert_close(got, ref, rel=1e-5, what="output"):
    """|got - ref| <= rel * max(1, max|ref|) element-wise (latents of random tiny models reach ~50)."""
    import torch

    scale = max(1.0, float(ref.abs().max()))
    err = float((got - ref).abs().max())
    assert got.shape == ref.shape, f"{what}: shape {tuple(got.shape)} != {tuple(ref.shape)}"
    assert torch.isfinite(got).all(), f"{what}: non-finite values"
    assert err <= rel * scale, f"{what}: max |diff| {err:.3g} > {rel:g} x {scale:.3g}"
    print(f"{what}: max |diff| {err:.3g} (scale {scale:.3g})")  # shown with pytest -s
    return err


def ldm_checkpoint(components):
    """The components as an original-format (CompVis LDM) SD 1.x state dict.

    The inverse of diffusers' single-file key conversion (UNet, VAE, CLIP text encoder), so tests can
    round-trip tiny models through ``.safetensors`` / ``.ckpt`` single files without downloading one.
    """
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    out = {}
    # -- UNet: model.diffusion_model.{input_blocks, middle_block, output_blocks, time_embed, out}
    cfg = components.unet.config
    lpb = cfg.layers_per_block
    resnet_names = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"),
                    ("conv2", "out_layers.3"), ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection")]

    def resnet(rest):
        for d, ldm in resnet_names:
            if rest.startswith(d + "."):
                return ldm + rest[len(d):]
        raise KeyError(rest)

    fixed = DIFFUSERS_TO_LDM_MAPPING["unet"]["layers"]
    for key, value in components.unet.state_dict().items():
        p = key.split(".")
        if key in fixed:
            new = fixed[key]
        elif p[0] == "down_blocks":
            b, kind = int(p[1]), p[2]
            if kind == "downsamplers":
                new = f"input_blocks.{1 + b * (lpb + 1) + lpb}.0.op.{p[-1]}"
            else:
                i = 1 + b * (lpb + 1) + int(p[3])
                rest = ".".join(p[4:])
                new = f"input_blocks.{i}.0.{resnet(rest)}" if kind == "resnets" else f"input_blocks.{i}.1.{rest}"
        elif p[0] == "mid_block":
            rest = ".".join(p[3:])
            new = f"middle_block.{2 * int(p[2])}.{resnet(rest)}" if p[1] == "resnets" else f"middle_block.1.{rest}"
        elif p[0] == "up_blocks":
            b, kind = int(p[1]), p[2]
            if kind == "upsamplers":
                slot = 2 if "CrossAttn" in cfg.up_block_types[b] else 1
                new = f"output_blocks.{b * (lpb + 1) + lpb}.{slot}.conv.{p[-1]}"
            else:
                i = b * (lpb + 1) + int(p[3])
                rest = ".".join(p[4:])
                new = f"output_blocks.{i}.0.{resnet(rest)}" if kind == "resnets" else f"output_blocks.{i}.1.{rest}"
        else:
            raise KeyError(key)
        out["model.diffusion_model." + new] = value.clone()

    # -- VAE: first_stage_model.{encoder, decoder, quant_conv, post_quant_conv}
    n_up = len(components.vae.config.up_block_types)
    attn = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
    for key, value in components.vae.state_dict().items():
        new, v = key, value.clone()
        new = new.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
        p = new.split(".")
        if p[1] == "down_blocks":
            new = (f"{p[0]}.down.{p[2]}.downsample.{'.'.join(p[5:])}" if p[3] == "downsamplers"
                   else f"{p[0]}.down.{p[2]}.block.{'.'.join(p[4:])}")
        elif p[1] == "up_blocks":
            k = n_up - 1 - int(p[2])
            new = (f"{p[0]}.up.{k}.upsample.{'.'.join(p[5:])}" if p[3] == "upsamplers"
                   else f"{p[0]}.up.{k}.block.{'.'.join(p[4:])}")
        elif p[1] == "mid_block" and p[2] == "resnets":
            new = f"{p[0]}.mid.block_{int(p[3]) + 1}.{'.'.join(p[4:])}"
        elif p[1] == "mid_block" and p[2] == "attentions":
            rest = ".".join(p[4:])
            for d, ldm in attn.items():
                if rest.startswith(d + "."):
                    rest = ldm + rest[len(d):]
                    break
            new = f"{p[0]}.mid.attn_1.{rest}"
            if v.ndim == 2:  # LDM's attention projections are 1x1 convolutions
                v = v[:, :, None, None]
        out["first_stage_model." + new] = v

    # -- CLIP text encoder: cond_stage_model.transformer.text_model.*
    for key, value in components.text_encoder.state_dict().items():
        name = key if key.startswith("text_model.") else "text_model." + key
        out["cond_stage_model.transformer." + name] = value.clone()
    return out

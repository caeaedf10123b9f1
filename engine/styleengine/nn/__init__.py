"""Network building blocks that several styles share (and third-party plugins may use).

GAN pieces faithful to the pix2pix / CycleGAN reference implementation
(junyanz/pytorch-CycleGAN-and-pix2pix), with identical state-dict keys so its checkpoints load:

* generators: :class:`UnetGenerator` (``unet_256`` / ``unet_128``), :class:`ResnetGenerator`;
* discriminators: :class:`NLayerDiscriminator` (PatchGAN), :class:`PixelDiscriminator`;
* factories :func:`define_G` / :func:`define_D`, :func:`get_norm_layer`, :func:`init_weights`;
* objectives :class:`GANLoss`, :func:`gradient_penalty`;
* checkpoint import: :func:`load_reference_state_dict`, :func:`load_into`; the reference projects'
  options files (``----- Options -----`` blocks in ``opt.txt`` / ``train_opt.txt``):
  :func:`read_reference_options`, :func:`find_options_file`;

and, after junyanz/BicycleGAN (multimodal translation with a latent code):

* z-injecting U-Nets :class:`UnetAddAllGenerator` (``G_Unet_add_all``) and :class:`UnetAddInputGenerator`
  (``G_Unet_add_input``), factory :func:`define_G_z`;
* encoders :class:`ResNetEncoder` (``E_ResNet``) and :class:`ConvEncoder` (``E_NLayers``), :func:`define_E`;
* :class:`MultiscaleDiscriminator` (``D_NLayersMulti``), :func:`define_D_multiscale`, :func:`multiscale_gan_loss`;
* batch-independent "reference" inference: :class:`PerSampleBatchNorm2d`, :class:`MaskDropout`,
  :func:`make_dropout_masks`.

Names are resolved lazily, so ``import styleengine.nn`` does not import torch by itself.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    # norm
    "NORM_KINDS": "norm",
    "get_norm_layer": "norm",
    "use_bias": "norm",
    # generators / discriminators
    "UnetSkipConnectionBlock": "unet",
    "UnetGenerator": "unet",
    "ResnetBlock": "resnet",
    "ResnetGenerator": "resnet",
    "NLayerDiscriminator": "patchgan",
    "PixelDiscriminator": "patchgan",
    # factories, init, losses
    "GENERATOR_NAMES": "gan_factory",
    "DISCRIMINATOR_NAMES": "gan_factory",
    "define_G": "gan_factory",
    "define_D": "gan_factory",
    "INIT_TYPES": "init",
    "init_weights": "init",
    "GAN_MODES": "gan_loss",
    "GANLoss": "gan_loss",
    "gradient_penalty": "gan_loss",
    # z-injecting U-Nets, encoders, multi-scale discriminators (BicycleGAN)
    "NL_KINDS": "zunet",
    "UPSAMPLE_KINDS": "zunet",
    "WHERE_ADD": "zunet",
    "UnetAddAllGenerator": "zunet",
    "UnetAddInputGenerator": "zunet",
    "UnetBlock": "zunet",
    "UnetBlockWithZ": "zunet",
    "define_G_z": "zunet",
    "get_nonlinearity": "zunet",
    "ENCODER_NAMES": "encoders",
    "ConvEncoder": "encoders",
    "ResNetEncoder": "encoders",
    "define_E": "encoders",
    "encoder_input_size": "encoders",
    "MULTISCALE_D_NAMES": "multiscale",
    "MultiscaleDiscriminator": "multiscale",
    "define_D_multiscale": "multiscale",
    "multiscale_gan_loss": "multiscale",
    # reference checkpoints and options files
    "ReferenceOptions": "reference",
    "find_options_file": "reference",
    "parse_reference_options": "reference",
    "read_reference_options": "reference",
    "CheckpointMismatchError": "reference",
    "describe_architecture": "reference",
    "load_into": "reference",
    "load_reference_state_dict": "reference",
    "patch_instance_norm_state_dict": "reference",
    # reference-mode inference
    "MaskDropout": "per_sample_norm",
    "PerSampleBatchNorm2d": "per_sample_norm",
    "convert_batchnorm_to_per_sample": "per_sample_norm",
    "dropout_mask_shapes": "per_sample_norm",
    "make_dropout_masks": "per_sample_norm",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # pragma: no cover - static analysers see the eager imports
    from .encoders import ENCODER_NAMES, ConvEncoder, ResNetEncoder, define_E, encoder_input_size
    from .gan_factory import DISCRIMINATOR_NAMES, GENERATOR_NAMES, define_D, define_G
    from .gan_loss import GAN_MODES, GANLoss, gradient_penalty
    from .init import INIT_TYPES, init_weights
    from .multiscale import MULTISCALE_D_NAMES, MultiscaleDiscriminator, define_D_multiscale, multiscale_gan_loss
    from .norm import NORM_KINDS, get_norm_layer, use_bias
    from .patchgan import NLayerDiscriminator, PixelDiscriminator
    from .per_sample_norm import (
        MaskDropout,
        PerSampleBatchNorm2d,
        convert_batchnorm_to_per_sample,
        dropout_mask_shapes,
        make_dropout_masks,
    )
    from .reference import (
        CheckpointMismatchError,
        describe_architecture,
        load_into,
        load_reference_state_dict,
        patch_instance_norm_state_dict,
    )
    from .reference import ReferenceOptions, find_options_file, parse_reference_options, read_reference_options
    from .resnet import ResnetBlock, ResnetGenerator
    from .unet import UnetGenerator, UnetSkipConnectionBlock
    from .zunet import (
        NL_KINDS,
        UPSAMPLE_KINDS,
        WHERE_ADD,
        UnetAddAllGenerator,
        UnetAddInputGenerator,
        UnetBlock,
        UnetBlockWithZ,
        define_G_z,
        get_nonlinearity,
    )

"""The DreamBooth style's options: per request (:class:`Config`), the model (:class:`ModelConfig`), training
(:class:`TrainConfig`).  Training defaults are those of diffusers' ``examples/dreambooth/train_dreambooth_lora.py``
(``train_dreambooth.py`` for the full fine-tune: learning rate 5e-6, ``offset_noise``, ``snr_gamma``); inference
defaults those of its validation (DPM-Solver++ multistep, 25 steps) and of ``StableDiffusionPipeline`` (guidance 7.5).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from styleengine.diffusion.components import SCHEDULERS
from styleengine.diffusion.lora import TEXT_ENCODER_TARGETS, UNET_TARGETS
from styleengine.style import StyleConfig

SchedulerName = Literal[tuple(SCHEDULERS)]  # type: ignore[valid-type]

#: Inference defaults: the reference's validation sampling (``log_validation``: DPMSolverMultistepScheduler,
#: ``num_inference_steps=25``) and StableDiffusionPipeline's guidance / img2img strength.
DEFAULT_STEPS = 25
DEFAULT_SCHEDULER = "dpmpp"
DEFAULT_GUIDANCE = 7.5
DEFAULT_STRENGTH = 0.8
DEFAULT_RESOLUTION = 512

LR_LORA = 5e-4  # train_dreambooth_lora.py
LR_FULL = 5e-6  # train_dreambooth.py


class Config(StyleConfig):
    """Per-request parameters."""

    steps: int = Field(DEFAULT_STEPS, ge=1, le=500, description="denoising steps (reference validation: 25)")
    guidance_scale: float = Field(DEFAULT_GUIDANCE, ge=0.0, le=50.0,
                                  description="classifier-free guidance (<= 1 switches it off, as diffusers)")
    scheduler: SchedulerName = Field(DEFAULT_SCHEDULER, description="sampler (reference validation: DPM-Solver++ 2M)")
    mode: Literal["auto", "txt2img", "img2img"] = Field(
        "auto", description="auto: image-to-image when the request carries an image, else text-to-image")
    strength: float = Field(DEFAULT_STRENGTH, gt=0.0, le=1.0,
                            description="img2img: fraction of the schedule re-run over the content image")
    resolution: int = Field(DEFAULT_RESOLUTION, ge=64, le=1024,
                            description="txt2img: square size; img2img: the long side is scaled to about this, "
                            "both sides floored to multiples of 64")
    width: int | None = Field(None, ge=64, le=1024, multiple_of=64, description="txt2img width (default: resolution)")
    height: int | None = Field(None, ge=64, le=1024, multiple_of=64, description="txt2img height (default: resolution)")
    eta: float = Field(0.0, ge=0.0, le=1.0, description="DDIM eta")
    lora_scale: float = Field(1.0, ge=-4.0, le=4.0,
                              description="weight of the LoRA a request names without one ('name', not 'name:0.5')")
    output_size: Literal["input", "working"] = Field(
        "input", description="img2img: the request's size (resized back) or the working size")
    controlnet_scale: float | None = Field(
        None, ge=0.0, le=2.0, description="ControlNet weight when one is configured (default: diffusers' pipelines: "
        "0.8 for img2img, 1.0 for txt2img)")
    control_guidance_start: float = Field(0.0, ge=0.0, le=1.0, description="fraction of the schedule where ControlNet starts")
    control_guidance_end: float = Field(1.0, ge=0.0, le=1.0, description="fraction of the schedule where ControlNet stops")
    canny_low: int = Field(100, ge=0, le=255, description="cv2.Canny lower hysteresis threshold (ControlNet canny: 100)")
    canny_high: int = Field(200, ge=0, le=255, description="cv2.Canny upper hysteresis threshold (ControlNet canny: 200)")


class ModelConfig(StyleConfig):
    """Where the components come from, and the LoRAs served beside the base model."""

    source: str | None = Field(
        None, description="diffusers folder, SD 1.x .ckpt/.safetensors single file, or hf://org/repo@revision; "
        "none = random weights of `size` (latency work, tests)")
    size: Literal["sd15", "tiny"] = Field("sd15", description="architecture without a source: SD 1.5 shapes or tiny (tests)")
    tokenizer: str | None = Field(None, description="folder with the CLIP tokenizer files (single-file sources carry none)")
    config: str | None = Field(None, description="diffusers config folder for a single-file source that is not SD 1.5-shaped")
    controlnet: str | None = Field(
        None, description="a canny ControlNet (diffusers folder or hf://org/repo@rev; 'tiny' = random, tests): "
        "structure-preserving stylisation, edges computed from the content image in the pipeline")
    loras: dict[str, str] = Field(
        default_factory=dict, max_length=64,
        description="LoRAs loaded once and switched per request: name -> file (diffusers / PEFT or kohya / A1111 "
        ".safetensors, or a folder holding pytorch_lora_weights.safetensors)")
    fused_lora: str | None = Field(
        None, description="a LoRA fused into the base weights (what --weights LORA sets): every request gets it")
    export_lora: str | None = Field(
        None, description="`engine export`: the name (in loras) of the LoRA fused into the exported UNet / text encoder "
        "(one artifact per LoRA); none exports the base")

    @field_validator("source", "tokenizer", "config", "fused_lora", "export_lora", "controlnet")
    @classmethod
    def _not_blank(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("must not be empty")
        return v

    @field_validator("loras")
    @classmethod
    def _names(cls, v: dict[str, str]) -> dict[str, str]:
        for name, path in v.items():
            if not name or not name.replace("_", "").replace("-", "").replace(".", "").isalnum():
                raise ValueError(f"LoRA name {name!r}: use letters, digits, '-', '_', '.'")
            if not str(path).strip():
                raise ValueError(f"LoRA {name!r}: empty path")
        return v


class TrainConfig(StyleConfig):
    """Training options; names and defaults of diffusers' ``train_dreambooth_lora.py`` unless noted."""

    model: ModelConfig = ModelConfig()
    method: Literal["lora", "full"] = Field("lora", description="LoRA adapter (train_dreambooth_lora.py) or the whole UNet "
                                            "(train_dreambooth.py)")
    instance_prompt: str | None = Field(None, max_length=500, description="e.g. 'a photo of sks dog' (required)")
    class_prompt: str | None = Field(None, max_length=500, description="e.g. 'a photo of dog' (prior preservation)")
    class_data_dir: str | None = Field(None, description="class images folder; missing ones are generated there "
                                       "(default with prior preservation: <run>/class_images)")
    with_prior_preservation: bool = False
    prior_loss_weight: float = Field(1.0, ge=0.0, le=100.0)
    num_class_images: int = Field(100, ge=1, le=100_000)
    sample_batch_size: int = Field(4, ge=1, le=256, description="batch of class-image generation")
    class_generation_steps: int = Field(50, ge=1, le=500, description="steps of class-image generation "
                                        "(the reference: the pipeline's default, 50, with the model's own scheduler)")
    prior_generation_precision: Literal["fp32", "fp16", "bf16"] | None = Field(
        None, description="default: fp16 on CUDA, fp32 on CPU (as the reference)")
    resolution: int = Field(512, ge=64, le=1024, multiple_of=8)
    center_crop: bool = Field(False, description="centre crop (else a random crop, as the reference)")
    image_interpolation_mode: Literal["lanczos", "bilinear", "bicubic", "nearest"] = "lanczos"
    train_text_encoder: bool = False
    train_batch_size: int = Field(4, ge=1, le=512)
    num_train_epochs: int = Field(1, ge=1, le=1_000_000)
    max_train_steps: int | None = Field(None, ge=1, le=100_000_000, description="overrides num_train_epochs")
    gradient_accumulation_steps: int = Field(1, ge=1, le=1024)
    gradient_checkpointing: bool = False
    learning_rate: float | None = Field(None, gt=0.0, le=1.0, description="default 5e-4 (LoRA), 5e-6 (full)")
    scale_lr: bool = False
    lr_scheduler: Literal["linear", "cosine", "cosine_with_restarts", "polynomial", "constant",
                          "constant_with_warmup"] = "constant"
    lr_warmup_steps: int = Field(500, ge=0, le=10_000_000)
    lr_num_cycles: int = Field(1, ge=1, le=1000)
    lr_power: float = Field(1.0, gt=0.0, le=10.0)
    adam_beta1: float = Field(0.9, ge=0.0, lt=1.0)
    adam_beta2: float = Field(0.999, ge=0.0, lt=1.0)
    adam_weight_decay: float = Field(1e-2, ge=0.0, le=1.0)
    adam_epsilon: float = Field(1e-8, gt=0.0, le=1.0)
    max_grad_norm: float = Field(1.0, gt=0.0, le=1e6)
    rank: int = Field(4, ge=1, le=1024, description="LoRA rank (alpha = rank, as the reference)")
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    lora_targets: tuple[str, ...] = Field(UNET_TARGETS, min_length=1, max_length=32)
    text_encoder_lora_targets: tuple[str, ...] = Field(TEXT_ENCODER_TARGETS, min_length=1, max_length=32)
    offset_noise: bool = Field(False, description="train_dreambooth.py: noise + 0.1 * per-channel noise")
    snr_gamma: float | None = Field(None, gt=0.0, le=100.0, description="train_dreambooth.py: min-SNR loss weighting")
    validation_prompt: str | None = Field(None, max_length=500)
    num_validation_images: int = Field(4, ge=1, le=16)
    validation_steps: int = Field(25, ge=1, le=500, description="denoising steps of validation images (reference: 25)")
    validation_every: int | None = Field(None, ge=1, le=10_000_000,
                                         description="validation images every N steps (default: the run's --sample-every)")
    preflight: Literal["full", "header"] = "full"
    min_instance_images: int = Field(1, ge=1, le=1000, description="refuse fewer instance images (paper: 3-5)")
    allow_random_init: bool = Field(False, description="train SD 1.5-shaped random weights (plumbing only)")

    @field_validator("instance_prompt", "class_prompt", "validation_prompt")
    @classmethod
    def _text(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("must not be empty")
        return v

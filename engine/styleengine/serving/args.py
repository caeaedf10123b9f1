"""The arguments of the generic service (``bentoml serve ... --arg key=value``, ``engine serve`` options,
``args:`` in bentofile.yaml).  Torch- and BentoML-free so the CLI can validate them before starting a server."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MiB = 1 << 20


class ServeArgs(BaseModel):
    """Everything that parametrises one serving deployment.  Unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, protected_namespaces=())

    # -- what to serve ------------------------------------------------------------------------------
    style: str = Field(..., description="style name or alias (see `engine styles`)")
    runtime: str = Field("torch", description="torch, onnxruntime or tensorrt")
    model: str | None = Field(
        None, description="BentoML model tag holding exported artifacts (engine export --bento-model); packaged into the Bento"
    )
    artifacts: str | None = Field(None, description="exported artifact folder (instead of a model tag)")
    weights: str | None = Field(None, description="weights for the torch runtime (path or hf://...)")
    variant: str | None = Field(None, description="style variant (default: the model's, else the style's first)")
    allow_random_weights: bool = Field(False, description="serve random weights (tests, latency work)")
    device: str = Field("cpu", description="cpu or cuda[:N]")
    precision: Literal["fp32", "fp16", "bf16"] = "fp32"
    #: Extra plugin modules to load by import path (like `engine -p`), comma separated.
    plugins: str = ""
    model_set: dict[str, Any] = Field(
        default_factory=dict, description="model config overrides (e.g. a diffusion style's tiny components); JSON object"
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="defaults of request parameters the request leaves out; JSON object"
    )

    # -- topology -----------------------------------------------------------------------------------
    topology: Literal["auto", "single", "split"] = Field(
        "auto",
        description=(
            "single: the API process runs the model (no inter-process hop); split: API workers forward to one "
            "runner service (several API workers feeding one GPU); auto: split when api_workers > 1, else single"
        ),
    )

    # -- batching -----------------------------------------------------------------------------------
    max_batch_size: int = Field(8, ge=1, le=256, description="most requests the runner takes in one call")
    max_latency_ms: int = Field(
        2000, ge=1, le=600_000, description="batching window and queue budget: a request queued longer gets 503"
    )
    linger_ms: float = Field(
        0.0, ge=0, le=1000, description="wait this long for more requests before a batch starts (0: dispatch at once when idle)"
    )
    warmup: bool = Field(True, description="run every batch bucket once before /readyz says ready")
    warmup_delay_s: float = Field(0.0, ge=0, le=600, description="wait before warm-up starts (readiness tests)")

    # -- traffic ------------------------------------------------------------------------------------
    max_concurrency: int = Field(32, ge=1, le=100_000, description="requests in flight per API worker; more get 429")
    timeout_s: float = Field(60.0, gt=0, le=3600, description="request timeout; a request over it gets 504 and its work stops")
    api_workers: int = Field(1, ge=1, le=64)
    body_timeout_s: float = Field(
        10.0, gt=0, le=600, description="receipt deadline: the whole body must arrive within it (408); no slot is held meanwhile"
    )
    header_timeout_s: float = Field(10.0, gt=0, le=600, description="a connection's request headers must arrive within it, else it is closed")
    png_compress_level: int = Field(1, ge=0, le=9, description="zlib level of PNG answers (1: fast; 6: PIL's default, ~2.4x slower)")
    task_max_running: int = Field(1, ge=1, le=64, description="long jobs (/stylize_task, long-running styles) running at once")
    task_max_queued: int = Field(4, ge=0, le=10_000, description="long jobs waiting; a submission beyond running + queued gets 429")

    # -- input limits -------------------------------------------------------------------------------
    max_request_bytes: int = Field(40 * MiB, ge=1024, le=2048 * MiB, description="whole request body; more gets 413")
    max_image_bytes: int = Field(32 * MiB, ge=64, le=1024 * MiB, description="one uploaded image")
    max_pixels: int = Field(4096 * 4096, ge=1, le=1 << 30, description="decoded pixels of one image")
    max_side: int = Field(8192, ge=1, le=65536, description="longest side of one image")
    max_images_per_field: int = Field(8, ge=1, le=64, description="files under a field that takes several")

    @field_validator("model_set", "params", mode="before")
    @classmethod
    def _json_object(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not value.strip():
                return {}
            try:
                value = json.loads(value)
            except ValueError as exc:
                raise ValueError(f"expected a JSON object, got {value[:60]!r} ({exc})") from None
        if not isinstance(value, dict):
            raise ValueError("expected a JSON object")
        return value

    @property
    def split(self) -> bool:
        return self.topology == "split" or (self.topology == "auto" and self.api_workers > 1)

    @model_validator(mode="after")
    def _check(self) -> ServeArgs:
        if self.model and self.artifacts:
            raise ValueError("give either model (a BentoML model tag) or artifacts (a folder), not both")
        if self.max_image_bytes > self.max_request_bytes:
            self.max_image_bytes = self.max_request_bytes
        return self

    def as_cli_args(self) -> list[str]:
        """``--arg key=value`` pairs for ``bentoml serve`` / ``bentoml build`` (defaults left out)."""
        out: list[str] = []
        for key, value in self.model_dump(exclude_defaults=True).items():
            out += ["--arg", f"{key}={_fmt(value)}"]
        return out

    def as_bento_args(self) -> dict[str, Any]:
        return {k: _fmt(v) for k, v in self.model_dump(exclude_defaults=True).items()}


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)

"""The public request of ``POST /stylize``: generated from the style's declarations, parsed defensively.

The input model is generated per style from its ``InputContract`` (image fields become file uploads,
several files where ``multiple``; text fields become strings capped at ``max_length``) and its pydantic
``Config`` (every parameter with its bounds and description), plus ``seed``.  BentoML renders it into the
OpenAPI document (``/docs.json``) and the Swagger page, so every style is documented without
style-specific server code.

Parsing does **not** go through BentoML's generic multipart handling: that one downloads a URL given as a
text value of a file field (a server-side request forgery vector) and answers bad input with its own error
shapes.  :func:`parse_request` (called from the generated model's ``from_http_request``) instead

* accepts ``multipart/form-data`` only (415 otherwise), with starlette's part/field/file-count limits;
* refuses unknown fields, duplicated fields, text in a file field and files in a text field (422, naming
  the field);
* caps texts at the style's ``TextField.max_length`` and files per field at ``max_images_per_field``;
* validates the parameters with the style's own ``Config`` (finite, bounded, ``extra="forbid"``): NaN,
  Infinity or an out-of-range value is a 422 naming the field;
* decodes every image with :func:`styleengine.data.decode_image` under the service's
  :class:`~styleengine.data.ImageLimits` (byte, pixel and side limits checked from the header before any
  pixel is decoded, PNG/JPEG/WebP allow-list checked on the magic bytes), on a worker thread, and maps
  each decoder error's ``http_status`` / ``code`` / ``detail`` to the response;
* checks the style's contract (``min_side`` / ``max_side``).

Failures never raise into BentoML (which would answer 500): the parsed request carries an
:class:`~styleengine.serving.errors.ApiError` that the endpoint returns as JSON.
"""

from __future__ import annotations

import contextvars
import json
import pathlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from pydantic import ConfigDict, Field, ValidationError, create_model

from ..data import ImageDecodeError, ImageLimits, decode_image, from_uint8, to_uint8
from .errors import ApiError

SEED_MAX = 2**63 - 1
ACCEPTED_IMAGE_TYPES = "image/png, image/jpeg, image/webp"


@dataclass(frozen=True)
class RequestLimits:
    image: ImageLimits
    max_images_per_field: int = 8
    #: The server's defaults for parameters a request leaves out (``styleengine.serving.preflight.request_defaults``).
    defaults: dict[str, Any] = field(default_factory=dict)


@dataclass
class ParsedRequest:
    """A request that passed every check: decoded images (uint8 where exact, else float32), texts,
    validated parameters (JSON-safe dump of the style's Config) and the seed to use."""

    images: dict[str, Any]
    texts: dict[str, str]
    params: dict[str, Any]
    seed: int | None
    received: float = field(default_factory=time.perf_counter)
    pixels: int = 0


def compact(array: np.ndarray) -> np.ndarray:
    """uint8 when that is exactly the decoded float image (8-bit, no alpha): 4x less to ship to the
    runner; float32 otherwise (16-bit or alpha-composited pixels are not k/255)."""
    u8 = to_uint8(array)
    return u8 if np.array_equal(from_uint8(u8), array) else np.ascontiguousarray(array, dtype=np.float32)


def _parse_value(raw: str) -> Any:
    """A form value as JSON when it parses (``0.5``, ``true``, ``NaN``, ``[1, 2]``), else the string."""
    try:
        return json.loads(raw)
    except ValueError:  # JSONDecodeError, and int strings over Python's digit limit
        return raw


def _first_error(exc: ValidationError) -> tuple[str | None, str, list[dict[str, Any]]]:
    errors = []
    for e in exc.errors(include_url=False, include_context=False, include_input=False):
        loc = ".".join(str(p) for p in e["loc"])
        errors.append({"field": loc, "message": e["msg"], "type": e["type"]})
    first = errors[0] if errors else {"field": None, "message": str(exc)}
    detail = f"{first['field']}: {first['message']}" if first["field"] else first["message"]
    if len(errors) > 1:
        detail += f" (and {len(errors) - 1} more)"
    return first["field"], detail, errors


#: The outcome of parsing the current request (a ParsedRequest or an ApiError).  BentoML awaits
#: ``from_http_request`` and then the endpoint in the same asyncio task, so a context variable carries
#: it from one to the other without touching BentoML's request plumbing.
_PARSED: contextvars.ContextVar[ParsedRequest | ApiError | None] = contextvars.ContextVar("styleengine_parsed", default=None)


def take_parsed() -> ParsedRequest:
    """The current request's parse result (raises its ApiError)."""
    value = _PARSED.get()
    _PARSED.set(None)
    if value is None:
        raise ApiError(400, "invalid_request", "the request could not be parsed")
    if isinstance(value, ApiError):
        raise value
    return value


def _input_base() -> type:
    from _bentoml_sdk.io_models import IODescriptor  # BentoML's base for input specs

    class StylizeInputBase(IODescriptor):
        """Generated per style; see the module docstring.  Only its schema is used by BentoML."""

        model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
        style_cls: ClassVar[Any] = None
        limits: ClassVar[RequestLimits]

        @classmethod
        async def from_http_request(cls, request: Any, serde: Any) -> Any:
            try:
                _PARSED.set(await parse_request(request, cls.style_cls, cls.limits))
            except ApiError as exc:
                _PARSED.set(exc)
            # The endpoint reads the context variable; BentoML only needs every field present.
            return cls.model_construct(**{name: None for name in cls.model_fields})

    return StylizeInputBase


def build_input_model(style_cls: Any, limits: RequestLimits) -> type:
    """The BentoML input model (an ``IODescriptor``) of ``POST /stylize`` for ``style_cls``."""
    fields: dict[str, Any] = {}
    for f in style_cls.inputs.images:
        typ: Any = list[pathlib.Path] if f.multiple else pathlib.Path
        desc = f.description + (f" (up to {limits.max_images_per_field} files)" if f.multiple else "")
        desc += f"; {ACCEPTED_IMAGE_TYPES}"
        fields[f.name] = (typ if f.required else typ | None, Field(... if f.required else None, description=desc))
    for t in style_cls.inputs.texts:
        fields[t.name] = (
            str if t.required else str | None,
            Field(... if t.required else None, description=t.description, max_length=t.max_length),
        )
    for name, info in style_cls.Config.model_fields.items():
        if name in fields or name == "seed":
            raise ValueError(f"style {style_cls.name}: parameter {name!r} has the name of an input field; rename one of them")
        if name in limits.defaults:  # this server's default, shown in OpenAPI and the playground
            from pydantic.fields import FieldInfo

            info = FieldInfo.merge_field_infos(info, default=limits.defaults[name])
        fields[name] = (info.annotation, info)
    seeded = style_cls.inputs.seeded
    fields["seed"] = (
        int | None,
        Field(None, ge=0, le=SEED_MAX, description="random seed" + (" (random when omitted; the one used is returned)" if seeded else " (this style is deterministic)")),
    )
    model = create_model(  # type: ignore[call-overload]
        f"{_camel(style_cls.name)}Request",
        __base__=_input_base(),
        __module__=__name__,
        **fields,
    )
    model.style_cls = style_cls
    model.limits = limits
    model.__doc__ = f"Inputs and parameters of style {style_cls.name}."
    return model


def _camel(name: str) -> str:
    return "".join(p.capitalize() for p in name.replace("_", "-").split("-") if p) or "Style"


async def parse_request(request: Any, style_cls: Any, limits: RequestLimits) -> ParsedRequest:
    """Parse, validate and decode one ``/stylize`` request; raises :class:`ApiError`."""
    import anyio.to_thread
    from starlette.datastructures import UploadFile
    from starlette.exceptions import HTTPException

    received = time.perf_counter()
    ctype = request.headers.get("content-type", "")
    if ctype.split(";", 1)[0].strip().lower() != "multipart/form-data":
        raise ApiError(415, "unsupported_media_type", f"send multipart/form-data (got {ctype.split(';')[0] or 'no Content-Type'})")
    contract = style_cls.inputs
    image_fields = {f.name: f for f in contract.images}
    text_fields = {t.name: t for t in contract.texts}
    param_names = set(style_cls.Config.model_fields)
    max_files = limits.max_images_per_field * max(1, len(image_fields))
    max_text = max([t.max_length for t in contract.texts] + [256])
    try:
        form = await request.form(max_files=max_files, max_fields=len(text_fields) + len(param_names) + 8,
                                  max_part_size=max(64 * 1024, 4 * max_text))
    except HTTPException as exc:
        raise ApiError(400, "invalid_multipart", f"malformed multipart body: {exc.detail}") from None
    except Exception as exc:  # MultiPartException outside an app, parser errors
        raise ApiError(400, "invalid_multipart", f"malformed multipart body: {exc}") from None

    files: dict[str, list[Any]] = {}
    texts: dict[str, str] = {}
    params: dict[str, Any] = {}
    seed: int | None = None
    seen: set[str] = set()
    allowed = ", ".join([*image_fields, *text_fields, *sorted(param_names), "seed"])
    for key, value in form.multi_items():
        is_file = isinstance(value, UploadFile)
        if key in image_fields:
            if not is_file:
                raise ApiError(422, "invalid_field", f"field {key!r} must be a file upload (a multipart file part); URLs and text are not accepted", field=key)
            files.setdefault(key, []).append(value)
            cap = limits.max_images_per_field if image_fields[key].multiple else 1
            if len(files[key]) > cap:
                raise ApiError(422, "too_many_files", f"field {key!r} takes at most {cap} file(s)", field=key)
            continue
        if key in seen:
            raise ApiError(422, "duplicate_field", f"field {key!r} is given more than once", field=key)
        seen.add(key)
        if is_file:
            if key in text_fields or key in param_names or key == "seed":
                raise ApiError(422, "invalid_field", f"field {key!r} must be a text value, not a file", field=key)
            raise ApiError(422, "unknown_field", f"unknown field {key!r}; this style takes: {allowed}", field=key)
        if value == "null" and (key in text_fields or key == "seed"):
            continue  # BentoML's Python client sends unset optional fields as JSON null
        if key in text_fields:
            value = _unquote(value)
            tf = text_fields[key]
            if len(value) > tf.max_length:
                raise ApiError(422, "text_too_long", f"field {key!r} is {len(value)} characters; the limit is {tf.max_length}", field=key)
            if "\x00" in value:
                raise ApiError(422, "invalid_field", f"field {key!r} contains a NUL character", field=key)
            texts[key] = value
        elif key == "seed":
            seed = _parse_seed(value)
        elif key in param_names:
            params[key] = _parse_value(value)
        else:
            raise ApiError(422, "unknown_field", f"unknown field {key!r}; this style takes: {allowed}", field=key)

    for name, f in image_fields.items():
        if f.required and not files.get(name):
            raise ApiError(422, "missing_field", f"field {name!r} is required: {f.description} (a file upload)", field=name)
    for name, t in text_fields.items():
        if t.required and not texts.get(name, "").strip():
            raise ApiError(422, "missing_field", f"field {name!r} is required: {t.description or 'text'}", field=name)

    try:
        cfg = style_cls.Config(**{**limits.defaults, **params})
    except ValidationError as exc:
        fld, detail, errors = _first_error(exc)
        raise ApiError(422, "invalid_parameter", detail, field=fld, extra={"errors": errors}) from None
    except (TypeError, ValueError) as exc:
        raise ApiError(422, "invalid_parameter", str(exc)) from None
    if seed is None and contract.seeded:
        seed = secrets.randbelow(2**31)

    images: dict[str, Any] = {}
    pixels = 0
    for name, uploads in files.items():
        decoded = []
        for up in uploads:
            decoded.append(await _read_and_decode(up, name, limits, anyio.to_thread.run_sync))
        for arr in decoded:
            h, w = arr.shape[:2]
            pixels += h * w
            if min(h, w) < contract.min_side or max(h, w) > contract.max_side:
                raise ApiError(
                    422, "unsupported_size",
                    f"field {name!r}: image is {w}x{h}; {style_cls.name} takes sides within [{contract.min_side}, {contract.max_side}]",
                    field=name,
                )
        images[name] = decoded if image_fields[name].multiple else decoded[0]
    return ParsedRequest(images, texts, cfg.model_dump(mode="json"), seed, received, pixels)


def _unquote(value: str) -> str:
    """Texts may come raw (curl, browsers) or JSON-encoded (BentoML's Python client)."""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            decoded = json.loads(value)
        except ValueError:
            return value
        if isinstance(decoded, str):
            return decoded
    return value


def _parse_seed(value: str) -> int:
    v = value.strip()
    if not (v.isascii() and v.lstrip("+-").isdigit()) or len(v) > 20:
        raise ApiError(422, "invalid_parameter", f"seed: expected an integer in [0, {SEED_MAX}], got {value[:32]!r}", field="seed")
    n = int(v)
    if not 0 <= n <= SEED_MAX:
        raise ApiError(422, "invalid_parameter", f"seed: must be within [0, {SEED_MAX}]", field="seed")
    return n


async def _read_and_decode(upload: Any, name: str, limits: RequestLimits, to_thread: Any) -> np.ndarray:
    max_bytes = limits.image.max_bytes
    size = upload.size
    if size is not None and size > max_bytes:
        raise ApiError(413, "image_too_large", f"field {name!r}: file is {size} bytes, above the limit of {max_bytes} bytes", field=name)
    data = await upload.read(max_bytes + 1)
    await upload.close()

    def work() -> np.ndarray:
        return compact(decode_image(data, limits=limits.image, filename=upload.filename, content_type=upload.content_type).array)

    try:
        return await to_thread(work)
    except ImageDecodeError as exc:
        raise ApiError(exc.http_status, exc.code, f"field {name!r}: {exc.detail}", field=name) from None
    except MemoryError:
        raise ApiError(413, "too_many_pixels", f"field {name!r}: image too large to decode", field=name) from None


def negotiate(accept: str | None, json_endpoint: bool, fmt: str | None = None) -> str:
    """``png``, ``jpeg`` or ``json`` from the Accept header (q-values honoured); 406 when nothing fits."""
    if json_endpoint:
        return "jpeg-json" if (fmt or "").lower() in ("jpeg", "jpg") else "png-json"
    offers = {"image/png": "png", "image/jpeg": "jpeg", "application/json": "json"}
    if not accept:
        return "png"
    best, best_q = None, 0.0
    for part in accept.split(","):
        media, *params = [p.strip() for p in part.split(";")]
        q = 1.0
        for p in params:
            if p.startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        media = media.lower()
        choice = "png" if media in ("*/*", "image/*") else offers.get(media)
        if choice and q > best_q:
            best, best_q = choice, q
    if best is None:
        raise ApiError(406, "not_acceptable", "this endpoint answers image/png, image/jpeg or application/json")
    return best

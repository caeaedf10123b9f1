"""The OpenAPI document (``/docs.json``) completed with every answer the service gives.

BentoML generates the document from the endpoints' input and output models and lists 200 plus its own
generic 400 / 404 / 500 for each route.  The service answers more than that, always with the
``{"error", "detail"}`` JSON of :mod:`.errors`; :func:`complete` adds, for every guarded route:

* the ``StyleengineError`` schema (``error`` code, ``detail`` sentence, optional ``field`` / ``errors``);
* one response per status the guard, the request parser and the runner answer, each naming its
  ``error`` codes (so a client generator or schemathesis knows them), replacing BentoML's generic ones;
* ``seed`` as nullable, in the request (omitted or ``null``: the server draws one) and in the JSON answer
  (``null`` for deterministic styles); BentoML renders ``int | None`` as a plain integer.

The guard (:mod:`.guard`) applies it to BentoML's own ``/docs.json`` response, so the document is
complete whatever BentoML version generated it.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

__all__ = ["ERROR_SCHEMA", "STATUSES", "complete"]

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error", "detail"],
    "properties": {
        "error": {"type": "string", "description": "machine-readable code (too_many_pixels, invalid_parameter, overloaded ...)"},
        "detail": {"type": "string", "description": "what is wrong, naming the field and the limit or the value seen"},
        "field": {"type": "string", "description": "the request field at fault, when there is one"},
        "errors": {"type": "array", "items": {"type": "object"}, "description": "parameter validation errors, one per problem"},
    },
}

#: status -> (description, error codes answered with it)
STATUSES: dict[int, tuple[str, tuple[str, ...]]] = {
    400: ("malformed request: bad Content-Length or multipart, a body shorter than declared, an empty, truncated "
          "or corrupt image", ("invalid_request", "invalid_multipart", "empty_image", "truncated_image", "corrupt_image")),
    406: ("the Accept header asks for a type this endpoint does not answer", ("not_acceptable",)),
    408: ("the body did not arrive within the receipt deadline (body_timeout_s)", ("request_timeout",)),
    413: ("request, image bytes, pixels or sides above the limits", ("request_too_large", "image_too_large", "too_many_pixels")),
    415: ("not multipart/form-data, an image format outside PNG / JPEG / WebP, or a declared type the data contradicts",
          ("unsupported_media_type", "unsupported_format", "format_mismatch")),
    422: ("a field or parameter is missing, unknown, duplicated, out of range or not finite; an animated image",
          ("invalid_parameter", "missing_field", "unknown_field", "duplicate_field", "invalid_field", "too_many_files",
           "text_too_long", "animated_image", "unsupported_size")),
    429: ("more requests in flight than max_concurrency (Retry-After says when to retry)", ("too_many_requests",)),
    500: ("a fault of the service itself (never bad input)", ("internal", "inference_failed")),
    502: ("split topology: the inference runner failed or could not be reached", ("runner_error", "runner_unavailable")),
    503: ("not ready yet (warming up), or the queue wait would pass max_latency_ms", ("not_ready", "overloaded")),
    504: ("the request took longer than timeout_s; its work was stopped", ("timeout",)),
    507: ("not enough memory to run this request (try a smaller image)", ("out_of_memory",)),
}


def _error_response(description: str, codes: Iterable[str]) -> dict[str, Any]:
    schema = {"allOf": [{"$ref": "#/components/schemas/StyleengineError"}],
              "example": {"error": next(iter(codes)), "detail": description}}
    return {"description": f"{description}. error: {', '.join(codes)}", "content": {"application/json": {"schema": schema}}}


def _nullable_seed(schema: dict[str, Any]) -> None:
    props = schema.get("properties", {}) if isinstance(schema, dict) else {}
    seed = props.get("seed")
    if isinstance(seed, dict) and seed.get("type") == "integer":
        bounds = {k: seed.pop(k) for k in ("minimum", "maximum") if k in seed}
        seed.pop("type")
        seed["anyOf"] = [{"type": "integer", **bounds}, {"type": "null"}]


def complete(spec: dict[str, Any], routes: Iterable[str]) -> dict[str, Any]:
    """A copy of ``spec`` with the error schema and every status documented on ``routes`` (POST)."""
    out = copy.deepcopy(spec)
    out.setdefault("components", {}).setdefault("schemas", {})["StyleengineError"] = ERROR_SCHEMA
    for route in routes:
        op = out.get("paths", {}).get(route, {}).get("post")
        if not isinstance(op, dict):
            continue
        responses = op.setdefault("responses", {})
        for status in [s for s in list(responses) if str(s) not in ("200", "default")]:
            del responses[status]  # BentoML's generic entries (its own error shape, which this service never answers)
        for status, (description, codes) in STATUSES.items():
            responses[str(status)] = _error_response(description, codes)
        contents = [*op.get("requestBody", {}).get("content", {}).values(), *responses.get("200", {}).get("content", {}).values()]
        for content in contents:
            _nullable_seed(_resolve(out, content.get("schema", {})))
    return out


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """The schema a local ``$ref`` points to (BentoML puts output models under components)."""
    ref = schema.get("$ref") if isinstance(schema, dict) else None
    if isinstance(ref, str) and ref.startswith("#/"):
        node: Any = spec
        for part in ref[2:].split("/"):
            node = node.get(part, {}) if isinstance(node, dict) else {}
        return node if isinstance(node, dict) else {}
    return schema

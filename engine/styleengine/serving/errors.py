"""The one error shape every refusal of the service uses: ``{"error": code, "detail": message}``.

``error`` is short and machine-readable (``too_many_pixels``, ``invalid_parameter``, ``overloaded``),
``detail`` is a sentence for people that names the field and the limit or the observed value.  Field
problems add ``"field"``; parameter validation adds ``"errors"`` (one entry per pydantic error).  A
client never gets a traceback, a file-system path or a 500 for bad input.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ApiError", "error_body"]


class ApiError(Exception):
    """A request the service refuses, with the HTTP status to answer."""

    def __init__(self, status: int, code: str, detail: str, *, field: str | None = None, extra: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.field = field
        self.extra = extra or {}
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.detail, field=self.field, **self.extra)

    def response(self) -> Any:
        from starlette.responses import JSONResponse

        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def error_body(code: str, detail: str, *, field: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"error": code, "detail": detail}
    if field is not None:
        body["field"] = field
    body.update(extra)
    return body

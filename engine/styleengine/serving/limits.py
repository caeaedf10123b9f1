"""Request-body limit: 413 before a too-large body is read.

An ASGI middleware added to the API service with BentoML's ``Service.add_asgi_middleware``:

* a ``Content-Length`` above the limit is answered 413 at once, without reading a byte of the body
  (and with ``Connection: close`` so the server drops the connection instead of draining the upload);
* a body without ``Content-Length`` (chunked) or one that lies about it is counted as it streams in: the
  moment it passes the limit, reading stops, whatever the application was about to answer is replaced by
  the 413, and the connection is closed.  Memory use is bounded by the limit, never by the client;
* a malformed ``Content-Length`` is a 400.

Only POST/PUT/PATCH bodies are affected; health, metrics and the playground's GETs pass through.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import error_body

__all__ = ["BodyLimitMiddleware", "BodyTooLarge"]


class BodyTooLarge(Exception):
    """Raised from ``receive`` once the streamed body passes the limit."""


def _json_response(status: int, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    payload = json.dumps(body).encode()
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
            (b"connection", b"close"),
        ],
    }
    return start, {"type": "http.response.body", "body": payload, "more_body": False}


class BodyLimitMiddleware:
    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = int(max_bytes)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        declared = None
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                    if declared < 0:
                        raise ValueError
                except ValueError:
                    await self._send(send, 400, error_body("invalid_content_length", "Content-Length is not a non-negative integer"))
                    return
        if declared is not None and declared > limit:
            await self._send(send, 413, _too_large(declared, limit))
            return

        state = {"received": 0, "over": False, "started": False, "ours": False}

        async def limited_receive() -> Any:
            if state["over"]:
                raise BodyTooLarge()
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > limit:
                    state["over"] = True
                    raise BodyTooLarge()
            return message

        async def guarded_send(message: Any) -> None:
            if state["over"]:
                # The application reacted to the aborted read (usually with a 500): answer 413 instead.
                if not state["started"] and not state["ours"]:
                    state["ours"] = True
                    await self._send(send, 413, _too_large(state["received"], limit, streamed=True))
                return
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except BodyTooLarge:
            pass
        if state["over"] and not state["started"] and not state["ours"]:
            state["ours"] = True
            await self._send(send, 413, _too_large(state["received"], limit, streamed=True))

    @staticmethod
    async def _send(send: Any, status: int, body: dict[str, Any]) -> None:
        start, payload = _json_response(status, body)
        await send(start)
        await send(payload)


def _too_large(size: int, limit: int, streamed: bool = False) -> dict[str, Any]:
    what = f"more than {limit} bytes were sent" if streamed else f"the body is {size} bytes"
    return error_body("request_too_large", f"request body too large: {what}; the limit is {limit} bytes")

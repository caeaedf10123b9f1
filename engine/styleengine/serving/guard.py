"""The request guard: body limits and deadlines, the concurrency limit, the request timeout, JSON errors.

An ASGI middleware around the API app (``Service.add_asgi_middleware``).  BentoML's own traffic
middlewares are not used for these limits (the service sets a generous backstop timeout and no
``max_concurrency``): BentoML counts a request against ``max_concurrency`` from its first byte, so a
client that trickles its body holds a slot for the whole timeout, and its 429 / 504 bodies are not this
service's documented JSON.  Here, for the guarded routes (``POST /stylize`` ...):

1. ``Content-Length``: malformed → 400 ``invalid_request``; above ``max_request_bytes`` → 413
   ``request_too_large`` before a byte of the body is read (``Connection: close``).
2. The **whole body is received first, within ``body_timeout_s``** (the receipt deadline), counted as it
   streams (chunked bodies stop at the limit: 413).  A body still arriving at the deadline is 408
   ``request_timeout``; one that stopped short of its ``Content-Length`` (nothing more for a second) is
   400 ``invalid_request``.  While a body arrives the request holds **no** concurrency slot.
3. Only then the request takes one of ``max_concurrency`` slots; none free → 429 ``too_many_requests``
   with ``Retry-After``.  Exactly the excess is refused, and health endpoints are never counted.
4. The application gets the buffered body and ``timeout_s``; past it the request is answered 504
   ``timeout`` (the deadline is also in ``request.state.styleengine_deadline`` so the model stops the
   work, see :mod:`styleengine.cancel`).
5. Other methods on a guarded route → 405 ``method_not_allowed``; any plain-text error the framework
   answers elsewhere (404, 405, 400) is rewritten into the same ``{"error", "detail"}`` JSON.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable
from typing import Any

from .errors import error_body

__all__ = ["RequestGuard", "send_json"]

#: BentoML's OpenAPI document, completed with every status the service answers (see :mod:`.openapi`).
DOCS_PATH = "/docs.json"
#: Nothing more arrived for this long at the receipt deadline: the body is short, not slow.
STALL_S = 1.0


def _headers(status: int, payload: bytes, extra: Iterable[tuple[bytes, bytes]] = (), close: bool = False) -> dict[str, Any]:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()), *extra]
    if close:
        headers.append((b"connection", b"close"))
    return {"type": "http.response.start", "status": status, "headers": headers}


async def send_json(send: Any, status: int, body: dict[str, Any], *, headers: Iterable[tuple[bytes, bytes]] = (), close: bool = False) -> None:
    payload = json.dumps(body).encode()
    await send(_headers(status, payload, headers, close))
    await send({"type": "http.response.body", "body": payload, "more_body": False})


_PLAIN_ERRORS = {
    400: "invalid_request", 404: "not_found", 405: "method_not_allowed", 411: "invalid_request", 413: "request_too_large",
    415: "unsupported_media_type", 422: "invalid_request", 429: "too_many_requests", 500: "internal", 503: "not_ready",
    504: "timeout",
}


class RequestGuard:
    def __init__(
        self,
        app: Any,
        *,
        guarded: Iterable[str],
        max_bytes: int,
        body_timeout_s: float,
        max_concurrency: int,
        timeout_s: float,
        on_reject: Callable[[str], None] | None = None,
    ) -> None:
        self.app = app
        self.guarded = set(guarded)
        self.max_bytes = int(max_bytes)
        self.body_timeout = float(body_timeout_s)
        self.max_concurrency = int(max_concurrency)
        self.timeout = float(timeout_s)
        self.on_reject = on_reject
        self.inflight = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope.get("path") not in self.guarded:
            if scope.get("path") == DOCS_PATH and scope.get("method") == "GET":
                send = _completed_docs(send, self.guarded)
            await self.app(scope, receive, _json_errors(send))
            return
        if scope.get("method") != "POST":
            await self._refuse(send, 405, "method_not_allowed", f"{scope.get('path')} takes POST (multipart/form-data)", headers=[(b"allow", b"POST")])
            return
        declared = None
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                    if declared < 0:
                        raise ValueError
                except ValueError:
                    await self._refuse(send, 400, "invalid_request", "Content-Length is not a non-negative integer", close=True)
                    return
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send, 413, "request_too_large",
                               f"request body too large: the body is {declared} bytes; the limit is {self.max_bytes} bytes", close=True)
            return
        body = await self._read_body(receive, send, declared)
        if body is None:
            return
        if self.inflight >= self.max_concurrency:
            await self._refuse(send, 429, "too_many_requests",
                               f"more than {self.max_concurrency} requests in flight; retry later", headers=[(b"retry-after", b"1")])
            return
        self.inflight += 1
        try:
            await self._run(scope, receive, send, body)
        finally:
            self.inflight -= 1

    async def _read_body(self, receive: Any, send: Any, declared: int | None) -> bytes | None:
        chunks: list[bytes] = []
        state = {"size": 0, "last": time.monotonic(), "done": False, "gone": False}

        async def pump() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    state["gone"] = True
                    return
                part = message.get("body", b"")
                if part:
                    chunks.append(part)
                    state["size"] += len(part)
                    state["last"] = time.monotonic()
                    if state["size"] > self.max_bytes:
                        return
                if not message.get("more_body", False):
                    state["done"] = True
                    return

        try:
            await asyncio.wait_for(pump(), self.body_timeout)
        except TimeoutError:
            stalled = time.monotonic() - state["last"] >= min(STALL_S, self.body_timeout / 2)
            if declared is not None and stalled:
                await self._refuse(send, 400, "invalid_request",
                                   f"the body stopped after {state['size']} of the {declared} bytes its Content-Length declares", close=True)
            else:
                await self._refuse(send, 408, "request_timeout",
                                   f"the request body did not arrive within {self.body_timeout:g} s ({state['size']} bytes received)", close=True)
            return None
        if state["gone"]:
            return None
        if state["size"] > self.max_bytes:
            await self._refuse(send, 413, "request_too_large",
                               f"request body too large: more than {self.max_bytes} bytes were sent; the limit is {self.max_bytes} bytes", close=True)
            return None
        return b"".join(chunks)

    async def _run(self, scope: Any, receive: Any, send: Any, body: bytes) -> None:
        delivered = False

        async def replay() -> Any:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # only a disconnect can come now

        started = False

        async def tracked(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        scope.setdefault("state", {})["styleengine_deadline"] = time.time() + self.timeout
        try:
            await asyncio.wait_for(self.app(scope, replay, _json_errors(tracked)), self.timeout)
        except TimeoutError:
            if not started:
                await self._refuse(send, 504, "timeout", f"the request took longer than {self.timeout:g} s; its work was stopped")

    async def _refuse(self, send: Any, status: int, code: str, detail: str, *, headers: Iterable[tuple[bytes, bytes]] = (),
                      close: bool = False) -> None:
        if self.on_reject is not None:
            self.on_reject(code)
        await send_json(send, status, error_body(code, detail), headers=headers, close=close)


def _completed_docs(send: Any, routes: Iterable[str]) -> Any:
    """Buffer BentoML's ``/docs.json`` answer and send it completed by :func:`.openapi.complete`."""
    from .openapi import complete

    held: dict[str, Any] = {}

    async def wrapped(message: Any) -> None:
        if message["type"] == "http.response.start" and message["status"] == 200:
            held["start"], held["body"] = message, b""
            return
        if "start" in held and message["type"] == "http.response.body":
            held["body"] += message.get("body", b"")
            if message.get("more_body", False):
                return
            start, body = held.pop("start"), held.pop("body")
            try:
                payload = json.dumps(complete(json.loads(body), sorted(routes))).encode()
            except ValueError:  # not JSON after all: pass it on untouched
                payload = body
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            await send({**start, "headers": [*headers, (b"content-length", str(len(payload)).encode())]})
            await send({"type": "http.response.body", "body": payload, "more_body": False})
            return
        await send(message)

    return wrapped


def _json_errors(send: Any) -> Any:
    """Rewrite plain-text error responses of the framework (404, 405, 400 ...) into the service's JSON."""
    held: dict[str, Any] = {}

    async def wrapped(message: Any) -> None:
        if message["type"] == "http.response.start":
            status = message["status"]
            ctype = next((v for k, v in message.get("headers", []) if k.lower() == b"content-type"), b"")
            if status >= 400 and not ctype.startswith(b"application/json") and status in _PLAIN_ERRORS:
                held["start"] = message
                held["body"] = b""
                return
            await send(message)
            return
        if "start" in held and message["type"] == "http.response.body":
            held["body"] += message.get("body", b"")
            if message.get("more_body", False):
                return
            status = held["start"]["status"]
            text = held["body"].decode("utf-8", "replace").strip() or _PLAIN_ERRORS[status].replace("_", " ")
            extra = [(k, v) for k, v in held["start"].get("headers", []) if k.lower() in (b"allow", b"retry-after")]
            held.clear()
            await send_json(send, status, error_body(_PLAIN_ERRORS[status], text[:500]), headers=extra)
            return
        await send(message)

    return wrapped

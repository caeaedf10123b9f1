"""The HTTP/1.1 protocol of the service's workers: uvicorn's h11 protocol with a header deadline.

uvicorn closes an idle keep-alive connection after ``timeout_keep_alive`` but has no deadline for the
request line and headers: a connection that sends nothing, or trickles a header a byte at a time, stays
open as long as the client likes (slowloris).  :class:`GuardedH11Protocol` closes a connection whose
request headers are not complete ``header_timeout_s`` after it opened or after its previous response, and
answers a malformed request (a broken ``Content-Length``, a bad request line) with the service's JSON
error instead of uvicorn's plain text.

BentoML builds the uvicorn config of its workers itself, with ``http="auto"``; :func:`install` makes
``auto`` resolve to this class.  It is called when the service module is imported in a worker, before
uvicorn loads its config (``bentoml serve`` imports the service first, then starts uvicorn).
"""

from __future__ import annotations

import json
import logging
from typing import Any

log = logging.getLogger("styleengine.serving")

_installed: dict[str, Any] = {}


def _protocol_class(header_timeout_s: float) -> type:
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    from .errors import error_body

    class GuardedH11Protocol(H11Protocol):
        header_timeout = header_timeout_s

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._header_timer: Any = None
            self._arm_header_timer()

        def _arm_header_timer(self) -> None:
            self._disarm_header_timer()
            self._header_timer = self.loop.call_later(self.header_timeout, self._header_timeout_expired)

        def _disarm_header_timer(self) -> None:
            timer = getattr(self, "_header_timer", None)
            if timer is not None:
                timer.cancel()
                self._header_timer = None

        def _header_timeout_expired(self) -> None:
            self._header_timer = None
            if self.transport.is_closing():
                return
            if self.cycle is not None and not self.cycle.response_complete:
                return  # headers arrived; the request guard handles its body deadline
            log.info("closing a connection whose request headers did not arrive within %.0f s", self.header_timeout)
            self.transport.close()

        def handle_events(self) -> None:
            before = self.cycle
            super().handle_events()
            if self.cycle is not before and self.cycle is not None:
                self._disarm_header_timer()  # a request's headers are complete

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
                self._arm_header_timer()  # the next request's headers must come in time too

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm_header_timer()
            super().connection_lost(exc)

        def send_400_response(self, msg: str) -> None:
            payload = json.dumps(error_body("invalid_request", f"malformed HTTP request: {msg}")).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()), (b"connection", b"close")]
            try:
                self.transport.write(self.conn.send(h11.Response(status_code=400, headers=headers, reason=b"Bad Request")))
                self.transport.write(self.conn.send(h11.Data(data=payload)))
                self.transport.write(self.conn.send(h11.EndOfMessage()))
            except h11.LocalProtocolError:  # the connection is already in an error state: just close it
                pass
            self.transport.close()

    return GuardedH11Protocol


def install(header_timeout_s: float) -> type:
    """Make uvicorn's ``http="auto"`` protocol the guarded h11 protocol in this process."""
    import uvicorn.protocols.http.auto as auto

    if _installed.get("timeout") != header_timeout_s:
        cls = _protocol_class(header_timeout_s)
        auto.AutoHTTPProtocol = cls  # type: ignore[misc]
        _installed.update(timeout=header_timeout_s, cls=cls)
    return _installed["cls"]

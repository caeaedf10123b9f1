"""Cooperative cancellation for long-running inference: request timeouts, clients gone, shutdown.

A pipeline cannot be interrupted from outside a thread, so work stops where the pipeline checks.  The
server runs every batch group under a :class:`CancelToken` held in a context variable (so
``Style.infer``'s signature stays as it is) and checks it itself between batch groups; a style whose
``infer`` loops (diffusion steps, optimisation iterations, tiles) checks it between steps::

    from styleengine import cancel

    for step in range(steps):
        cancel.check()                      # raises cancel.Cancelled once the request's deadline passed
        ...

    # or hand the diffusion loop a callback: it stops when the callback returns False
    latents = denoise(..., callback=cancel.step_callback())

Outside a token (the CLI, tests, notebooks) every function here is a no-op, so styles can call them
unconditionally.  Deadlines are ``time.monotonic()`` values of the process that runs the style.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

__all__ = ["CancelToken", "Cancelled", "check", "current", "is_cancelled", "progress", "step_callback", "use_token"]


class Cancelled(Exception):
    """The work was cancelled (deadline passed, request abandoned, server stopping)."""

    def __init__(self, reason: str = "cancelled") -> None:
        super().__init__(reason)
        self.reason = reason


class CancelToken:
    """Cancelled explicitly (:meth:`cancel`, from any thread) or implicitly once ``deadline`` passes."""

    def __init__(
        self, deadline: float | None = None, *, reason: str = "deadline exceeded", on_progress: Callable[[dict[str, Any]], None] | None = None
    ) -> None:
        self.deadline = deadline
        self._deadline_reason = reason
        self._event = threading.Event()
        self._reason = ""
        #: Called by :func:`progress` with what the work reports (task endpoints show it as status).
        self.on_progress = on_progress
        #: The last report (``step``, ``total``, ``losses``, ``preview``, ...), None before the first.
        self.last_progress: dict[str, Any] | None = None

    def cancel(self, reason: str = "cancelled") -> None:
        if not self._event.is_set():
            self._reason = reason
            self._event.set()

    @property
    def cancelled(self) -> bool:
        if self._event.is_set():
            return True
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.cancel(self._deadline_reason)
            return True
        return False

    @property
    def reason(self) -> str:
        return self._reason

    def remaining(self) -> float | None:
        """Seconds left before the deadline (None: no deadline)."""
        return None if self.deadline is None else self.deadline - time.monotonic()

    def check(self) -> None:
        if self.cancelled:
            raise Cancelled(self._reason)


_current: ContextVar[CancelToken | None] = ContextVar("styleengine_cancel_token", default=None)


@contextlib.contextmanager
def use_token(token: CancelToken | None) -> Iterator[CancelToken | None]:
    """Make ``token`` the current one for the code run inside (this thread / task only)."""
    reset = _current.set(token)
    try:
        yield token
    finally:
        _current.reset(reset)


def current() -> CancelToken | None:
    return _current.get()


def is_cancelled() -> bool:
    token = _current.get()
    return token is not None and token.cancelled


def check() -> None:
    """Raise :class:`Cancelled` if the current work was cancelled; a no-op outside a token."""
    token = _current.get()
    if token is not None:
        token.check()


def progress(**info: Any) -> None:
    """Report progress of long work to whoever runs it (a task endpoint, a CLI progress bar).

    Conventional keys: ``step`` and ``total`` (ints), ``losses`` (name -> float), ``preview`` (an
    HxWx3 float32 image in [0, 1], the current result), ``stage`` (a short string).  A no-op outside a
    token; a failing listener never breaks the work."""
    token = _current.get()
    if token is None:
        return
    token.last_progress = info
    if token.on_progress is not None:
        try:
            token.on_progress(info)
        except Exception:  # noqa: BLE001 - progress is advisory
            import logging

            logging.getLogger(__name__).debug("progress listener failed", exc_info=True)


def step_callback() -> Callable[..., bool]:
    """A ``callback(step, total, latents) -> bool`` for step loops (``styleengine.diffusion.loop``):
    returns False, which stops the loop, once the current token is cancelled."""
    token = _current.get()

    def callback(*_: Any) -> bool:
        return token is None or not token.cancelled

    return callback

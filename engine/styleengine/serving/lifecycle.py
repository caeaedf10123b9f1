"""A server that cannot start stops, says why in one line and exits non-zero; it never restarts in a loop.

``bentoml serve`` runs a supervisor process (a circus arbiter) that imports the service module, then
starts worker processes and **respawns any worker that exits**, so a model that fails to load turns into
a restart every few seconds, for ever.  Two layers stop that:

1. **Before any worker starts**: the service module, imported by the supervisor first, runs the torch-free
   preflight (:mod:`.preflight`: weights, artifacts and their digests, runtime packages, devices, warm-up
   sizes inside the exported dims).  A problem prints ``error: <reason>`` and exits with status
   :data:`STARTUP_FAILED` before BentoML has started anything.
2. **A worker that fails during start-up** (weights that do not fit the network, a runtime that fails to
   open a session, warm-up failing) calls :func:`fail_startup`: it logs the reason on one line, writes it
   to the failure file, signals the supervisor (``SIGUSR2``; circus handles HUP/QUIT/INT/TERM/WINCH/CHLD
   only) and waits to be stopped instead of exiting, so it is not respawned.  The supervisor's handler,
   installed by :func:`install_supervisor_handler` when it imported the service, prints the reason, asks
   circus to stop (SIGTERM to itself) and makes the process exit with :data:`STARTUP_FAILED`.

The supervisor records its pid in ``STYLEENGINE_SUPERVISOR_PID`` (workers inherit the environment), so a
worker knows whom to signal.  ``engine serve`` additionally passes ``STYLEENGINE_FAILURE_FILE`` and
reports the reason itself.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("styleengine.serving")

ENV_PID = "STYLEENGINE_SUPERVISOR_PID"
ENV_FAILURE = "STYLEENGINE_FAILURE_FILE"
#: Exit status of a server that could not start (distinct from 1, BentoML's own error exit).
STARTUP_FAILED = 3

_state: dict[str, object] = {}
#: Run before a failed server exits with STARTUP_FAILED (os._exit skips atexit handlers registered earlier).
cleanup: list[Callable[[], None]] = []


def failure_file(pid: int | None = None) -> Path:
    explicit = os.environ.get(ENV_FAILURE)
    if explicit:
        return Path(explicit)
    return Path(tempfile.gettempdir()) / f"styleengine-startup-failure-{pid or os.environ.get(ENV_PID) or os.getpid()}.txt"


def is_worker() -> bool:
    """True in a worker process started by a supervisor that imported the service before us."""
    pid = os.environ.get(ENV_PID)
    return bool(pid) and pid != str(os.getpid()) and pid == str(os.getppid())


def install_supervisor_handler() -> None:
    """In the supervisor (the process that imports the service first): record our pid, and on SIGUSR2
    print a worker's start-up failure and stop the whole server with :data:`STARTUP_FAILED`."""
    if is_worker() or _state.get("installed") or threading.current_thread() is not threading.main_thread():
        return
    os.environ[ENV_PID] = str(os.getpid())
    failure_file().unlink(missing_ok=True)

    def on_failure(signum: int, frame: object) -> None:
        if _state.get("failed"):
            return
        _state["failed"] = True
        try:
            reason = failure_file().read_text().strip() or "a worker failed to start"
        except OSError:
            reason = "a worker failed to start"
        print(f"error: the server could not start: {reason}", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGTERM)  # circus stops the workers and returns

    def exit_status() -> None:
        if _state.get("failed"):
            if not os.environ.get(ENV_FAILURE):  # ours to clean up; engine serve reads its own file
                failure_file().unlink(missing_ok=True)
            for fn in cleanup:
                try:
                    fn()
                except Exception:  # noqa: BLE001 - best effort on the way out
                    pass
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(STARTUP_FAILED)

    signal.signal(signal.SIGUSR2, on_failure)
    atexit.register(exit_status)
    _state["installed"] = True


def fail_startup(reason: str) -> None:
    """A worker could not start: tell the supervisor and wait to be stopped (never return to respawn)."""
    reason = " ".join(str(reason).split())
    log.error("styleengine start-up failed: %s", reason)
    try:
        from ..io import atomic_write_text

        atomic_write_text(failure_file(), reason + "\n")
    except OSError:
        log.debug("cannot write the failure file", exc_info=True)
    pid = os.environ.get(ENV_PID)
    if is_worker() and pid:
        if threading.current_thread() is threading.main_thread():
            # Blocked here, the worker's event loop cannot run uvicorn's own SIGTERM handling: exit on it.
            signal.signal(signal.SIGTERM, lambda *_: os._exit(STARTUP_FAILED))
        os.kill(int(pid), signal.SIGUSR2)
        threading.Event().wait(60)  # the supervisor stops us; if it does not, exit without a respawn loop
    os._exit(STARTUP_FAILED)

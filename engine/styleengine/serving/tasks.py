"""Long jobs as BentoML tasks: ``POST /stylize_task/submit``, ``GET /stylize_task/status``, ``GET
/stylize_task/get``, ``PUT /stylize_task/cancel`` (BentoML's task routes), for styles whose ``infer`` is long
work (``Style.long_running``: an optimisation, many steps).

BentoML's task machinery stores submissions and results; what it does not do (in the open-source server) is
bound how many run, report progress, or stop a running task.  This module adds exactly that, around it:

* :class:`JobManager` -- at most ``max_running`` jobs run at once (each on its own thread, under a
  :class:`~styleengine.cancel.CancelToken` without deadline), at most ``max_queued`` more wait; a submission
  beyond that is refused with **429** before BentoML stores anything.  Each job keeps the last progress its
  style reported through :func:`styleengine.cancel.progress` (step, total, losses, stage; the latest
  intermediate image, PNG on request);
* :class:`TaskGuard` -- ASGI middleware on the task routes: ``submit`` reserves a slot (429 when full) and
  registers the task id BentoML answers; ``status`` answers BentoML's JSON plus ``state`` and ``progress``
  (``?preview=1`` adds the intermediate image, base64 PNG); ``cancel`` cancels the job's token, so the work
  stops at the style's next :func:`~styleengine.cancel.check` (Gatys: before the next iteration), and answers
  200 (BentoML's own cancel is not supported by its local server);
* :func:`run_task` -- the body of the ``@bentoml.task`` endpoint: the parsed request runs through
  ``engine.hook.style_infer`` (plugin wrappers apply) on the runner core's style and sessions, outside the
  batcher (a long job is not a batched request), and the image comes back as PNG.  A cancelled job answers
  409, which BentoML records as failed; ``status`` says ``canceled``.

Limits are serve arguments (``--arg task_max_running=N``, default 1; ``--arg task_max_queued=N``, default 4),
which ``STYLEENGINE_TASK_MAX_RUNNING`` / ``STYLEENGINE_TASK_MAX_QUEUED`` override.  Tasks exist in the ``single`` topology (the API
process runs the model).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from .. import cancel

log = logging.getLogger("styleengine.serving")

TASK_ROUTE = "/stylize_task"
#: Finished jobs remembered for ``status`` (the oldest are forgotten first).
KEEP_FINISHED = 256


class JobLimitError(Exception):
    """No slot for another job (running and queued are full)."""


@dataclass
class Job:
    id: str
    state: str = "queued"  # queued | running | completed | failed | canceled
    token: cancel.CancelToken = field(default_factory=cancel.CancelToken)
    progress: dict[str, Any] = field(default_factory=dict)
    preview: Any = None  # the latest intermediate image (HxWx3 float in [0, 1])
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    error: str | None = None

    def describe(self, with_preview: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"state": self.state, "progress": dict(self.progress)}
        if self.started is not None:
            out["running_s"] = round((self.finished or time.time()) - self.started, 3)
        if self.error:
            out["error"] = self.error
        if with_preview and self.preview is not None:
            from ..data import encode_image

            out["preview"] = base64.b64encode(encode_image(self.preview, "PNG", compress_level=1)).decode()
        return out


class JobManager:
    """Bounded, cancellable long jobs (thread-safe)."""

    def __init__(self, max_running: int = 1, max_queued: int = 4) -> None:
        if max_running < 1 or max_queued < 0:
            raise ValueError(f"need max_running >= 1 and max_queued >= 0, got {max_running}, {max_queued}")
        self.max_running, self.max_queued = max_running, max_queued
        self._lock = threading.Lock()
        self._slots = threading.Semaphore(max_running)
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._reserved = 0

    @classmethod
    def from_env(cls, max_running: int = 1, max_queued: int = 4) -> JobManager:
        """The serve arguments' limits (``task_max_running`` / ``task_max_queued``), overridable by
        ``STYLEENGINE_TASK_MAX_RUNNING`` / ``STYLEENGINE_TASK_MAX_QUEUED``."""
        return cls(int(os.environ.get("STYLEENGINE_TASK_MAX_RUNNING", max_running)), int(os.environ.get("STYLEENGINE_TASK_MAX_QUEUED", max_queued)))

    def active(self) -> int:
        with self._lock:
            return self._reserved + sum(j.state in ("queued", "running") for j in self._jobs.values())

    def reserve(self) -> None:
        """Hold a slot for a submission about to be stored; :class:`JobLimitError` when none is free."""
        with self._lock:
            busy = self._reserved + sum(j.state in ("queued", "running") for j in self._jobs.values())
            if busy >= self.max_running + self.max_queued:
                raise JobLimitError(f"{busy} jobs are running or queued (limit {self.max_running} running + {self.max_queued} queued)")
            self._reserved += 1

    def release(self) -> None:
        with self._lock:
            self._reserved = max(0, self._reserved - 1)

    def register(self, job_id: str, reserved: bool = True) -> Job:
        """The job of a stored submission (turning its reservation into a queued job)."""
        with self._lock:
            if reserved:
                self._reserved = max(0, self._reserved - 1)
            job = self._jobs.get(job_id)
            if job is None:
                job = self._jobs[job_id] = Job(job_id)
            self._forget_old()
            return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def cancel(self, job_id: str, reason: str = "cancelled by the client") -> Job | None:
        job = self.get(job_id)
        if job is not None:
            job.token.cancel(reason)
            with self._lock:
                if job.state == "queued":
                    job.state, job.finished = "canceled", time.time()
        return job

    def run(self, job_id: str, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` as job ``job_id`` (blocking: call it on a worker thread): wait for a running slot, then run
        under the job's token; raises :class:`~styleengine.cancel.Cancelled` when cancelled before or during."""
        job = self.get(job_id)
        if job is None:  # called without a submission (POST /stylize_task directly): bounded all the same
            self.reserve()
            job = self.register(job_id)
        while not self._slots.acquire(timeout=0.05):
            if job.token.cancelled:
                self._finish(job, "canceled")
                raise cancel.Cancelled(job.token.reason)
        try:
            if job.token.cancelled:
                self._finish(job, "canceled")
                raise cancel.Cancelled(job.token.reason)
            job.state, job.started = "running", time.time()

            def on_progress(info: dict[str, Any]) -> None:
                if "preview" in info:
                    job.preview = info["preview"]
                job.progress = {k: v for k, v in info.items() if k != "preview"}

            job.token.on_progress = on_progress
            try:
                with cancel.use_token(job.token):
                    out = fn()
            except cancel.Cancelled:
                self._finish(job, "canceled")
                raise
            except BaseException as exc:
                self._finish(job, "failed", f"{type(exc).__name__}: {exc}")
                raise
            self._finish(job, "canceled" if job.token.cancelled and out is None else "completed")
            return out
        finally:
            self._slots.release()

    def _finish(self, job: Job, state: str, error: str | None = None) -> None:
        with self._lock:
            job.state, job.finished, job.error = state, time.time(), error

    def _forget_old(self) -> None:
        done = [k for k, j in self._jobs.items() if j.state not in ("queued", "running")]
        for k in done[: max(0, len(done) - KEEP_FINISHED)]:
            del self._jobs[k]


# -- the ASGI side ------------------------------------------------------------------------------------------


async def _send_json(send: Any, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
    data = json.dumps(body).encode()
    hdrs = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    hdrs += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": data})


async def _call_capturing(app: Any, scope: Any, receive: Any, send: Any | None = None,
                          on_body: Callable[[int, bytes], bytes | None] | None = None) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Run ``app`` collecting its (small, JSON) response.  With ``send``, the response is passed on as soon as
    its body is complete -- ``on_body(status, body)`` may replace the body first -- and not when ``app`` returns:
    BentoML's submit runs the task as a background task of that very response."""
    status, headers, chunks = 500, [], []
    sent = False

    async def capture(message: dict[str, Any]) -> None:
        nonlocal status, headers, sent
        if message["type"] == "http.response.start":
            status, headers = message["status"], list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body") and send is not None and not sent:
                sent = True
                body = b"".join(chunks)
                if on_body is not None:
                    body = on_body(status, body) or body
                hdrs = [(k, v) for k, v in headers if k.lower() != b"content-length"] + [(b"content-length", str(len(body)).encode())]
                await send({"type": "http.response.start", "status": status, "headers": hdrs})
                await send({"type": "http.response.body", "body": body})

    await app(scope, receive, capture)
    return status, headers, b"".join(chunks)


class TaskGuard:
    """ASGI middleware: bounded submissions (429), status with progress, cancellation that stops the work."""

    def __init__(self, app: Any, manager: JobManager, route: str = TASK_ROUTE) -> None:
        self.app, self.manager, self.route = app, manager, route.rstrip("/")

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.route + "/"):
            await self.app(scope, receive, send)
            return
        action, method = scope["path"][len(self.route) + 1 :], scope["method"]
        query = parse_qs(scope.get("query_string", b"").decode())
        task_id = (query.get("task_id") or [None])[0]
        if action == "submit" and method == "POST":
            try:
                self.manager.reserve()
            except JobLimitError as exc:
                await _send_json(send, 429, {"error": "too_many_jobs", "detail": f"{exc}; retry later"}, {"Retry-After": "5"})
                return
            registered = False

            def on_body(status: int, body: bytes) -> None:
                nonlocal registered
                if status < 400:
                    try:
                        self.manager.register(json.loads(body)["task_id"])
                        registered = True
                    except (ValueError, KeyError, TypeError):
                        pass
                if not registered:
                    self.manager.release()
                    registered = True  # released: nothing more to undo

            try:
                await _call_capturing(self.app, scope, receive, send, on_body)
            finally:
                if not registered:
                    self.manager.release()
            return
        job = self.manager.get(task_id) if task_id else None
        if action == "cancel" and method == "PUT" and job is not None:
            self.manager.cancel(task_id)  # type: ignore[arg-type]
            await _send_json(send, 200, {"task_id": task_id, "status": "canceled", **job.describe()})
            return
        if action == "status" and method == "GET" and job is not None:
            status, headers, body = await _call_capturing(self.app, scope, receive)
            try:
                data = json.loads(body) if status < 400 else {"task_id": task_id}
            except ValueError:
                data = {"task_id": task_id}
            data.update(job.describe(with_preview=(query.get("preview") or ["0"])[0] in ("1", "true")))
            if job.state == "canceled":
                data["status"] = "canceled"
            elif job.state in ("queued", "running"):
                data["status"] = "in_progress"  # BentoML's store may say so too; ours is the fresher word
            await _send_json(send, 200, data)
            return
        await self.app(scope, receive, send)


async def run_task(ctx: Any, manager: JobManager, core: Any, engine: Any, encode: Callable[[Any], bytes]) -> Any:
    """The ``@bentoml.task`` endpoint's body: run the parsed request as a job; answer PNG, or a JSON error."""
    import anyio.to_thread
    from starlette.responses import JSONResponse, Response

    from ..style import StyleRequest
    from .errors import ApiError
    from .runner import _as_float
    from .schema import take_parsed

    try:
        parsed = take_parsed()
        if core is None or not core.ready:
            raise ApiError(503, "not_ready", "the model is not ready", headers={"Retry-After": "1"})
        job_id = getattr(ctx.request.state, "task_id", None) or uuid.uuid4().hex
        style = core.style
        req = StyleRequest(images=_as_float(parsed.images), texts=dict(parsed.texts), seed=parsed.seed, id=f"task-{job_id}")
        cfg = style.parse_config(parsed.params)

        def work() -> Any:
            [res] = engine.hook.style_infer(style=style, sessions=core.sessions, batch=[req], cfg=cfg)
            return res

        try:
            res = await anyio.to_thread.run_sync(manager.run, job_id, work)
        except JobLimitError as exc:
            raise ApiError(429, "too_many_jobs", f"{exc}; retry later", headers={"Retry-After": "5"}) from None
        except cancel.Cancelled as exc:
            raise ApiError(409, "canceled", f"the job was cancelled ({exc.reason}); no result") from None
        data = await anyio.to_thread.run_sync(encode, res.image)
        headers = {"Cache-Control": "no-store"}
        if res.seed is not None:
            headers["X-Seed"] = str(res.seed)
        if res.info.get("losses"):
            headers["X-Losses"] = json.dumps(res.info["losses"], separators=(",", ":"))
        return Response(data, media_type="image/png", headers=headers)
    except ApiError as exc:
        return exc.response()
    except Exception as exc:  # noqa: BLE001 - never leak internals
        log.exception("task failed")
        return JSONResponse({"error": "internal", "detail": f"the job failed: {type(exc).__name__}"}, status_code=500)

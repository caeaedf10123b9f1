"""styleengine.serving.tasks without a server: job limits, progress, cancellation (queued and running), and the
ASGI guard around BentoML-shaped task routes."""

from __future__ import annotations

import json
import threading
import time

import pytest

from styleengine import cancel
from styleengine.serving.tasks import JobLimitError, JobManager, TaskGuard


def test_limits_progress_and_cancel_of_a_running_job():
    m = JobManager(max_running=1, max_queued=1)
    m.reserve()
    m.register("a")
    m.reserve()
    m.register("b")
    with pytest.raises(JobLimitError, match="limit 1 running \\+ 1 queued"):
        m.reserve()
    steps: list[int] = []
    started = threading.Event()

    def work():
        for i in range(1, 1000):
            cancel.check()
            steps.append(i)
            cancel.progress(step=i, total=999, losses={"total": 1.0 / i})
            if i == 3:
                started.set()
            time.sleep(0.01)
        return "done"

    errors: list[BaseException] = []
    t = threading.Thread(target=lambda: errors.append(pytest.raises(cancel.Cancelled, m.run, "a", work).value))
    t.start()
    assert started.wait(10)
    assert m.get("a").state == "running" and m.get("a").describe()["progress"]["step"] >= 3
    m.cancel("a")
    t.join(10)
    assert m.get("a").state == "canceled" and steps[-1] <= m.get("a").progress["step"] + 1
    # b was queued behind a; cancelled before it starts, it never runs
    m.cancel("b")
    assert m.get("b").state == "canceled"
    with pytest.raises(cancel.Cancelled):
        m.run("b", lambda: pytest.fail("a cancelled job ran"))
    assert m.active() == 0
    assert m.run("c", lambda: 42) == 42 and m.get("c").state == "completed"


def test_guard_answers_429_registers_submissions_and_merges_status():
    m = JobManager(max_running=1, max_queued=0)
    ids = iter(["t1", "t2"])

    async def app(scope, receive, send):  # BentoML's shape: submit -> {"task_id"}, status -> {"task_id", "status"}
        if scope["path"].endswith("/submit"):
            body = json.dumps({"task_id": next(ids), "status": "in_progress"}).encode()
        else:
            body = json.dumps({"task_id": "t1", "status": "in_progress", "created_at": "x"}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    from starlette.testclient import TestClient

    client = TestClient(TaskGuard(app, m))
    assert client.post("/stylize_task/submit").json()["task_id"] == "t1"
    r = client.post("/stylize_task/submit")
    assert r.status_code == 429 and r.json()["error"] == "too_many_jobs" and r.headers["retry-after"] == "5"
    m.get("t1").progress = {"step": 5, "total": 10}
    st = client.get("/stylize_task/status", params={"task_id": "t1"}).json()
    assert st["created_at"] == "x" and st["state"] == "queued" and st["progress"] == {"step": 5, "total": 10}
    c = client.put("/stylize_task/cancel", params={"task_id": "t1"})
    assert c.status_code == 200 and m.get("t1").token.cancelled
    assert client.get("/stylize_task/status", params={"task_id": "t1"}).json()["status"] == "canceled"

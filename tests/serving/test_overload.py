"""Overload, timeouts and readiness on a real server, with ``slow-style`` (tests/serving/slow_style.py):
/readyz waits for warm-up, 429 over max_concurrency, 503 when the queue wait passes max_latency_ms,
504 at the request timeout with the work actually stopped, long texts capped."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from serving_helpers import engine_serve, png_bytes, random_image, start_or_fail

WARMUP_DELAY = 8.0
TIMEOUT = 3.0


@pytest.fixture(scope="module")
def step_log(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("slow") / "steps.log"


@pytest.fixture(scope="module")
def server(bento_home, tmp_path_factory, step_log):
    log = tmp_path_factory.mktemp("logs") / "slow-style-server.log"
    srv = engine_serve(
        "slow-style", "--allow-random-weights", "--max-batch-size", "4", "--max-latency-ms", "800",
        "--max-concurrency", "3", "--timeout", str(TIMEOUT), "--arg", f"warmup_delay_s={WARMUP_DELAY}",
        home=bento_home, log_path=log, plugins=("slow_style",), env={"SLOW_STYLE_LOG": str(step_log)},
    )
    yield from start_or_fail(srv, ready=False)


def stylize(server, timeout: float = 30, **fields: str) -> httpx.Response:
    return httpx.post(server.url("/stylize.json"), files={"image": ("in.png", png_bytes(random_image(8, 8)), "image/png")},
                      data=fields, timeout=timeout)


def test_readyz_only_after_warmup(server):
    server.wait_for("/livez")
    assert httpx.get(server.url("/readyz")).status_code == 503  # warm-up has not run yet
    early = stylize(server)
    assert early.status_code == 503 and early.json()["error"] == "not_ready"
    waited = server.wait_for("/readyz", timeout=60)
    assert waited > 0.5
    ok = stylize(server)
    assert ok.status_code == 200, ok.text
    assert ok.json()["seed"] is not None  # a seeded style: the seed drawn for the request is returned
    again = stylize(server, seed="1234")
    assert again.json()["seed"] == 1234 and again.headers["x-seed"] == "1234"


def test_429_over_max_concurrency(server):
    async def go():
        async with httpx.AsyncClient(timeout=30) as c:
            return await asyncio.gather(*[
                c.post(server.url("/stylize.json"), files={"image": ("in.png", png_bytes(random_image(8, 8, i)), "image/png")},
                       data={"steps": "1", "step_ms": "900"})
                for i in range(7)
            ])

    statuses = [r.status_code for r in asyncio.run(go())]
    assert statuses.count(429) >= 3, statuses  # 3 in flight at most
    assert set(statuses) <= {200, 429, 503}, statuses
    assert httpx.get(server.url("/readyz")).status_code == 200


def test_503_when_the_queue_wait_exceeds_max_latency(server):
    async def go():
        async with httpx.AsyncClient(timeout=30) as c:
            slow = asyncio.create_task(c.post(server.url("/stylize.json"), files={"image": ("a.png", png_bytes(random_image(8, 8)), "image/png")},
                                              data={"steps": "1", "step_ms": "2000"}))
            await asyncio.sleep(0.3)
            fast = await c.post(server.url("/stylize.json"), files={"image": ("b.png", png_bytes(random_image(8, 8)), "image/png")})
            return await slow, fast

    slow, fast = asyncio.run(go())
    assert slow.status_code == 200, slow.text
    assert fast.status_code == 503, fast.text
    assert fast.json()["error"] == "overloaded" and fast.headers.get("retry-after") == "1"


def test_504_at_the_timeout_and_the_work_stops(server, step_log):
    # 37 steps of >= 200 ms (sleeps) outlast the 3 s timeout.  The proof that the work stopped is the step
    # log, not a wall-clock bound: fewer than 37 steps ran, no more run later, and no more than fit before
    # the deadline (a step never takes less than its sleep, so a slow machine only lowers the count).
    r = stylize(server, steps="37", step_ms="200")
    assert r.status_code == 504, r.text
    assert r.json()["error"]  # BentoML's timeout middleware answers it: {"error": "Not able to process ..."}
    time.sleep(1.5)

    def steps_done() -> int:
        return sum(1 for line in step_log.read_text().splitlines() if line.endswith(" 37"))

    done = steps_done()
    assert 0 < done < 37
    time.sleep(1.0)
    assert steps_done() == done, "the timed-out request kept running"
    assert done <= int(TIMEOUT / 0.2) + 3


def test_long_text_and_bad_values_refused(server):
    r = stylize(server, note="x" * 17)
    assert r.status_code == 422 and r.json()["error"] == "text_too_long" and r.json()["field"] == "note"
    r = stylize(server, steps="1e9")
    assert r.status_code == 422 and r.json()["field"] == "steps"
    assert stylize(server, note="short").status_code == 200


def test_still_healthy_and_metrics(server):
    assert httpx.get(server.url("/readyz")).status_code == 200
    metrics = httpx.get(server.url("/metrics")).text
    assert 'styleengine_request_duration_seconds_count{endpoint="stylize.json",runtime="torch",status="504",style="slow-style"}' in metrics
    assert stylize(server).status_code == 200

"""The split topology's API -> runner hop under the keep-alive race (issue 12.2's 502 runner_unavailable).

Root cause: BentoML's runner client (aiohttp) keeps idle connections for 15 s, while the runner's worker
closes an idle connection much sooner (uvicorn's keep-alive, 5 s; the service's header deadline).  A request
sent on a pooled connection the runner has just closed fails with ServerDisconnectedError.  Here the runner
closes idle connections after 1 s and the requests come at gaps swept across that second, so some are sent
exactly as the runner closes the connection: each must still be answered 200 (the hop retries a request
that never reached the runner, on a fresh connection)."""

from __future__ import annotations

import time

import httpx
import pytest
from serving_helpers import engine_serve, png_bytes, random_image, start_or_fail

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def split_server(bento_home, tmp_path_factory):
    log = tmp_path_factory.mktemp("logs") / "split.log"
    srv = engine_serve("test-style", "--allow-random-weights", "--topology", "split", "--arg", "header_timeout_s=1",
                       home=bento_home, log_path=log)
    yield from start_or_fail(srv)


def test_requests_after_the_runner_closed_idle_connections(split_server):
    statuses = []
    gaps = [0.90 + 0.005 * k for k in range(40)]  # 0.90 .. 1.095 s
    with httpx.Client(timeout=30) as client:
        for i, gap in enumerate(gaps):
            r = client.post(split_server.url("/stylize.json"), files={"image": ("a.png", png_bytes(random_image(16, 16, i)), "image/png")})
            statuses.append((r.status_code, r.json().get("error")))
            time.sleep(gap)
    bad = [(g, s) for g, s in zip(gaps, statuses, strict=True) if s != (200, None)]
    assert not bad, bad

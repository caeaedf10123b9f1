"""Slow clients and overload on a real server (slow-style, --max-concurrency 4), with exact counts.

* 32 clients that send their headers and then trickle the body (10 bytes/s) hold no concurrency slot: a
  control client's requests all succeed while they are connected, health endpoints answer throughout, and
  each slow client gets 408 ``request_timeout`` at the receipt deadline.
* Connections that send nothing, or trickle their headers, are closed at the header deadline.
* Over the limit, exactly the excess is refused with 429 (the admitted requests hold their slots for
  seconds, so every other request arrives while all slots are taken).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import httpx
import pytest
from serving_helpers import engine_serve, png_bytes, random_image, start_or_fail

pytestmark = pytest.mark.slow

CONCURRENCY = 4
BODY_TIMEOUT = 2.0
HEADER_TIMEOUT = 2.0
SLOW_CLIENTS = 32


@pytest.fixture(scope="module")
def server(bento_home, tmp_path_factory):
    log = tmp_path_factory.mktemp("logs") / "slow-clients.log"
    srv = engine_serve(
        "slow-style", "--allow-random-weights", "--max-batch-size", "4", "--max-concurrency", str(CONCURRENCY), "--timeout", "30",
        "--max-latency-ms", "30000", "--arg", f"body_timeout_s={BODY_TIMEOUT}", "--arg", f"header_timeout_s={HEADER_TIMEOUT}",
        home=bento_home, log_path=log, plugins=("slow_style",),
    )
    yield from start_or_fail(srv)


def _multipart(image: bytes) -> tuple[bytes, str]:
    boundary = "sl0w"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n"
            .encode() + image + f"\r\n--{boundary}--\r\n".encode())
    return body, f"multipart/form-data; boundary={boundary}"


def _read_answer(s: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < 10:
        try:
            chunk = s.recv(65536)
        except (TimeoutError, ConnectionResetError):
            break
        if not chunk:
            break
        data += chunk
    return data


def slow_client(port: int, results: list[bytes], stop: threading.Event) -> None:
    body, ctype = _multipart(png_bytes(random_image(16, 16)))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(f"POST /stylize HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n".encode())
            s.setblocking(False)
            sent, answer = 0, b""
            while sent < len(body) and not stop.is_set():
                try:
                    s.send(body[sent:sent + 1])  # 10 bytes/s
                    sent += 1
                except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                    break
                try:
                    answer += s.recv(65536)
                    if answer:
                        break
                except BlockingIOError:
                    pass
                time.sleep(0.1)
            s.setblocking(True)
            s.settimeout(10)
            results.append(answer + _read_answer(s))
    except OSError as exc:
        results.append(f"error {exc}".encode())


def test_slow_bodies_hold_no_slot_and_get_408(server):
    results: list[bytes] = []
    stop = threading.Event()
    threads = [threading.Thread(target=slow_client, args=(server.port, results, stop), daemon=True) for _ in range(SLOW_CLIENTS)]
    for t in threads:
        t.start()
    time.sleep(0.5)  # all 32 connected and trickling
    control = []
    try:
        for i in range(6):  # more than max_concurrency requests, one after another, while the slow clients are connected
            assert httpx.get(server.url("/readyz"), timeout=10).status_code == 200
            assert httpx.get(server.url("/livez"), timeout=10).status_code == 200
            r = httpx.post(server.url("/stylize.json"), files={"image": ("a.png", png_bytes(random_image(8, 8, i)), "image/png")}, timeout=20)
            control.append(r.status_code)
        still_trickling = sum(t.is_alive() for t in threads)
    finally:
        for t in threads:
            t.join(30)
        stop.set()
    assert control == [200] * 6, control
    assert still_trickling > 0  # the control requests ran while slow clients were still connected
    assert len(results) == SLOW_CLIENTS
    for answer in results:
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), answer[:300]
        assert json.loads(body)["error"] == "request_timeout"


def _closed_within(port: int, payload_steps: list[bytes], limit_s: float) -> tuple[bool, bytes]:
    """Send each step a second apart; True when the server closed the connection (with or without an answer)."""
    with socket.create_connection(("127.0.0.1", port), timeout=limit_s) as s:
        got = b""
        for step in payload_steps:
            try:
                s.sendall(step)
            except (BrokenPipeError, ConnectionResetError):
                return True, got
            time.sleep(1.0)
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(4096)
            except TimeoutError:
                return False, got
            except ConnectionResetError:
                return True, got
            if not chunk:
                return True, got
            got += chunk
        return False, got


def test_idle_and_header_trickling_connections_are_closed(server):
    closed, _ = _closed_within(server.port, [], limit_s=HEADER_TIMEOUT + 10)
    assert closed, "an idle connection stayed open past the header deadline"
    trickle = [b"POST /stylize HTTP/1.1\r\n", b"Host: x\r\n", b"X-A: 1\r\n", b"X-B: 2\r\n", b"X-C: 3\r\n"]
    closed, got = _closed_within(server.port, trickle, limit_s=HEADER_TIMEOUT + 10)
    assert closed, "a connection trickling its headers stayed open past the header deadline"
    if got:
        assert got.startswith(b"HTTP/1.1 408") and b"request_timeout" in got, got[:300]
    assert httpx.get(server.url("/readyz"), timeout=10).status_code == 200


def test_exactly_the_excess_gets_429(server):
    n = CONCURRENCY + 6

    async def go():
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=n)) as c:
            return await asyncio.gather(*[
                c.post(server.url("/stylize.json"), files={"image": ("in.png", png_bytes(random_image(8, 8, i)), "image/png")},
                       data={"steps": "1", "step_ms": "4000"})  # admitted requests hold their slot for 4 s
                for i in range(n)
            ])

    responses = asyncio.run(go())
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * CONCURRENCY + [429] * (n - CONCURRENCY), statuses
    for r in responses:
        if r.status_code == 429:
            assert r.json()["error"] == "too_many_requests" and r.headers["retry-after"] == "1"
    assert httpx.get(server.url("/readyz")).status_code == 200

"""The corpus (corpus.py: every image endpoint field, decoder failure class, header and multipart abuse)
against a real server: no answer is >= 500, every refusal is the documented JSON with a code documented
under its status, and the server stays healthy and correct afterwards."""

from __future__ import annotations

import json
import socket

import httpx
import pytest
from corpus import Case, all_cases

from styleengine.serving.openapi import STATUSES

pytestmark = pytest.mark.slow
CASES = all_cases()
DOCUMENTED = {code: status for status, (_, codes) in STATUSES.items() for code in codes} | {"method_not_allowed": 405, "not_found": 404}


def send_raw(port: int, raw: bytes, timeout: float = 15.0) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(raw)
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            data += chunk
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep:
                headers = dict(line.split(": ", 1) for line in head.decode("latin-1").split("\r\n")[1:] if ": " in line)
                length = int(next((v for k, v in headers.items() if k.lower() == "content-length"), "-1"))
                if 0 <= length <= len(body):
                    break
    head, _, body = data.partition(b"\r\n\r\n")
    if not head:
        return 0, {}, b""  # closed without an answer
    status = int(head.split(b" ", 2)[1])
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in head.decode("latin-1").split("\r\n")[1:] if ": " in line)}
    return status, headers, body


def answer(server, case: Case) -> tuple[int, dict[str, str], bytes]:
    if case.raw is not None:
        return send_raw(server.port, case.raw)
    r = httpx.request(case.method, server.url(case.path), files=case.files, data=case.data or None, content=case.content,
                      headers=case.headers, timeout=30)
    return r.status_code, {k.lower(): v for k, v in r.headers.items()}, r.content


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 60, len(CASES)
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(server, case):
    status, headers, body = answer(server, case)
    assert status != 0, f"{case.name}: connection closed without an answer"
    assert status < 500, f"{case.name}: {status} {body[:300]!r}"
    if case.expect is not None:
        assert status == case.expect, f"{case.name}: {status} {body[:300]!r}"
    if status >= 400:
        assert headers.get("content-type", "").startswith("application/json"), f"{case.name}: {status} {headers} {body[:200]!r}"
        payload = json.loads(body)
        assert set(payload) >= {"error", "detail"} and payload["detail"], payload
        assert DOCUMENTED.get(payload["error"]) == status, f"{case.name}: {status} {payload['error']!r} is not documented under {status}"
        if case.code is not None:
            assert payload["error"] == case.code, f"{case.name}: {payload}"
        assert "Traceback" not in payload["detail"] and "/tmp/" not in payload["detail"]


def test_still_healthy_and_correct_after_the_corpus(server):
    from imaging import encode, noise
    from PIL import Image

    assert httpx.get(server.url("/readyz")).status_code == 200
    assert httpx.get(server.url("/livez")).status_code == 200
    r = httpx.post(server.url("/stylize"), files={"image": ("a.png", encode(Image.fromarray(noise(24, 32)), "PNG"), "image/png")}, timeout=30)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert "Traceback" not in server.log(), server.log()[-3000:]

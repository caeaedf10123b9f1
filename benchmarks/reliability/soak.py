#!/usr/bin/env python
"""Soak a real server: a few concurrent users for minutes, 10 % of requests invalid, and the bars checked.

    python benchmarks/reliability/soak.py --duration 600 --users 4 --out benchmarks/results/<machine>-<date>/soak
    python benchmarks/reliability/soak.py --duration 60            # the short run `make test` does (test_soak.py)
    python benchmarks/reliability/soak.py --url http://127.0.0.1:3000 --pid 1234   # an already running server

Without ``--url`` it starts ``engine serve STYLE`` itself (test-style on torch with random weights by default,
``--serve-arg`` adds serve options, e.g. ``--serve-arg=--topology --serve-arg=split``) on a free loopback port,
in its own process group, and stops it at the end.  Each user loops: a valid request (a small random image)
or, with probability ``--invalid``, one of several invalid ones (truncated PNG, unknown field, NaN
parameter, text as image, wrong content type).

Recorded (``soak.json`` and a markdown summary; figures per ``--window`` seconds too):

* requests, valid and invalid, by status; **errors on valid requests** (anything but 200; bar: 0) and any
  answer >= 500 (bar: 0);
* latency of valid requests: p50 / p99 overall and per window; the **drift** (last window's p50 / first's);
* the server's memory (RSS of its whole process tree) after warm-up and at the end (bar: growth < 10 %),
  open files and threads at both ends.

Exit status 1 when a bar fails, so it can gate CI.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
RSS_GROWTH_BAR = 0.10


def png(h: int, w: int, seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def invalid_request(rng: random.Random, good: bytes) -> dict[str, Any]:
    kind = rng.choice(["truncated", "unknown_field", "nan", "text", "json"])
    if kind == "truncated":
        return {"files": {"image": ("a.png", good[: len(good) // 2], "image/png")}}
    if kind == "unknown_field":
        return {"files": {"image": ("a.png", good, "image/png")}, "data": {"colour": "red"}}
    if kind == "nan":
        return {"files": {"image": ("a.png", good, "image/png")}, "data": {"strength": "NaN"}}
    if kind == "text":
        return {"files": {"image": ("a.png", b"not an image" * 8, "image/png")}}
    return {"content": b'{"image": 1}', "headers": {"content-type": "application/json"}}


@dataclass
class Record:
    t: float
    valid: bool
    status: int
    ms: float


@dataclass
class Sample:
    t: float
    rss_mb: float
    open_files: int
    threads: int


@dataclass
class Soak:
    url: str
    duration: float
    users: int
    invalid: float
    size: int
    records: list[Record] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)

    async def user(self, k: int, t0: float) -> None:
        rng = random.Random(k)
        images = [png(self.size, self.size, 100 * k + i) for i in range(8)]
        async with httpx.AsyncClient(timeout=60) as client:
            i = 0
            while time.monotonic() - t0 < self.duration:
                good = images[i % len(images)]
                i += 1
                valid = rng.random() >= self.invalid
                kwargs = {"files": {"image": ("a.png", good, "image/png")}} if valid else invalid_request(rng, good)
                start = time.monotonic()
                try:
                    r = await client.post(self.url + "/stylize", **kwargs)
                    status = r.status_code
                except httpx.HTTPError:
                    status = 0  # no answer at all (connection refused, reset, timed out)
                self.records.append(Record(start - t0, valid, status, (time.monotonic() - start) * 1000))

    async def run(self, sample: Any) -> None:
        t0 = time.monotonic()

        async def sampler() -> None:
            while time.monotonic() - t0 < self.duration:
                s = sample()
                if s is not None:
                    self.samples.append(Sample(time.monotonic() - t0, *s))
                await asyncio.sleep(2.0)

        await asyncio.gather(sampler(), *(self.user(k, t0) for k in range(self.users)))
        s = sample()
        if s is not None:
            self.samples.append(Sample(time.monotonic() - t0, *s))


def tree_sampler(pid: int | None) -> Any:
    """RSS (MB), open files and threads of the process and all its descendants (None when unknown)."""

    def sample() -> tuple[float, int, int] | None:
        if pid is None:
            return None
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return None
        rss = files = threads = 0
        for p in procs:
            try:
                with p.oneshot():
                    rss += p.memory_info().rss
                    threads += p.num_threads()
                    files += p.num_fds()  # every descriptor: files, sockets, pipes
            except psutil.Error:
                continue
        return rss / 2**20, files, threads

    return sample


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def summarise(soak: Soak, window: float, warmup: float) -> dict[str, Any]:
    valid = [r for r in soak.records if r.valid]
    invalid = [r for r in soak.records if not r.valid]
    by_status: dict[str, dict[str, int]] = {"valid": {}, "invalid": {}}
    for r in soak.records:
        d = by_status["valid" if r.valid else "invalid"]
        d[str(r.status)] = d.get(str(r.status), 0) + 1
    windows = []
    n_windows = max(1, int(np.ceil(soak.duration / window)))
    for w in range(n_windows):
        ms = [r.ms for r in valid if w * window <= r.t < (w + 1) * window and r.status == 200]
        windows.append({"from_s": w * window, "requests": len(ms), "p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99)})
    ok_ms = [r.ms for r in valid if r.status == 200]
    after = [s for s in soak.samples if s.t >= warmup] or soak.samples
    first, last = (after[0], soak.samples[-1]) if after else (None, None)
    growth = (last.rss_mb / first.rss_mb - 1) if first and last and first.rss_mb else None
    # The leak indicator: growth over the second half only (allocator arenas and caches fill during the first
    # minutes and then stay flat; a leak keeps growing).
    half = [s for s in soak.samples if s.t >= soak.duration / 2]
    growth_2nd = (half[-1].rss_mb / half[0].rss_mb - 1) if len(half) >= 2 and half[0].rss_mb else None
    full = [w for w in windows if w["p50_ms"] is not None]
    drift = (full[-1]["p50_ms"] / full[0]["p50_ms"]) if len(full) >= 2 and full[0]["p50_ms"] else None
    summary = {
        "duration_s": soak.duration, "users": soak.users, "invalid_fraction": soak.invalid, "size": soak.size,
        "requests": len(soak.records), "valid": len(valid), "invalid": len(invalid),
        "errors_on_valid": sum(r.status != 200 for r in valid),
        "answers_5xx_or_none": sum(r.status >= 500 or r.status == 0 for r in soak.records),
        "invalid_answered_4xx": sum(400 <= r.status < 500 for r in invalid),
        "by_status": by_status,
        "p50_ms": percentile(ok_ms, 50), "p99_ms": percentile(ok_ms, 99), "p50_drift": drift,
        "windows": windows,
        "rss_mb_after_warmup": first.rss_mb if first else None, "rss_mb_end": last.rss_mb if last else None,
        "rss_growth": growth, "rss_growth_second_half": growth_2nd,
        "open_files": [first.open_files, last.open_files] if first and last else None,
        "threads": [first.threads, last.threads] if first and last else None,
        "samples": [s.__dict__ for s in soak.samples],
    }
    bars = {
        "zero errors on valid requests": summary["errors_on_valid"] == 0,
        "no 5xx or unanswered requests": summary["answers_5xx_or_none"] == 0,
        "every invalid request refused with a 4xx": summary["invalid_answered_4xx"] == len(invalid),
    }
    if growth is not None:
        bars[f"RSS growth under {RSS_GROWTH_BAR:.0%}"] = growth < RSS_GROWTH_BAR
    summary["bars"] = bars
    return summary


def markdown(s: dict[str, Any]) -> str:
    fmt = lambda v, spec=".1f": "n/a" if v is None else format(v, spec)  # noqa: E731
    lines = [
        f"# Soak: {s['duration_s']:.0f} s, {s['users']} users, {s['invalid_fraction']:.0%} invalid, {s['size']}² images",
        "",
        f"- requests: {s['requests']} ({s['valid']} valid, {s['invalid']} invalid)",
        f"- errors on valid requests: **{s['errors_on_valid']}**; 5xx or unanswered: **{s['answers_5xx_or_none']}**; "
        f"invalid refused with 4xx: {s['invalid_answered_4xx']}/{s['invalid']}",
        f"- valid latency: p50 {fmt(s['p50_ms'])} ms, p99 {fmt(s['p99_ms'])} ms; p50 drift (last window / first) {fmt(s['p50_drift'], '.2f')}",
        f"- server RSS: {fmt(s['rss_mb_after_warmup'])} MB after warm-up -> {fmt(s['rss_mb_end'])} MB at the end "
        f"(growth {fmt(None if s['rss_growth'] is None else 100 * s['rss_growth'])} %; over the second half "
        f"{fmt(None if s.get('rss_growth_second_half') is None else 100 * s['rss_growth_second_half'], '.2f')} %)",
        f"- open descriptors (start, end): {s['open_files']}; threads: {s['threads']}",
        f"- statuses: valid {s['by_status']['valid']}, invalid {s['by_status']['invalid']}",
        "",
        "| window from (s) | requests | p50 ms | p99 ms |",
        "|---|---|---|---|",
        *(f"| {w['from_s']:.0f} | {w['requests']} | {fmt(w['p50_ms'])} | {fmt(w['p99_ms'])} |" for w in s["windows"]),
        "",
        "bars: " + ", ".join(f"{k}: {'PASS' if v else 'FAIL'}" for k, v in s["bars"].items()),
    ]
    return "\n".join(lines) + "\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(style: str, serve_args: list[str], log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "True", "HF_HUB_OFFLINE": "1",
           "BENTOML_HOME": os.environ.get("BENTOML_HOME") or tempfile.mkdtemp(prefix="soak-bentoml-")}
    cmd = [sys.executable, "-m", "styleengine", "serve", style, "--port", str(port), *serve_args]
    log = open(log_path, "wb")  # noqa: SIM115 - the server's lifetime
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"error: the server exited with {proc.returncode}; see {log_path}")
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    stop_server(proc)
    raise SystemExit(f"error: the server was not ready within 180 s; see {log_path}")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="soak this running server instead of starting one")
    ap.add_argument("--pid", type=int, help="with --url: the server's pid, for memory, files and threads")
    ap.add_argument("--style", default="test-style")
    ap.add_argument("--serve-arg", action="append", default=[], help="extra `engine serve` argument (repeatable)")
    ap.add_argument("--duration", type=float, default=600.0, help="seconds [600]")
    ap.add_argument("--users", type=int, default=4)
    ap.add_argument("--invalid", type=float, default=0.10, help="fraction of invalid requests [0.10]")
    ap.add_argument("--size", type=int, default=64, help="image side [64]")
    ap.add_argument("--window", type=float, default=60.0, help="seconds per latency window [60]")
    ap.add_argument("--warmup", type=float, default=10.0, help="seconds before the RSS baseline is taken [10]")
    ap.add_argument("--out", type=Path, help="folder for soak.json, soak.md and the server log")
    a = ap.parse_args(argv)
    out = a.out or Path(tempfile.mkdtemp(prefix="soak-"))
    out.mkdir(parents=True, exist_ok=True)
    proc = None
    if a.url:
        url, pid = a.url.rstrip("/"), a.pid
    else:
        serve_args = a.serve_arg or ["--allow-random-weights", "--max-batch-size", "4"]
        proc, url = start_server(a.style, serve_args, out / "server.log")
        pid = proc.pid
    try:
        soak = Soak(url, a.duration, a.users, a.invalid, a.size)
        asyncio.run(soak.run(tree_sampler(pid)))
    finally:
        if proc is not None:
            stop_server(proc)
    summary = summarise(soak, a.window, a.warmup)
    (out / "soak.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out / "soak.md").write_text(markdown(summary))
    print(markdown(summary))
    print(f"written: {out / 'soak.json'}, {out / 'soak.md'}")
    return 0 if all(summary["bars"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())

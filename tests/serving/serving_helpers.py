"""Helpers of the serving tests: real `engine serve` / `bentoml serve` processes on 127.0.0.1.

Every server runs in its own process group on a free loopback port with a private ``BENTOML_HOME`` and is
always stopped (SIGTERM to the group, SIGKILL after a grace period).
"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

HERE = Path(__file__).parent
REPO = HERE.parent.parent
#: The pix2pix test model: a tiny U-Net (random weights) with the architecture's real structure.
PIX2PIX_TINY = {"netG": "unet_128", "ngf": 4}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def png_bytes(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, fmt)
    return buf.getvalue()


def random_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)


def server_env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {
        **os.environ,
        "BENTOML_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "True",
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    }
    env.update(extra or {})
    return env


class Server:
    """A server process (its own process group) and how to talk to it."""

    def __init__(self, cmd: list[str], env: dict[str, str], port: int, log_path: Path, cwd: Path | None = None) -> None:
        self.cmd, self.env, self.port, self.log_path, self.cwd = cmd, env, port, log_path, cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self.base = f"http://127.0.0.1:{port}"

    def start(self) -> Server:
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(self.cmd, env=self.env, cwd=self.cwd, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def url(self, path: str) -> str:
        return self.base + path

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_for(self, path: str, status: int = 200, timeout: float = 90.0) -> float:
        """Poll ``path`` until it answers ``status``; returns the seconds waited."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if not self.alive():
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log()[-4000:]}")  # type: ignore[union-attr]
            try:
                if httpx.get(self.url(path), timeout=2).status_code == status:
                    return time.monotonic() - t0
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"{path} did not answer {status} within {timeout}s:\n{self.log()[-4000:]}")

    def stop(self, timeout: float = 25.0) -> int | None:
        """SIGTERM the process group, SIGKILL it after ``timeout``; returns the exit status."""
        if self.proc is None:
            return None
        rc = self.proc.poll()
        try:
            pgid = os.getpgid(self.proc.pid)
        except ProcessLookupError:
            pgid = None
        if pgid is not None:
            try:
                os.killpg(pgid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                rc = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(pgid, signal.SIGKILL)
                rc = self.proc.wait(10)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:  # workers of the group are gone too
                try:
                    os.killpg(pgid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.2)
            else:
                os.killpg(pgid, signal.SIGKILL)
        self._log.close()
        self.proc = None
        return rc


def engine_serve(style: str, *serve_args: str, home: Path, log_path: Path, plugins: tuple[str, ...] = (),
                 env: dict[str, str] | None = None) -> Server:
    port = free_port()
    globals_ = [a for p in plugins for a in ("-p", p)]
    cmd = [sys.executable, "-m", "styleengine", *globals_, "serve", style, "--port", str(port), *serve_args]
    return Server(cmd, server_env(home, env), port, log_path, cwd=REPO)




def start_or_fail(server: Server, ready: bool = True) -> Iterator[Server]:
    """Start, optionally wait for /readyz, yield, and always stop (fixture body)."""
    server.start()
    try:
        if ready:
            server.wait_for("/readyz")
        yield server
    finally:
        server.stop()

"""A server that cannot start exits non-zero, in bounded time, with its reason on one line, and is never
restarted in a loop: `engine serve` and `bentoml serve` of a built Bento, for every start-up failure a user
meets (no weights, a bad weights path, a missing runtime, a corrupt artifact, a warm-up that fails inside the
worker).  Start attempts are counted in the server's log: the runner logs one "opening ... sessions" line
each time a worker tries to load the model.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from serving_helpers import REPO, free_port, server_env

pytestmark = pytest.mark.slow

#: Seconds a failing server may take to exit (BentoML's own import and supervisor start are most of it).
BOUND = 90.0
ATTEMPT = "sessions for"  # "styleengine runner: opening RUNTIME sessions for STYLE (VARIANT)"


def run_to_exit(cmd: list[str], home: Path, cwd: Path, extra_env: dict[str, str] | None = None) -> tuple[int, str, str, float]:
    t0 = time.monotonic()
    try:
        r = subprocess.run(cmd, env=server_env(home, extra_env), cwd=cwd, capture_output=True, text=True, timeout=BOUND, start_new_session=True)
    except subprocess.TimeoutExpired as exc:  # a server that keeps restarting or stays up "not ready"
        out = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        pytest.fail(f"the server did not exit within {BOUND}s: {' '.join(cmd)}\n{out[-3000:]}")
    return r.returncode, r.stdout, r.stderr, time.monotonic() - t0


def engine_serve_cmd(style: str, *args: str, plugins: tuple[str, ...] = ()) -> list[str]:
    globals_ = [a for p in plugins for a in ("-p", p)]
    return [sys.executable, "-m", "styleengine", *globals_, "serve", style, "--port", str(free_port()), *args]


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def assert_one_line_failure(rc: int, stdout: str, stderr: str, *needles: str) -> str:
    assert rc != 0, stdout + stderr
    assert "Traceback" not in stderr and "Traceback" not in stdout, stderr[-3000:]
    errors = error_lines(stderr)
    assert len(errors) == 1, stderr[-3000:]
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


# -- engine serve: failures found before BentoML starts ---------------------------------------------------------
def test_engine_serve_without_weights_says_how_to_get_them(bento_home, tmp_path):
    rc, out, err, _ = run_to_exit(engine_serve_cmd("test-style"), bento_home, REPO)
    line = assert_one_line_failure(rc, out, err, "--allow-random-weights")
    assert "engine train test-style" in line and ATTEMPT not in out + err


def test_engine_serve_with_a_missing_weights_file(bento_home, tmp_path):
    rc, out, err, _ = run_to_exit(engine_serve_cmd("test-style", "--weights", "notthere.pth"), bento_home, tmp_path)
    assert_one_line_failure(rc, out, err, "notthere.pth")
    assert ATTEMPT not in out + err


def test_engine_serve_on_a_runtime_that_is_not_installed(bento_home, test_style_model):
    pytest.importorskip("bentoml")
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("TensorRT is installed here")
    rc, out, err, _ = run_to_exit(engine_serve_cmd("test-style", "--runtime", "tensorrt", "--artifacts", test_style_model["artifacts"]),
                                  bento_home, REPO)
    assert_one_line_failure(rc, out, err, "tensorrt", "make install-tensorrt")


def test_engine_serve_refuses_a_corrupt_artifact(bento_home, test_style_model, tmp_path):
    art = tmp_path / "artifacts"
    shutil.copytree(test_style_model["artifacts"], art)
    onnx = next(art.glob("*.onnx"))
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the middle of the weights
    onnx.write_bytes(bytes(data))
    rc, out, err, _ = run_to_exit(engine_serve_cmd("test-style", "--runtime", "onnxruntime", "--artifacts", str(art)), bento_home, REPO)
    assert_one_line_failure(rc, out, err, onnx.name, "sha256")
    assert ATTEMPT not in out + err


# -- engine serve: a failure inside the worker -------------------------------------------------------------------
def test_a_warm_up_that_fails_in_the_worker_stops_the_server_once(bento_home, tmp_path):
    """The worker opens its sessions, warm-up raises: the server exits 3 with the reason, after one attempt."""
    from styleengine.serving.lifecycle import STARTUP_FAILED

    cmd = engine_serve_cmd("slow-style", "--allow-random-weights", plugins=("slow_style",))
    rc, out, err, took = run_to_exit(cmd, bento_home, REPO, {"SLOW_STYLE_FAIL_INFER": "the model exploded"})
    assert rc == STARTUP_FAILED, out + err
    reason = [line for line in err.splitlines() if line.startswith("error: the server could not start")]
    assert len(reason) == 1 and "warm-up failed at batch size 1" in reason[0] and "the model exploded" in reason[0], err[-3000:]
    assert (out + err).count(ATTEMPT) == 1, (out + err)[-3000:]  # one start, no respawn


# -- bentoml serve of a built Bento --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def own_bento(tmp_path_factory) -> dict[str, object]:
    """A test-style Bento (ONNX Runtime, model packaged) in a BentoML home of its own: the test corrupts it."""
    home = tmp_path_factory.mktemp("bento-startup-home")
    r = subprocess.run([sys.executable, "-m", "styleengine", "-q", "bento", "build", "test-style", "--runtime", "onnxruntime",
                        "--allow-random-weights", "--no-wheels"], env=server_env(home), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    tag = r.stdout.strip().splitlines()[-1]
    info = json.loads(subprocess.run([sys.executable, "-m", "bentoml", "get", tag, "-o", "json"], env=server_env(home), capture_output=True,
                                     text=True, timeout=120).stdout)
    return {"home": home, "tag": tag, "info": info}


def bentoml_serve(tag: str, home: Path, cwd: Path) -> tuple[int, str, str, float]:
    return run_to_exit([sys.executable, "-m", "bentoml", "serve", tag, "--port", str(free_port())], home, cwd)


def test_a_moved_bento_serves_from_its_own_store(own_bento, tmp_path):
    """`bentoml export` + `bentoml import` into another home, served from another folder: nothing points back."""
    from serving_helpers import Server, png_bytes, random_image, start_or_fail

    import httpx

    src_home, tag = own_bento["home"], str(own_bento["tag"])
    archive = tmp_path / "moved.bento"
    r = subprocess.run([sys.executable, "-m", "bentoml", "export", tag, str(archive)], env=server_env(src_home), capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    new_home = tmp_path / "elsewhere-home"
    r = subprocess.run([sys.executable, "-m", "bentoml", "import", str(archive)], env=server_env(new_home), capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert str(src_home) not in json.dumps(own_bento["info"])  # nothing recorded in the Bento names the old home
    port = free_port()
    srv = Server([sys.executable, "-m", "bentoml", "serve", tag, "--port", str(port)], server_env(new_home), port, tmp_path / "moved.log",
                 cwd=tmp_path)
    for server in start_or_fail(srv):
        r = httpx.post(server.url("/stylize"), files={"image": ("a.png", png_bytes(random_image(40, 56)), "image/png")}, timeout=60)
        assert r.status_code == 200 and r.headers.get("x-random-weights") == "true", r.text


def test_bentoml_serve_of_a_bento_whose_model_was_corrupted(own_bento, tmp_path):
    """Damage the packaged ONNX file inside the store: the supervisor's preflight refuses it before any worker."""
    from styleengine.serving.lifecycle import STARTUP_FAILED

    home, tag = Path(own_bento["home"]), str(own_bento["tag"])
    onnx_files = sorted(home.glob("bentos/**/models/**/artifacts/*.onnx")) + sorted(home.glob("models/**/artifacts/*.onnx"))
    assert onnx_files, list(home.rglob("*"))[:50]
    for onnx in onnx_files:
        data = bytearray(onnx.read_bytes())
        data[len(data) // 2] ^= 0xFF
        onnx.write_bytes(bytes(data))
    rc, out, err, took = bentoml_serve(tag, home, tmp_path)
    assert rc == STARTUP_FAILED, (out + err)[-3000:]
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "sha256" in lines[0], err[-3000:]
    assert ATTEMPT not in out + err and "Traceback" not in err


def test_bentoml_serve_of_a_bento_whose_model_was_deleted(own_bento, tmp_path):
    from styleengine.serving.lifecycle import STARTUP_FAILED

    home, tag = Path(own_bento["home"]), str(own_bento["tag"])
    for d in list(home.glob("bentos/**/models/styleengine-test-style-*")) + list(home.glob("models/styleengine-test-style-*")):
        shutil.rmtree(d)
    rc, out, err, took = bentoml_serve(tag, home, tmp_path)
    assert rc != 0 and "Traceback" not in err, (out + err)[-3000:]
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "styleengine-test-style" in lines[0], err[-3000:]
    assert ATTEMPT not in out + err
    assert rc == STARTUP_FAILED

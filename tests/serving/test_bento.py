"""Bentos, offline: `bentoml build` on the root bentofile.yaml, `bentoml serve <tag>` answering a request, and
`engine bento build` bundling the exported model and the wheels."""

from __future__ import annotations

import io
import json
import subprocess

import httpx
import pytest
import yaml
from PIL import Image
from serving_helpers import REPO, Server, free_port, png_bytes, random_image, server_env, start_or_fail

pytestmark = pytest.mark.slow


def bentoml(*args: str, home, cwd=REPO, timeout=300) -> subprocess.CompletedProcess[str]:
    import sys

    return subprocess.run([sys.executable, "-m", "bentoml", *args], cwd=cwd, env=server_env(home), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def root_bento(pix2pix_model, bento_home) -> str:
    # The default Bento serves trained pix2pix weights; the test model is random, which has to be said.
    r = bentoml("build", "-o", "tag", "--arg", "allow_random_weights=true", home=bento_home)
    assert r.returncode == 0, r.stdout + r.stderr
    tag = r.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    assert tag.startswith("styleengine:")
    return tag


def test_root_bentofile_builds_offline_and_serves(root_bento, bento_home, tmp_path):
    info = json.loads(bentoml("get", root_bento, "-o", "json", home=bento_home).stdout)  # its YAML output is not escaped
    assert info["args"]["style"] == "pix2pix" and info["args"]["runtime"] == "onnxruntime"
    # One API worker: the single topology, where the API service itself holds the model.
    api = next(s for s in info["services"] if s["name"] == "styleengine")
    assert api["models"] and api["models"][0]["tag"].startswith("styleengine-pix2pix-eval:")  # packaged

    import sys

    port = free_port()
    srv = Server([sys.executable, "-m", "bentoml", "serve", root_bento, "--port", str(port)], server_env(bento_home), port,
                 tmp_path / "bento-serve.log", cwd=tmp_path)
    for server in start_or_fail(srv):
        r = httpx.post(server.url("/stylize"), files={"image": ("a.png", png_bytes(random_image(96, 160)), "image/png")}, timeout=60)
        assert r.status_code == 200 and r.headers["content-type"] == "image/png", r.text
        assert Image.open(io.BytesIO(r.content)).size == (160, 96)  # resized to the graph's multiple and back
        info = httpx.get(server.url("/ui/info.json")).json()
        assert info["style"] == "pix2pix" and info["runtime"] == "onnxruntime"
        assert "127.0.0.1" in server.log()  # loopback unless --host says otherwise


def test_bentoml_serve_from_the_repository_root(pix2pix_model, bento_home, tmp_path):
    """`bentoml serve` in the root: bentofile.yaml's service and its args (pix2pix, onnxruntime, the stored model)."""
    import sys

    port = free_port()
    srv = Server([sys.executable, "-m", "bentoml", "serve", "--port", str(port), "--arg", "allow_random_weights=true"],
                 server_env(bento_home), port, tmp_path / "root-serve.log", cwd=REPO)
    for server in start_or_fail(srv):
        info = httpx.get(server.url("/ui/info.json")).json()
        assert info["style"] == "pix2pix" and info["runtime"] == "onnxruntime"
        r = httpx.post(server.url("/stylize"), files={"image": ("a.png", png_bytes(random_image(128, 128)), "image/png")}, timeout=60)
        assert r.status_code == 200 and r.headers["content-type"] == "image/png", r.text


def test_engine_bento_build_packages_model_and_wheels(test_style_model, bento_home):
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "styleengine", "-q", "bento", "build", "test-style", "--runtime", "onnxruntime", "--model",
         test_style_model["tag"], "--allow-random-weights", "--max-batch-size", "4"],
        cwd=REPO, env=server_env(bento_home), capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 0, r.stderr
    tag = r.stdout.strip().splitlines()[-1]
    assert tag.startswith("styleengine-test-style:")
    name, version = tag.split(":")
    path = bento_home / "bentos" / name / version
    info = yaml.safe_load(open(f"{path}/bento.yaml"))
    assert info["args"]["model"].startswith("styleengine-test-style-default:") and not info["args"]["model"].endswith(":latest")
    assert info["args"]["max_batch_size"] in (4, "4")
    import os

    wheels = os.listdir(f"{path}/env/python/wheels")
    assert any(w.startswith("styleengine-") for w in wheels) and any(w.startswith("styleengine_test_style-") for w in wheels)
    reqs = open(f"{path}/env/python/requirements.txt").read()
    assert "torch==2.13.0" in reqs and "onnxruntime" in reqs and "nvidia" not in reqs
    assert not (REPO / "build").exists()  # wheels are built from a copy, not in the source tree

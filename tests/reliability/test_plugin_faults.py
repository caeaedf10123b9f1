"""Plugin faults never take the CLI or the server down: a plugin that raises at import, one whose import
hangs, one that calls sys.exit at import, and one whose registration hook raises are each skipped with a
warning naming the distribution, while every other style keeps working (CLI and a real server)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from serving_helpers import REPO, engine_serve, png_bytes, random_image, start_or_fail
from support import make_dist

pytestmark = pytest.mark.slow

FAULTS = {
    "raises-dist": ("raises", "mod_fault_raises", "raise RuntimeError('the plugin is broken')\n"),
    "hangs-dist": ("hangs", "mod_fault_hangs", "import time\ntime.sleep(3600)\n"),
    "exits-dist": ("exits", "mod_fault_exits", "import sys\nsys.exit(7)\n"),
    "register-dist": ("register", "mod_fault_register",
                      "import styleengine\n\n@styleengine.hookimpl\ndef register_styles(register):\n    raise ValueError('cannot register')\n"),
}


@pytest.fixture(scope="module")
def faulty_env(tmp_path_factory) -> dict[str, str]:
    site = tmp_path_factory.mktemp("faulty-site")
    for dist, (entry, module, src) in FAULTS.items():
        make_dist(site, dist, {entry: module}, {module: src})
    # Only these plugins (the allow-list), and a deadline well above a cold torch import on a busy machine
    # (test-style imports torch; diffusers, which instruct_pix2pix imports, can take longer still).
    allow = ",".join(["test-style", *(entry for entry, _, _ in FAULTS.values())])
    return {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]), "STYLEENGINE_PLUGIN_IMPORT_TIMEOUT": "15",
            "STYLEENGINE_PLUGINS": allow}


def test_cli_lists_the_faults_and_keeps_working(faulty_env, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **faulty_env}
    r = subprocess.run([sys.executable, "-m", "styleengine", "styles", "--json"], env=env, cwd=tmp_path, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    skipped = {s["distribution"]: s["error"] for s in data["skipped"]}
    assert set(skipped) == set(FAULTS), skipped
    assert "the plugin is broken" in skipped["raises-dist"]
    assert "did not finish within 15 s" in skipped["hangs-dist"]
    assert "SystemExit" in skipped["exits-dist"]
    assert "cannot register" in skipped["register-dist"]
    assert any(s["name"] == "test-style" for s in data["styles"])
    img = tmp_path / "in.png"
    img.write_bytes(png_bytes(random_image(16, 16)))
    r = subprocess.run([sys.executable, "-m", "styleengine", "infer", "test-style", str(img), "--allow-random-weights"], env=env,
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "hangs-dist" in r.stderr and "Traceback" not in r.stderr  # warned, on one line each


def test_server_starts_and_serves_beside_faulty_plugins(faulty_env, bento_home, tmp_path):
    srv = engine_serve("test-style", "--allow-random-weights", home=bento_home, log_path=tmp_path / "faulty.log", env=faulty_env)
    for server in start_or_fail(srv):
        r = httpx.post(server.url("/stylize"), files={"image": ("a.png", png_bytes(random_image(16, 16)), "image/png")}, timeout=30)
        assert r.status_code == 200, r.text
        assert "register-dist" in server.log()

"""Every installed style serves its tiny configuration on a CPU: `engine serve STYLE` with the style's own
``tiny_model_set`` (as --model-set) and ``tiny_params`` (as --param), random weights where it needs weights,
becomes ready and answers one request built from its input contract.  A style filed later is covered by
installing it: the list comes from the registry.
"""

from __future__ import annotations

import io

import httpx
import pytest
from PIL import Image
from serving_helpers import engine_serve, png_bytes, random_image, start_or_fail

from styleengine.plugins import load_engine

pytestmark = pytest.mark.slow

#: Bound on start-up (import, load, warm-up): the tiny configurations are ready in seconds; this only stops a hang.
READY_S = 120.0
ENGINE = load_engine()
STYLES = sorted(name for name in ENGINE.styles.names() if ENGINE.style_class(name).has("infer"))


def needs_weights(cls) -> bool:
    """The default variant's answer (a style whose variants differ declares it as a property)."""
    return bool(cls(dict(cls.tiny_model_set) or None).needs_weights)


def serve_args(cls) -> list[str]:
    args = ["--allow-random-weights"] if needs_weights(cls) else []
    args += [a for k, v in cls.tiny_model_set.items() for a in ("--model-set", f"{k}={v}")]
    args += [a for k, v in cls.tiny_params.items() for a in ("--param", f"{k}={v}")]
    return [*args, "--max-batch-size", "2"]


def request_for(cls) -> dict:
    files = []
    for i, f in enumerate(cls.inputs.images):
        if f.required or f.multiple:  # optional "several" fields are the style images (AdaIN, Gatys)
            files.append((f.name, (f"{f.name}.png", png_bytes(random_image(72, 88, seed=i)), "image/png")))
    data = {t.name: "make it snowy" for t in cls.inputs.texts if t.required}
    if not files:  # no required image (text-to-image): the service takes multipart/form-data only, so send the
        return {"files": [(k, (None, v)) for k, v in data.items()]}  # texts as multipart fields
    return {"files": files, "data": data}


@pytest.mark.parametrize("name", STYLES)
def test_style_serves_its_tiny_configuration_on_torch(name, bento_home, tmp_path):
    cls = ENGINE.style_class(name)
    srv = engine_serve(name, *serve_args(cls), home=bento_home, log_path=tmp_path / f"{name}.log")
    srv.start()
    try:
        took = srv.wait_for("/readyz", timeout=READY_S)
        r = httpx.post(srv.url("/stylize"), timeout=120, **request_for(cls))
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "image/png"
        assert (r.headers.get("x-random-weights") == "true") == needs_weights(cls)
        out = Image.open(io.BytesIO(r.content))
        assert out.mode == "RGB" and min(out.size) > 0
        print(f"{name}: ready in {took:.1f} s")
    finally:
        srv.stop()


def test_instruct_pix2pix_serves_tiny_exported_artifacts_on_onnxruntime(bento_home, tmp_path):
    """The tiny InstructPix2Pix exported with the tiny profile (latents 8..32): the server picks a working
    resolution inside those dims (the reference's 512 is outside them), logs each warm-up bucket and answers."""
    import subprocess
    import sys

    from serving_helpers import REPO, server_env

    if "instruct_pix2pix" not in ENGINE.styles.names():
        pytest.skip("the instruct_pix2pix plugin is not installed")
    out = tmp_path / "artifacts"
    profile = REPO / "export" / "profiles" / "instruct_pix2pix-tiny.yaml"
    r = subprocess.run([sys.executable, "-m", "styleengine", "-q", "export", "instruct_pix2pix", "--model-set", "size=tiny",
                        "--allow-random-weights", "--profile", str(profile), "--exporter", "torchscript", "--out", str(out)],
                       env=server_env(bento_home), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    srv = engine_serve("instruct_pix2pix", "--runtime", "onnxruntime", "--artifacts", str(out), "--allow-random-weights", "--param", "steps=2",
                       "--max-batch-size", "2", home=bento_home, log_path=tmp_path / "ip2p-ort.log")
    for server in start_or_fail(srv):
        log = server.log()
        assert "warm-up: batch 1 at" in log and "warm-up: batch 2 at" in log and " done in " in log, log[-3000:]  # visible progress
        cls = ENGINE.style_class("instruct_pix2pix")
        r = httpx.post(server.url("/stylize"), timeout=120, **request_for(cls))
        assert r.status_code == 200 and r.headers["x-random-weights"] == "true", r.text
        assert Image.open(io.BytesIO(r.content)).size == (88, 72)

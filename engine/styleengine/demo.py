"""``make demo``: an offline tour of the engine on a bundled image (scikit-image's sample data).

Until a real style is installed it runs the test style: infer (torch) → export ONNX (validated) →
infer on ONNX Runtime → ``engine validate``.  Prints each step and where its outputs are.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from click.testing import CliRunner

OUT = Path("demo-output")


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def run(args: list[str]) -> str:
    from .cli import cli

    print("$ engine " + " ".join(args), flush=True)
    t0 = time.perf_counter()
    res = CliRunner().invoke(cli, args, catch_exceptions=False)
    print(res.output.rstrip())
    if res.exit_code != 0:
        print(f"step failed with status {res.exit_code}", file=sys.stderr)
        sys.exit(res.exit_code)
    print(f"({time.perf_counter() - t0:.1f}s)")
    return res.output


def bundled_image(path: Path) -> Path:
    from PIL import Image
    from skimage import data

    Image.fromarray(data.astronaut()).resize((256, 256)).save(path)
    return path


def main() -> None:
    OUT.mkdir(exist_ok=True)
    step("input: scikit-image's astronaut sample")
    img = bundled_image(OUT / "astronaut.png")
    print(img)
    art = OUT / "artifacts" / "test-style"
    step("infer on torch (random weights: the test style has no published ones)")
    run(["infer", "test-style", str(img), "-o", str(OUT / "torch"), "--allow-random-weights"])
    step("export ONNX and validate it against torch at min/opt/max")
    run(["export", "test-style", "--onnx", "--out", str(art), "--allow-random-weights"])
    step("infer on ONNX Runtime from the exported artifacts")
    run(["infer", "test-style", str(img), "-o", str(OUT / "onnxruntime"), "--runtime", "onnxruntime", "--artifacts", str(art), "--allow-random-weights"])
    step("re-validate the artifact folder")
    run(["validate", str(art)])
    print(f"\ndemo outputs are in {OUT.resolve()}")


if __name__ == "__main__":
    main()

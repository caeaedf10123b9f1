"""``make demo``: train a small pix2pix offline, export it, run it on ONNX Runtime, show before/after.

1. builds a paired dataset from scikit-image's bundled photos: A = a photo crop, B = the same crop as a
   pencil sketch computed in code (:func:`pencil_sketch`), in the reference's aligned A|B format; the
   astronaut photo is held out;
2. ``engine train pix2pix`` a small U-Net (unet_128, ngf 16) for a couple of minutes on the CPU (CUDA
   when there is one), the reference's schedule (constant, then linear decay) fitted into ~1000 steps;
3. ``engine export pix2pix`` with the small-model profile (ONNX, validated against torch);
4. ``engine infer pix2pix --runtime onnxruntime`` on the held-out photo, and ``engine validate``;
5. writes ``before_after.png`` (photo | pix2pix on ONNX Runtime | the sketch filter it learnt) and
   prints where everything is.

Everything is offline; ``PIX2PIX_DEMO_STEPS`` changes the number of training steps (default 1000: about a
minute on two idle CPU cores).
Outputs go to ``demo-output/`` (git-ignored); a second run retrains from scratch (the run folder is
replaced).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

OUT = Path("demo-output")
STEPS = int(os.environ.get("PIX2PIX_DEMO_STEPS", "1000"))
TILE = 144  # training tiles; random 128 x 128 crops of them (preprocess=crop) and flips augment
BATCH = 2
TRAIN = {"netG": "unet_128", "ngf": 16, "ndf": 16, "preprocess": "crop", "crop_size": 128, "batch_size": BATCH, "lr": 0.0004}
#: The dims of export/profiles/pix2pix-small.yaml, written here too so an installed (non-repo) demo runs.
PROFILE = """description: pix2pix demo (small models)
dims:
  batch: {min: 1, opt: 1, max: 4}
  height: {min: 128, opt: 128, max: 256}
  width: {min: 128, opt: 128, max: 256}
"""


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def run(args: list[str]) -> str:
    """Run an ``engine`` command in-process with live output; returns its last stdout line."""
    import contextlib
    import io

    from .cli import cli

    print("$ engine " + " ".join(args), flush=True)
    t0 = time.perf_counter()
    buf = io.StringIO()

    class Tee(io.TextIOBase):
        def write(self, s: str) -> int:
            buf.write(s)
            return sys.__stdout__.write(s) if sys.__stdout__ else len(s)

    with contextlib.redirect_stdout(Tee()):
        try:
            cli.main(args=args, prog_name="engine", standalone_mode=False)
        except Exception as exc:  # noqa: BLE001 - a demo step failed: say which, then stop
            print(f"step failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            sys.exit(1)
    print(f"({time.perf_counter() - t0:.1f}s)", flush=True)
    lines = buf.getvalue().strip().splitlines()
    return lines[-1] if lines else ""


# -- the paired dataset ----------------------------------------------------------------------------------
def pencil_sketch(rgb: np.ndarray) -> np.ndarray:
    """The "style" the demo model learns: a pencil sketch (grey level "colour-dodged" by its blurred
    negative, which keeps edges and whitens flat areas), as RGB."""
    from skimage import color, filters

    grey = color.rgb2gray(rgb.astype(np.float32) / 255.0)
    blurred_negative = filters.gaussian(1.0 - grey, sigma=3.0)
    sketch = np.clip(grey / np.maximum(1.0 - blurred_negative, 1e-3), 0.0, 1.0) ** 2
    return np.repeat((sketch * 255 + 0.5).astype(np.uint8)[..., None], 3, axis=-1)


def photos() -> dict[str, np.ndarray]:
    from skimage import data

    images = {
        "coffee": data.coffee(), "chelsea": data.chelsea(), "rocket": data.rocket(),
        "motorcycle": data.stereo_motorcycle()[0], "ihc": data.immunohistochemistry(),
        "hubble": data.hubble_deep_field(), "colorwheel": data.colorwheel(),
    }  # fmt: skip
    return {k: v[..., :3] for k, v in images.items()}


def resize(img: np.ndarray, short: int) -> np.ndarray:
    from PIL import Image

    h, w = img.shape[:2]
    s = short / min(h, w)
    return np.asarray(Image.fromarray(img).resize((round(w * s), round(h * s)), Image.LANCZOS))


def make_dataset(root: Path) -> int:
    """Tiles of each photo at two scales, saved as A|B pairs under train/ (and a few under val/)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    n = 0
    for name, img in photos().items():
        for short in (200, 320):
            small = resize(img, short)
            h, w = small.shape[:2]
            for k in range(6):
                y, x = rng.integers(0, h - TILE + 1), rng.integers(0, w - TILE + 1)
                tile = small[y : y + TILE, x : x + TILE]
                phase = "val" if k == 5 and short == 320 else "train"
                (root / phase).mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.concatenate([tile, pencil_sketch(tile)], 1)).save(root / phase / f"{name}-{short}-{k}.png")
                n += phase == "train"
    return n


def main() -> None:
    from PIL import Image
    from skimage import data

    t_start = time.perf_counter()
    OUT.mkdir(exist_ok=True)
    step("1. a paired dataset from scikit-image's photos: A = photo, B = pencil sketch (computed in code)")
    data_dir = OUT / "data"
    n_pairs = make_dataset(data_dir)
    print(f"{n_pairs} training pairs in {data_dir}/train (A|B side by side, as the reference)")
    held_out = OUT / "astronaut.png"
    astronaut = resize(data.astronaut(), 256)
    Image.fromarray(astronaut).save(held_out)

    # the reference's schedule squeezed into STEPS: constant learning rate for half the epochs, then linear decay
    epochs = max(2, -(-STEPS // -(-n_pairs // BATCH)))
    schedule = {"n_epochs": epochs // 2, "n_epochs_decay": epochs - epochs // 2}
    step(f"2. train pix2pix (unet_128, ngf 16) for {epochs} epochs of {n_pairs} pairs (~{STEPS} steps)")
    run_dir = OUT / "run"
    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run (an old one would be resumed only with --resume)
    sets = [a for k, v in {**TRAIN, **schedule}.items() for a in ("--set", f"{k}={v}")]
    ckpt = run(["train", "pix2pix", "--data", str(data_dir), *sets, "--out", str(run_dir), "--max-steps", str(STEPS),
                "--sample-every", "100", "--checkpoint-every", "100000"])  # fmt: skip
    print(f"checkpoint: {ckpt}; sample grids (input | output | target) in {run_dir / 'samples'}")

    step("3. export ONNX and validate it against torch at min / opt / max")
    profile = Path(__file__).resolve().parents[2] / "export" / "profiles" / "pix2pix-small.yaml"
    if not profile.is_file():
        profile = OUT / "pix2pix-small.yaml"
        profile.write_text(PROFILE)
    art = OUT / "artifacts" / "pix2pix"
    run(["export", "pix2pix", "--weights", ckpt, "--profile", str(profile), "--out", str(art)])

    step("4. stylise a held-out photo on ONNX Runtime (and re-validate the artifacts)")
    out = Path(run(["infer", "pix2pix", str(held_out), "--weights", ckpt, "--runtime", "onnxruntime", "--artifacts", str(art), "-o", str(OUT / "onnxruntime")]))
    run(["validate", str(art)])

    step("5. before / after")
    result = np.asarray(Image.open(out).convert("RGB"))
    panel = np.concatenate([astronaut, result, pencil_sketch(astronaut)], 1)
    Image.fromarray(panel).save(OUT / "before_after.png")
    print(f"photo:        {held_out.resolve()}")
    print(f"pix2pix:      {out.resolve()}")
    print(f"before/after: {(OUT / 'before_after.png').resolve()}  (photo | pix2pix on ONNX Runtime | the filter it learnt)")
    print(f"\ndemo finished in {time.perf_counter() - t_start:.0f}s; outputs are in {OUT.resolve()}")


if __name__ == "__main__":
    main()

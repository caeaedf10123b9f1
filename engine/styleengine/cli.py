"""The ``engine`` command line: composition only, each command a short function over the library."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import click

from . import __version__, cancel

log = logging.getLogger("styleengine")

EXIT_USER = 1
EXIT_TRT_MISSING = 2


class UserError(click.ClickException):
    """A problem the user can fix: printed as one line, exit status 1 (no traceback)."""

    exit_code = EXIT_USER

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


# -- shared plumbing ---------------------------------------------------------------------------------
def _engine(ctx: click.Context) -> Any:
    from .plugins import get_engine

    obj = ctx.find_root().obj
    if obj.get("engine") is None:
        obj["engine"] = get_engine(strict=obj["strict"] or None, extra_plugins=obj["plugins"])
    return obj["engine"]


def _parse_sets(values: Sequence[str]) -> dict[str, Any]:
    """``--set key=value``: values parsed as YAML scalars (``3``, ``0.5``, ``true``, ``[1, 2]``)."""
    import yaml

    out: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set expects key=value, got {item!r}")
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise UserError(f"--set {key}: cannot parse {raw!r}: {exc}") from exc
    return out


def _config(cls: type, values: dict[str, Any], what: str) -> Any:
    from pydantic import ValidationError

    try:
        return cls(**values)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or what}: {e['msg']}" for e in exc.errors())
        raise UserError(f"invalid {what}: {problems}") from exc


def _plan(engine: Any, name: str, weights: str | None, variant: str | None, allow_random: bool, model_sets: dict[str, Any] | None = None,
          runtime: Any = "torch", artifacts: Path | None = None, precision: str = "fp32", device: str = "cpu") -> Any:
    """The checked plan of what to load (see styleengine.loading); problems are one-line UserErrors."""
    from .loading import LoadError, plan_load

    try:
        return plan_load(engine, name, runtime, artifacts=artifacts, weights=weights, variant=variant, model_sets=model_sets,
                         allow_random_weights=allow_random, precision=precision, device=device)
    except LoadError as exc:
        raise UserError(str(exc)) from None


def _load_style(engine: Any, name: str, weights: str | None, variant: str | None, allow_random: bool, model_sets: dict[str, Any] | None = None,
                **plan_options: Any) -> Any:
    from .loading import LoadError, load_style

    plan = _plan(engine, name, weights, variant, allow_random, model_sets, **plan_options)
    try:
        return load_style(engine, plan)
    except LoadError as exc:
        raise UserError(str(exc)) from None


def _default_artifacts(style: Any, precision: str = "fp32") -> Path:
    from .loading import default_artifacts

    return default_artifacts(style.name, style.variant, precision)


def _fail(msg: str, code: int = EXIT_USER) -> NoReturn:
    click.echo(f"error: {msg}", err=True)
    sys.exit(code)


# -- the group -----------------------------------------------------------------------------------------
@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="styleengine")
@click.option("-v", "--verbose", count=True, help="More logging (-vv for debug and tracebacks).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
@click.option("--strict", is_flag=True, envvar="STYLEENGINE_STRICT", help="Fail if any plugin fails to load.")
@click.option("-p", "--plugin", "plugins", multiple=True, metavar="MODULE", help="Load an extra plugin module by import path.")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool, strict: bool, plugins: tuple[str, ...]) -> None:
    """styleengine: train, export (ONNX / TensorRT), run and serve image style-transfer models.

    \b
    Quick tour:
      engine styles                      installed styles and the runtimes usable here
      engine infer STYLE photo.jpg       stylise images (torch, onnxruntime or tensorrt)
      engine export STYLE --onnx         export + validate ONNX; --trt builds TensorRT engines
      engine validate DIR                re-check an exported artifact folder
      engine train STYLE --data DIR      train a style
    """
    logging.basicConfig(level=logging.DEBUG if verbose > 1 else logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("styleengine").setLevel(logging.WARNING if quiet else (logging.INFO if verbose else logging.WARNING) if verbose < 2 else logging.DEBUG)
    ctx.obj = {"strict": strict, "plugins": list(plugins), "verbose": verbose, "quiet": quiet, "engine": None}


def _say(ctx: click.Context, msg: str) -> None:
    if not ctx.find_root().obj.get("quiet"):
        click.echo(msg, err=True)


# -- styles / plugins -----------------------------------------------------------------------------------------
@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def styles(ctx: click.Context, as_json: bool) -> None:
    """List installed styles: aliases, capabilities, runtimes usable here, distribution and version."""
    engine = _engine(ctx)
    runtimes = {e.name: e.obj.availability() for e in engine.runtimes}
    usable = [n for n, (ok, _) in runtimes.items() if ok]
    rows = []
    for e in engine.styles:
        cls = e.obj
        caps = sorted(c.value for c in cls.capabilities)
        rows.append(
            {
                "name": e.name,
                "aliases": list(e.aliases),
                "capabilities": caps,
                "runtimes": usable if "export" in caps else ["torch"],
                "variants": list(cls.variants),
                "distribution": e.distribution,
                "version": e.version,
                "description": cls.description,
            }
        )
    skipped = [s.__dict__ for s in engine.skipped]
    if as_json:
        click.echo(json.dumps({"styles": rows, "runtimes": {n: {"available": ok, "detail": why} for n, (ok, why) in runtimes.items()}, "skipped": skipped}, indent=2))
        return
    if not rows:
        click.echo("no styles installed")
    for r in rows:
        alias = f" ({', '.join(r['aliases'])})" if r["aliases"] else ""
        click.echo(f"{r['name']}{alias}  [{', '.join(r['capabilities'])}]  runtimes: {', '.join(r['runtimes'])}  — {r['distribution']} {r['version']}")
        if r["description"]:
            click.echo(f"    {r['description']}")
    for s in engine.skipped:
        click.echo(f"skipped: {s.message()}", err=True)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--check", is_flag=True, help="Check every plugin (hooks, styles' declarations); exit 1 on errors.")
@click.pass_context
def plugins(ctx: click.Context, as_json: bool, check: bool) -> None:
    """List loaded plugins (with what they registered) and skipped ones (with the error).

    With --check, every plugin is checked and reported as OK, WARNINGS or ERRORS: plugins that failed to
    load, hook implementations no hookspec knows (pluggy's unknown-hook validation), verb hooks that replace
    the engine's call instead of wrapping it, and each style's declarations (styleengine.checks).  The exit
    status is 1 when any plugin has errors, so CI can run it.
    """
    engine = _engine(ctx)
    if check:
        from .checks import check_engine

        reports = check_engine(engine)
        failed = any(r.errors for r in reports)
        if as_json:
            click.echo(json.dumps({"ok": not failed, "plugins": [r.to_dict() for r in reports]}, indent=2))
        else:
            for r in reports:
                what = ", ".join([*(f"style {s}" for s in r.styles), *(f"runtime {x}" for x in r.runtimes)]) or "hooks only"
                click.echo(f"{r.name}: {r.distribution}{' ' + r.version if r.version else ''} ({what}) — {r.status.upper()}")
                for e in r.errors:
                    click.echo(f"    error: {e}")
                for w in r.warnings:
                    click.echo(f"    warning: {w}")
            n_err = sum(bool(r.errors) for r in reports)
            n_warn = sum(bool(r.warnings) and not r.errors for r in reports)
            click.echo(f"{len(reports)} plugins: {len(reports) - n_err - n_warn} ok, {n_warn} with warnings, {n_err} with errors")
        if failed:
            sys.exit(EXIT_USER)
        return
    loaded = [p.__dict__ for p in engine.plugins]
    skipped = [s.__dict__ for s in engine.skipped]
    if as_json:
        click.echo(json.dumps({"loaded": loaded, "skipped": skipped}, indent=2, default=list))
    else:
        for p in engine.plugins:
            what = ", ".join([*(f"style {s}" for s in p.styles), *(f"runtime {r}" for r in p.runtimes)]) or "hooks only"
            click.echo(f"{p.name}: {p.distribution} {p.version} ({p.module}) — {what}")
        for s in engine.skipped:
            click.echo(f"SKIPPED {s.message()}")


@cli.group("plugin")
def plugin_group() -> None:
    """Write plugins: start one from the template (see docs/writing-a-plugin.md)."""


@plugin_group.command("new")
@click.argument("name")
@click.option("--dir", "dest", type=click.Path(file_okay=False, path_type=Path), default=Path("."), show_default=True,
              help="Folder to create styleengine-NAME in.")
@click.option("--template", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Template folder [examples/styleengine-tonemap of this checkout, or $STYLEENGINE_TEMPLATE].")
@click.pass_context
def plugin_new(ctx: click.Context, name: str, dest: Path, template: Path | None) -> None:
    """Create styleengine-NAME (package styleengine_NAME, style NAME) from the template plugin.

    The copy is a working tone-mapping style with its tests (the conformance suite); install it with
    `pip install -e DIR`, then run its tests and change it into your style.
    """
    from .scaffold import ScaffoldError, new_plugin

    try:
        out = new_plugin(name, dest, template)
    except ScaffoldError as exc:
        raise UserError(str(exc)) from None
    _say(ctx, f"created {out}: pip install -e {out} && pytest {out / 'tests'}")
    click.echo(str(out))


# -- export / validate ------------------------------------------------------------------------------------
@cli.command()
@click.argument("style_name", metavar="STYLE")
@click.option("--onnx", "do_onnx", is_flag=True, default=True, help="Export ONNX and validate it (always done).")
@click.option("--trt", is_flag=True, help="Also build TensorRT engines (needs the tensorrt extra and a GPU).")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "bf16"]), default=None, help="Engine precision [profile or fp32].")
@click.option("--int8", is_flag=True, help="Also write each graph's int8 static-quantised ONNX (lossy; calibrated on the style's example inputs, PSNR vs fp32 torch in the manifest).")
@click.option("--profile", "profile_path", type=click.Path(dir_okay=False, path_type=Path), help="Export profile YAML (export/profiles/).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Output folder [export/artifacts/STYLE/VARIANT].")
@click.option("--variant", help="Export variant of the style (see `engine styles`).")
@click.option("--weights", help="Weights: a checkpoint path or hf://org/repo@rev.")
@click.option("--allow-random-weights", is_flag=True, help="Export randomly initialised weights (latency work, tests).")
@click.option("--exporter", type=click.Choice(["dynamo", "torchscript"]), default=None, help="torch.onnx exporter [profile or dynamo].")
@click.option("--graph", "graphs", multiple=True, help="Only export these graphs.")
@click.option("--no-validate", is_flag=True, help="Skip the onnxruntime parity check (not recommended).")
@click.option("--model-set", "model_sets", multiple=True, metavar="KEY=VALUE", help="Model config override (random weights).")
@click.option("--timing-cache", type=click.Path(dir_okay=False, path_type=Path), help="TensorRT timing cache file.")
@click.option("--bento-model", is_flag=True, help="Also store the artifacts (and weights) in the BentoML model store as styleengine-STYLE-VARIANT.")
@click.pass_context
def export(ctx: click.Context, style_name: str, do_onnx: bool, trt: bool, precision: str | None, profile_path: Path | None,
           out: Path | None, variant: str | None, weights: str | None, allow_random_weights: bool, exporter: str | None,
           graphs: tuple[str, ...], no_validate: bool, model_sets: tuple[str, ...], timing_cache: Path | None,
           bento_model: bool, int8: bool = False) -> None:
    """Export STYLE's graphs to ONNX, validate them against torch, and optionally build TensorRT engines.

    Writes ONNX files and manifest.json (versions, sha256s, dims, tolerances, measured parity) to
    --out atomically.  With --trt where TensorRT is missing, the validated ONNX is kept, the
    equivalent trtexec command is printed, and the exit status is 2.
    """
    from .export.options import ExportOptions, ExportProfile
    from .export.pipeline import TensorRTUnavailable

    engine = _engine(ctx)
    style = _load_style(engine, style_name, weights, variant, allow_random_weights, _parse_sets(model_sets))
    if not style.has("export"):
        raise UserError(f"style {style.name} has no exportable graph (capabilities: {sorted(c.value for c in style.capabilities)})")
    profile = ExportProfile.load(profile_path) if profile_path else ExportProfile()
    prec = precision or profile.precision or "fp32"
    opts = ExportOptions(
        out_dir=out or _default_artifacts(style, prec),
        trt=trt,
        int8=int8,
        precision=prec,
        exporter=exporter or profile.exporter or "dynamo",
        profile=profile,
        validate=not no_validate,
        graphs=graphs or None,
        timing_cache=timing_cache,
        extra={"progress": lambda m: _say(ctx, m)},
    )
    t0 = time.perf_counter()
    try:
        result = engine.hook.style_export(style=style, options=opts)
    except TensorRTUnavailable as exc:
        click.echo(f"ONNX exported and validated in {exc.result.out_dir}", err=True)
        click.echo(f"error: {exc}", err=True)
        click.echo("equivalent trtexec command(s):", err=True)
        for cmd in exc.result.trtexec:
            click.echo(f"  {cmd}", err=True)
        if bento_model:  # the validated ONNX is worth storing: a TensorRT runner builds its engines at start-up
            _say(ctx, f"stored BentoML model {_store_bento_model(style, exc.result.out_dir)}")
        sys.exit(EXIT_TRT_MISSING)
    _say(ctx, f"done in {time.perf_counter() - t0:.1f}s: {result.manifest_path}")
    if bento_model:
        _say(ctx, f"stored BentoML model {_store_bento_model(style, result.out_dir)}")
    click.echo(str(result.out_dir))


def _store_bento_model(style: Any, out_dir: Path) -> str:
    try:
        from .serving.bento import save_model
    except ImportError as exc:
        raise UserError(f"--bento-model needs BentoML: pip install 'styleengine[serving]' ({exc})") from exc
    return save_model(style, out_dir)


@cli.command()
@click.argument("artifact_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--weights", help="Weights the artifacts were exported from (default: as recorded).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def validate(ctx: click.Context, artifact_dir: Path, weights: str | None, as_json: bool) -> None:
    """Re-check an artifact folder: file hashes against the manifest, then onnxruntime vs torch parity."""
    from .export.manifest import Manifest
    from .export.validate import session_for_onnx, validate_graph, worst
    from .runtime.base import SessionOptions
    from .runtime.torch import TorchSession

    engine = _engine(ctx)
    manifest = Manifest.load(artifact_dir)
    problems = manifest.verify_files(artifact_dir)
    if problems:
        raise UserError("; ".join(problems))
    cls = engine.style_class(manifest.style)
    style = cls(manifest.model_config_, variant=manifest.variant)
    src = weights or (manifest.weights or {}).get("path")
    if src:
        style.load_weights(src)
    report: dict[str, Any] = {}
    ok = True
    for spec in style.graphs():
        rec = manifest.graphs.get(spec.name)
        if rec is None or rec.onnx is None:
            continue
        spec = spec.with_dims({k: v for k, v in spec_dims(rec.spec).items() if k in spec.dims})
        parity = validate_graph(spec, TorchSession(spec, SessionOptions()), session_for_onnx(spec, artifact_dir / rec.onnx))
        report[spec.name] = parity
        ok &= parity["passed"]
        w = worst(parity)
        if not as_json:
            click.echo(f"{spec.name}: {'ok' if parity['passed'] else 'FAILED'}  max |err| {w['max_abs']:.3g}  PSNR {w['psnr']:.1f} dB")
    if as_json:
        click.echo(json.dumps(report, indent=2))
    if not ok:
        sys.exit(EXIT_USER)


@cli.command("import-engine")
@click.argument("artifact_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--graph", required=True, help="The graph the plan was built from (a name in the manifest).")
@click.option("--plan", "plan_file", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The plan trtexec wrote (--saveEngine).")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "bf16"]), default=None, help="The plan's precision [the folder's].")
@click.option("--tensorrt-version", help="Without TensorRT here: the version that built the plan (checked again at load).")
@click.option("--compute-capability", help="Without TensorRT here: the GPU's compute capability, e.g. 9.0 (checked again at load).")
@click.option("--gpu", "gpu_name", help="Without TensorRT here: the GPU's name (informational).")
@click.pass_context
def import_engine(ctx: click.Context, artifact_dir: Path, graph: str, plan_file: Path, precision: str | None,
                  tensorrt_version: str | None, compute_capability: str | None, gpu_name: str | None) -> None:
    """Record a TensorRT plan built with trtexec in ARTIFACT_DIR's manifest, so `--runtime tensorrt` serves it.

    Where tensorrt imports, the plan is deserialised on this GPU and its TensorRT version, compute
    capability, tensor names and optimisation profile are read back and checked against the graph;
    elsewhere, give --tensorrt-version and --compute-capability and the runtime re-checks the plan at load.
    """
    from .export.plan_import import import_plan

    rec = import_plan(artifact_dir, graph, plan_file, precision=precision, tensorrt_version=tensorrt_version,
                      compute_capability=compute_capability, gpu=gpu_name)
    checked = "checked on this GPU" if rec.model_extra.get("verified") else "checked again when the TensorRT runtime loads it"
    _say(ctx, f"graph {graph}: recorded {rec.path} (TensorRT {rec.tensorrt}, compute capability {rec.compute_capability}; {checked})")
    click.echo(str(artifact_dir / rec.path))


def spec_dims(spec_dict: dict[str, Any]) -> dict[str, Any]:
    from .spec import Dim

    return {k: Dim(**v) for k, v in spec_dict.get("dims", {}).items()}


# -- infer ---------------------------------------------------------------------------------------------------
@cli.command()
@click.argument("style_name", metavar="STYLE")
@click.argument("inputs", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("outputs"), show_default=True)
@click.option("--runtime", default="torch", show_default=True, help="torch, onnxruntime or tensorrt.")
@click.option("--graph-runtime", "graph_runtimes", multiple=True, metavar="GRAPH=RUNTIME", help="Per-graph runtime override.")
@click.option("--artifacts", type=click.Path(file_okay=False, path_type=Path), help="Exported artifact folder [export/artifacts/STYLE/VARIANT].")
@click.option("--weights", help="Weights: a checkpoint path or hf://org/repo@rev.")
@click.option("--allow-random-weights", is_flag=True, help="Run with random weights (latency work, tests).")
@click.option("--variant", help="Style variant.")
@click.option("--image", "extra_images", multiple=True, metavar="FIELD=PATH", help="Other image fields (e.g. style=painting.jpg).")
@click.option("--text", "texts", multiple=True, metavar="FIELD=TEXT", help="Text fields (e.g. instruction='make it snowy').")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Style parameter (see the style's Config).")
@click.option("--seed", type=int, default=None, help="Seed for stochastic styles.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "fp16", "bf16", "int8"]), default="fp32", show_default=True,
              help="int8: the export's lossy int8 artifact (engine export --int8), on onnxruntime / openvino.")
@click.option("--format", "fmt", type=click.Choice(["png", "jpg", "webp"]), default="png", show_default=True)
@click.option("--model-set", "model_sets", multiple=True, metavar="KEY=VALUE", help="Model config override (e.g. where a diffusion style's components come from).")
@click.pass_context
def infer(ctx: click.Context, style_name: str, inputs: tuple[Path, ...], out_dir: Path, runtime: str, graph_runtimes: tuple[str, ...],
          artifacts: Path | None, weights: str | None, allow_random_weights: bool, variant: str | None, extra_images: tuple[str, ...],
          texts: tuple[str, ...], sets: tuple[str, ...], seed: int | None, device: str, precision: str, fmt: str,
          model_sets: tuple[str, ...] = ()) -> None:
    """Stylise INPUT images with STYLE; writes one image per input to --out (one per output, NAME.STYLE.sample-K, for styles that answer with several)."""
    from .data import read_image, save_image
    from .runtime.base import SessionOptions
    from .sessions import open_sessions
    from .style import StyleRequest

    engine = _engine(ctx)
    if not inputs:
        raise UserError("give at least one input image (engine infer STYLE photo.jpg ...)")
    rt_map = {"*": runtime, **dict(g.partition("=")[::2] for g in graph_runtimes)}
    plan = _plan(engine, style_name, weights, variant, allow_random_weights, _parse_sets(model_sets), runtime=rt_map,
                 artifacts=artifacts, precision=precision, device=device)
    from .loading import load_style

    style = load_style(engine, plan)
    cfg = _config(style.Config, _parse_sets(sets), f"{style.name} parameters")
    fields = {f.name: f for f in style.inputs.images}
    first = style.inputs.images[0].name
    others: dict[str, list[Any]] = {}
    for item in extra_images:
        key, _, path = item.partition("=")
        if key not in fields or key == first:
            raise UserError(f"--image {key}: {style.name} image fields are {list(fields)} (the first comes from INPUT)")
        others.setdefault(key, []).append(read_image(Path(path)).array)
    for f in style.inputs.images[1:]:
        if f.required and f.name not in others:
            raise UserError(f"{style.name} needs --image {f.name}=PATH ({f.description})")
    text_values = dict(t.partition("=")[::2] for t in texts)
    for t in style.inputs.texts:
        if t.required and not text_values.get(t.name):
            raise UserError(f"{style.name} needs --text {t.name}=... ({t.description})")
    sessions = open_sessions(engine, style, plan.runtimes, artifacts=plan.artifacts, options=SessionOptions(device=device, precision=precision))
    for name, s in sessions.items():
        _say(ctx, f"[{name}] {s.runtime} on {s.device}")
    out_dir.mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(inputs):
        images = {first: read_image(path).array, **{k: (v if fields[k].multiple else v[0]) for k, v in others.items()}}
        req = StyleRequest(images=images, texts=text_values, seed=seed if seed is None else seed + i, id=path.stem)
        t0 = time.perf_counter()
        with cancel.use_token(_long_job_token(style, out_dir, path.stem, fmt)):
            [res] = engine.hook.style_infer(style=style, sessions=sessions, batch=[req], cfg=cfg)
        if res.images and len(res.images) > 1:  # several outputs (e.g. BicycleGAN samples): one file each, K from 1
            dests = [out_dir / f"{path.stem}.{style.name}.sample-{k}.{fmt}" for k in range(1, len(res.images) + 1)]
            for dest, img in zip(dests, res.images, strict=True):
                save_image(dest, img)
        else:
            dests = [out_dir / f"{path.stem}.{style.name}.{fmt}"]
            save_image(dests[0], res.image)
        shown = dests[0] if len(dests) == 1 else f"{dests[0]} .. {dests[-1].name}"
        _say(ctx, f"{path} -> {shown} ({(time.perf_counter() - t0) * 1000:.0f} ms)")
        for dest in dests:
            click.echo(str(dest))


def _long_job_token(style: Any, out_dir: Path, stem: str, fmt: str) -> Any:
    """For long-running styles: a token whose progress reports write the intermediate images they carry
    (``OUT/STEM.STYLE.stepNNNNNN.FMT``, e.g. gatys ``--set save_every=N``); None for other styles."""
    if not getattr(style, "long_running", False):
        return None
    from .data import save_image

    def on_progress(info: dict[str, Any]) -> None:
        if info.get("preview") is not None:
            save_image(out_dir / f"{stem}.{style.name}.step{int(info.get('step', 0)):06d}.{fmt}", info["preview"])

    token = cancel.CancelToken(on_progress=on_progress)
    token.show_progress = True  # type: ignore[attr-defined]  # the style may draw its own progress bar
    return token


# -- train ---------------------------------------------------------------------------------------------------
@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("style_name", metavar="STYLE")
@click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path), help="Training data folder.")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Training config YAML.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Training config override.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Run folder [runs/STYLE].")
@click.option("--resume", is_flag=True, help="Continue from the run folder's latest checkpoint.")
@click.option("--max-steps", type=click.IntRange(min=1), help="Stop after this many steps.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--mixed-precision", type=click.Choice(["no", "fp16", "bf16"]), default="no", show_default=True)
@click.option("--cpu", is_flag=True, help="Train on the CPU even where CUDA is available.")
@click.option("--sample-every", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=500, show_default=True)
@click.option("--on-bad-file", type=click.Choice(["skip", "fail"]), default="fail", show_default=True)
@click.option("--checkpoints-total-limit", type=click.IntRange(min=1), help="Keep only the N newest checkpoints [all].")
@click.option("--weights", help="Start from these weights (fine-tuning).")
@click.option("--no-progress", is_flag=True)
@click.pass_context
def train(ctx: click.Context, style_name: str, data: Path | None, config_path: Path | None, sets: tuple[str, ...], out: Path | None,
          resume: bool, max_steps: int | None, seed: int, mixed_precision: str, cpu: bool, sample_every: int, checkpoint_every: int,
          on_bad_file: str, checkpoints_total_limit: int | None, weights: str | None, no_progress: bool) -> None:
    """Train STYLE.  Styles with several data folders take them as options (e.g. --content DIR --style DIR)."""
    import yaml

    from .training import TrainContext

    engine = _engine(ctx)
    cls = engine.style_class(style_name)
    if not cls.has("train") or cls.TrainConfig is None:
        raise UserError(f"style {cls.name} cannot be trained")
    folders: dict[str, Path] = {"data": data} if data else {}
    extra = list(ctx.args)
    while extra:
        opt = extra.pop(0)
        if not opt.startswith("--") or not extra:
            raise UserError(f"unexpected argument {opt!r}")
        key = opt[2:].replace("-", "_")
        if key not in cls.train_data:
            raise UserError(f"unknown option {opt}; {cls.name} data folders: {', '.join('--' + k for k in cls.train_data)}")
        folders[key] = Path(extra.pop(0))
    values: dict[str, Any] = {}
    if config_path:
        loaded = yaml.safe_load(config_path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise UserError(f"{config_path}: expected a mapping of training options")
        values.update(loaded)
    values.update(_parse_sets(sets))
    cfg = _config(cls.TrainConfig, values, f"{cls.name} training config")
    style = cls(getattr(cfg, "model", None))
    if weights:
        from .weights import resolve

        style.load_weights(resolve(weights))
    tctx = TrainContext(
        out_dir=out or Path("runs") / cls.name, data=folders, resume=resume, max_steps=max_steps, seed=seed,
        mixed_precision=mixed_precision, cpu=cpu, sample_every=sample_every, checkpoint_every=checkpoint_every,
        on_bad_file=on_bad_file, show_progress=not no_progress, checkpoints_total_limit=checkpoints_total_limit,
    )
    result = engine.hook.style_train(style=style, cfg=cfg, ctx=tctx)
    state = "interrupted" if result.interrupted else "finished"
    _say(ctx, f"training {state} after {result.steps} steps; " + ", ".join(f"{k} {v:.4g}" for k, v in result.metrics.items()))
    if result.checkpoint:
        click.echo(str(result.checkpoint))


# -- pull ------------------------------------------------------------------------------------------------------
@cli.command()
@click.argument("ref", metavar="STYLE[:NAME]")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Where to write the converted checkpoint.")
@click.pass_context
def pull(ctx: click.Context, ref: str, out: Path | None) -> None:
    """Download a style's published weights (pinned by sha256 or revision) and convert them to safetensors."""
    from .pull import pull_weights

    engine = _engine(ctx)
    name, _, which = ref.partition(":")
    cls = engine.style_class(name)
    path = pull_weights(cls, which or None, out=out, say=lambda m: _say(ctx, m))
    click.echo(str(path))


# -- bench -----------------------------------------------------------------------------------------------------
@cli.command()
@click.argument("style_name", metavar="STYLE")
@click.option("--runtime", "runtimes", default="torch", show_default=True, help="Comma-separated runtimes (torch,onnxruntime,tensorrt); unavailable ones are reported with the reason.")
@click.option("--batch", "batches", default="1", show_default=True, help="Comma-separated batch sizes (requests per style_infer call).")
@click.option("--size", "sizes", default="256", show_default=True, help="Comma-separated square image sides.")
@click.option("--precision", "precisions", default="fp32", show_default=True, help="Comma-separated: fp32,fp16,bf16,int8.")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda[:N].")
@click.option("--warmup", type=click.IntRange(min=0), default=3, show_default=True, help="Untimed calls per config.")
@click.option("--iters", type=click.IntRange(min=1), default=None, help="Timed calls per config [20]; with --seconds, a cap.")
@click.option("--seconds", type=click.FloatRange(min=0, min_open=True), default=None, help="Time budget per config instead of a count.")
@click.option("--min-iters", type=click.IntRange(min=1), default=3, show_default=True, help="Least timed calls under --seconds.")
@click.option("--weights", help="Weights: a checkpoint path or hf://org/repo@rev.")
@click.option("--allow-random-weights", is_flag=True, help="Benchmark random weights (latency does not depend on them).")
@click.option("--variant", help="Style variant.")
@click.option("--model-set", "model_sets", multiple=True, metavar="KEY=VALUE", help="Model config override (random weights).")
@click.option("--artifacts", type=click.Path(file_okay=False, path_type=Path), help="Exported artifacts [exported into the cache, dims widened to the request].")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Style parameter (see the style's Config); KEY={size}: the image size.")
@click.option("--text", "texts", multiple=True, metavar="FIELD=TEXT", help="Text field value (prompts, instructions).")
@click.option("--graphs-only", is_flag=True, help="Time each graph alone (on the inputs the pipeline feeds it), not the pipeline.")
@click.option("--graphs", "with_graphs", is_flag=True, help="Time the pipeline and each graph alone.")
@click.option("--vary-inputs", is_flag=True, help="New images every call (caches keyed on inputs stay cold).")
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads for torch and onnxruntime.")
@click.option("--no-baseline", is_flag=True, help="Do not add torch eager as the baseline runtime.")
@click.option("--http", "http_url", metavar="URL", help="Load a running service (engine serve) instead of running in-process.")
@click.option("--concurrency", default="1,4,16", show_default=True, help="--http: comma-separated concurrency levels.")
@click.option("--requests", "n_requests", type=click.IntRange(min=1), help="--http: requests per level [max(32, 4 x concurrency)].")
@click.option("--endpoint", default="/stylize.json", show_default=True, help="--http: the endpoint to post to.")
@click.option("--compare", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="--http: an in-process JSON report to compare with.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=120.0, show_default=True, help="--http: request timeout (s).")
@click.option("--ready-timeout", type=click.FloatRange(min=0), default=60.0, show_default=True, help="--http: wait this long for /readyz.")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON report instead of the table.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Write JSON, Markdown and PNG plots into this folder.")
@click.option("--name", help="File name stem under --out [inprocess, or http].")
@click.pass_context
def bench(ctx: click.Context, style_name: str, runtimes: str, batches: str, sizes: str, precisions: str, device: str, warmup: int,
          iters: int | None, seconds: float | None, min_iters: int, weights: str | None, allow_random_weights: bool, variant: str | None,
          model_sets: tuple[str, ...], artifacts: Path | None, sets: tuple[str, ...], texts: tuple[str, ...], graphs_only: bool,
          with_graphs: bool, vary_inputs: bool, threads: int | None, no_baseline: bool, http_url: str | None, concurrency: str,
          n_requests: int | None, endpoint: str, compare: Path | None, timeout: float, ready_timeout: float, as_json: bool,
          out: Path | None, name: str | None) -> None:
    """Measure STYLE's latency and throughput: in-process per runtime x batch x size, or over HTTP (--http).

    Reports p50/p90/p99, mean ± stdev, images/s, peak memory and, for every runtime, its speed as a
    ratio to torch eager measured in the same run.  See benchmarks/README.md.
    """
    from .bench.command import PRECISIONS, emit, parse_ints, parse_names, parse_params

    engine = _engine(ctx)
    text_values = dict(t.partition("=")[::2] for t in texts)
    try:
        if http_url:
            from .bench.httpload import HttpConfig, run_http

            size = parse_ints(sizes, "size")
            if len(size) > 1:
                raise ValueError("--http takes one --size")
            hcfg = HttpConfig(url=http_url, style=engine.style_class(style_name).name, concurrency=parse_ints(concurrency, "concurrency"),
                              requests=n_requests, warmup=warmup, size=size[0], params=parse_params(sets, _parse_sets), texts=text_values,
                              endpoint=endpoint, timeout=timeout, ready_timeout=ready_timeout, compare=compare,
                              runtime=None if runtimes == "torch" else runtimes)
            report = run_http(engine, hcfg, say=lambda m: _say(ctx, m))
        else:
            from .bench.inprocess import BenchConfig, run_inprocess

            bcfg = BenchConfig(
                style=style_name, runtimes=parse_names(runtimes, "runtime"), batches=parse_ints(batches, "batch"), sizes=parse_ints(sizes, "size"),
                precisions=parse_names(precisions, "precision", PRECISIONS), device=device, warmup=warmup,
                iters=iters if iters or seconds else 20, seconds=seconds, min_iters=min_iters, weights=weights,
                allow_random_weights=allow_random_weights, variant=variant, model_sets=_parse_sets(model_sets), params=parse_params(sets, _parse_sets),
                texts=text_values, artifacts=artifacts, mode="graphs" if graphs_only else "both" if with_graphs else "pipeline",
                vary_inputs=vary_inputs, threads=threads, baseline=not no_baseline,
            )
            report = run_inprocess(engine, bcfg, say=lambda m: _say(ctx, m))
    except RuntimeError as exc:  # e.g. the service never became ready
        raise UserError(str(exc)) from exc
    emit(report, as_json=as_json, out=out, name=name, echo=click.echo, say=lambda m: _say(ctx, m))


# -- serve / bento -----------------------------------------------------------------------------------------
SERVE_OPTIONS = [
    click.option("--runtime", default="torch", show_default=True, help="torch, onnxruntime or tensorrt."),
    click.option("--model", "model_tag", help="BentoML model tag with the exported artifacts (engine export --bento-model)."),
    click.option("--artifacts", type=click.Path(file_okay=False, path_type=Path), help="Exported artifact folder instead of a model tag."),
    click.option("--weights", help="Weights for the torch runtime (path or hf://org/repo@rev)."),
    click.option("--variant", help="Style variant."),
    click.option("--allow-random-weights", is_flag=True, help="Serve random weights (tests, latency work)."),
    click.option("--device", default=None, help="cpu or cuda[:N] [cpu]."),
    click.option("--precision", type=click.Choice(["fp32", "fp16", "bf16"]), default=None),
    click.option("--max-batch-size", type=click.IntRange(1, 256), default=None, help="Most requests per runner call [8]."),
    click.option("--max-latency-ms", type=click.IntRange(1, 600_000), default=None, help="Batching window / queue budget [2000]."),
    click.option("--max-concurrency", type=click.IntRange(1), default=None, help="Requests in flight; more get 429 [32]."),
    click.option("--timeout", "timeout_s", type=click.FloatRange(min=0, min_open=True), default=None, help="Request timeout in seconds; 504 [60]."),
    click.option("--model-set", "model_sets", multiple=True, metavar="KEY=VALUE",
                 help="Model config override (e.g. instruct_pix2pix size=tiny); checked against the artifacts or checkpoint."),
    click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="Default of a request parameter requests leave out."),
    click.option("--topology", type=click.Choice(["auto", "single", "split"]), default=None,
                 help="single: the API process runs the model; split: API workers feed a runner service [auto: split iff --arg api_workers>1]."),
    click.option("--arg", "extra_args", multiple=True, metavar="KEY=VALUE", help="Any other service argument (styleengine.serving.args.ServeArgs)."),
]


def _serve_options(f: Any) -> Any:
    for opt in reversed(SERVE_OPTIONS):
        f = opt(f)
    return f


def _serve_args(ctx: click.Context, style_name: str, runtime: str, model_tag: str | None, artifacts: Path | None, weights: str | None,
                variant: str | None, allow_random_weights: bool, device: str | None, precision: str | None, max_batch_size: int | None,
                max_latency_ms: int | None, max_concurrency: int | None, timeout_s: float | None, model_sets: tuple[str, ...] = (),
                params: tuple[str, ...] = (), topology: str | None = None, extra_args: tuple[str, ...] = ()) -> Any:
    """Validated ServeArgs (the style and runtime resolved, paths made absolute, default artifacts found) or
    a one-line UserError."""
    from pydantic import ValidationError

    from .loading import default_artifacts
    from .serving.args import ServeArgs

    engine = _engine(ctx)
    cls = engine.style_class(style_name)
    rt = engine.runtimes.resolve(runtime)
    if weights and not weights.startswith("hf://"):
        weights = str(Path(weights).expanduser().resolve())  # the server may run elsewhere; never record a relative path
    values: dict[str, Any] = {
        "style": cls.name, "runtime": rt, "model": model_tag, "artifacts": str(artifacts.resolve()) if artifacts else None,
        "weights": weights, "variant": variant, "allow_random_weights": allow_random_weights or None, "device": device,
        "precision": precision, "max_batch_size": max_batch_size, "max_latency_ms": max_latency_ms,
        "max_concurrency": max_concurrency, "timeout_s": timeout_s, "topology": topology,
        "model_set": _parse_sets(model_sets) or None, "params": _parse_sets(params) or None,
        "plugins": ",".join(ctx.find_root().obj.get("plugins") or []) or None,
    }
    for item in extra_args:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--arg expects KEY=VALUE, got {item!r}")
        values[key.strip().replace("-", "_")] = raw
    values = {k: v for k, v in values.items() if v is not None}
    if engine.runtime_class(rt).needs != "module" and not values.get("model") and not values.get("artifacts"):
        default = default_artifacts(cls.name, variant or cls.variants[0], precision or "fp32")
        if not (default / "manifest.json").is_file():
            raise UserError(
                f"runtime {rt} serves exported artifacts and {default} has none: run `engine export {cls.name} --bento-model` and "
                f"pass --model styleengine-{cls.name}-{variant or cls.variants[0]}, or pass --artifacts DIR"
            )
        values["artifacts"] = str(default.resolve())
    try:
        return ServeArgs(**values)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in exc.errors())
        raise UserError(f"invalid serving arguments: {problems}") from exc


def _need_serving() -> None:
    import importlib.util

    if importlib.util.find_spec("bentoml") is None:
        raise UserError("serving needs BentoML, which is not installed: pip install 'styleengine[serving]' (from a checkout: make install)")


def _preflight(ctx: click.Context, args: Any) -> Any:
    """The server's own torch-free start-up checks, run before BentoML starts (one line on failure)."""
    from .serving.preflight import StartupError, model_dir_of, preflight

    try:
        plan = preflight(_engine(ctx), args, model_dir_of(args.model))
    except StartupError as exc:
        raise UserError(f"the server cannot start: {exc}") from None
    for w in plan.warnings:
        _say(ctx, f"warning: {w}")
    if plan.random_weights:
        _say(ctx, f"warning: serving {args.style} with RANDOM weights (answers say so: X-Random-Weights: true)")
    return plan


@cli.command()
@click.argument("style_name", metavar="STYLE")
@_serve_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind. Loopback unless asked: use 0.0.0.0 to expose it.")
@click.option("--port", type=click.IntRange(0, 65535), default=3000, show_default=True)
@click.option("--dry-run", is_flag=True, help="Print the bentoml command instead of running it.")
@click.pass_context
def serve(ctx: click.Context, style_name: str, host: str, port: int, dry_run: bool, **options: Any) -> None:
    """Serve STYLE over HTTP with BentoML: POST /stylize, the playground at /ui, /readyz, /metrics.

    Runs `bentoml serve styleengine.serving.service:StyleAPI` with the arguments checked here first.
    """
    import os
    import signal
    import subprocess
    import tempfile

    import yaml

    from .serving.lifecycle import ENV_FAILURE, STARTUP_FAILED

    _need_serving()
    args = _serve_args(ctx, style_name, **options)
    _preflight(ctx, args)
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": os.environ.get("BENTOML_DO_NOT_TRACK", "True")}
    with tempfile.TemporaryDirectory(prefix="styleengine-serve-") as tmp:
        arg_file = Path(tmp) / "args.yaml"  # a file, not --arg k=v: BentoML splits those on commas
        arg_file.write_text(yaml.safe_dump(args.as_bento_args()))
        env[ENV_FAILURE] = str(Path(tmp) / "failure.txt")
        # styleengine.serving.launch is `bentoml serve` with a Prometheus folder of this server's own.
        cmd = [sys.executable, "-m", "styleengine.serving.launch", "styleengine.serving.service:StyleAPI", "--host", host, "--port", str(port),
               "--arg-file", str(arg_file)]
        if dry_run:
            click.echo(" ".join([sys.executable, "-m", "bentoml", "serve", *cmd[3:-2], *args.as_cli_args()]))
            return
        _say(ctx, f"serving {args.style} on {args.runtime} ({'split' if args.split else 'single'} topology) at http://{host}:{port} "
                  "(playground: /ui; ready at /readyz after warm-up)")
        proc = subprocess.Popen(cmd, env=env)
        forward = lambda signum, _frame: proc.send_signal(signum)  # noqa: E731
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, forward)
        rc = proc.wait()
    if rc == STARTUP_FAILED:
        sys.exit(STARTUP_FAILED)  # the server printed its one-line reason
    sys.exit(rc if rc >= 0 else 128 - rc)


@cli.group()
def bento() -> None:
    """Bentos: package a style and its exported model for deployment."""


@bento.command("build")
@click.argument("style_name", metavar="STYLE")
@_serve_options
@click.option("--version", "bento_version", help="Bento version [generated].")
@click.option("--no-wheels", is_flag=True, help="Do not bundle wheels of styleengine and the style (local serving only).")
@click.pass_context
def bento_build(ctx: click.Context, style_name: str, bento_version: str | None, no_wheels: bool, **options: Any) -> None:
    """Build a Bento serving STYLE on --runtime; prints its tag (then: bentoml serve TAG).

    Runtimes that serve exported artifacts use --model TAG; without it the style is exported now
    (ONNX, validated) and stored as styleengine-STYLE-VARIANT.  TensorRT engines are built or checked
    on the serving GPU at start-up.
    """
    from .export.options import ExportOptions
    from .serving.bento import build_bento, save_model

    _need_serving()
    engine = _engine(ctx)
    cls = engine.style_class(style_name)
    rt = engine.runtimes.resolve(options["runtime"])
    exported = engine.runtime_class(rt).needs != "module"
    if not options["model_tag"]:
        # A Bento carries its model: artifacts and/or weights are stored in the model store and packaged,
        # so the Bento serves the same from any folder or machine.
        model_sets = _parse_sets(options["model_sets"])
        if exported and options["artifacts"]:
            style = _load_style(engine, cls.name, options["weights"], options["variant"], options["allow_random_weights"], model_sets,
                                runtime=rt, artifacts=options["artifacts"], precision=options["precision"] or "fp32")
            out_dir: Path | None = options["artifacts"]
        else:
            style = _load_style(engine, cls.name, options["weights"], options["variant"], options["allow_random_weights"], model_sets)
            out_dir = None
            if exported:
                import tempfile

                out_dir = Path(tempfile.mkdtemp(prefix="styleengine-export-")) / cls.name
                _say(ctx, f"exporting {cls.name} ({style.variant}) to ONNX")
                engine.hook.style_export(style=style, options=ExportOptions(out_dir=out_dir, extra={"progress": lambda m: _say(ctx, m)}))
        options["model_tag"] = save_model(style, out_dir)
        options["artifacts"] = options["weights"] = None
        options["model_sets"] = tuple(f"{k}={v}" for k, v in style.model_config.model_dump(mode="json").items() if k in model_sets)
        _say(ctx, f"stored BentoML model {options['model_tag']}")
    args = _serve_args(ctx, style_name, **options)
    _preflight(ctx, args)
    tag = build_bento(args, style_distribution=engine.styles.get(cls.name).distribution, version=bento_version, wheels=not no_wheels)
    _say(ctx, f"built Bento {tag}: run it with `bentoml serve {tag}`")
    click.echo(tag)


# -- entry point -------------------------------------------------------------------------------------------------
def _user_errors() -> tuple[type[BaseException], ...]:
    from .data.errors import ImageDecodeError
    from .plugins import PluginLoadError
    from .preprocess import SizeError
    from .registry import RegistryError, UnknownNameError
    from .runtime.base import ArtifactMismatchError, RuntimeUnavailableError
    from .spec import SpecError
    from .style import WeightsRequiredError
    from .weights import WeightsUnavailableError

    return (
        ImageDecodeError, PluginLoadError, SizeError, RegistryError, UnknownNameError, ArtifactMismatchError,
        RuntimeUnavailableError, SpecError, WeightsRequiredError, WeightsUnavailableError, FileNotFoundError, ValueError,
    )


def main(argv: Sequence[str] | None = None) -> None:
    from .plugins import get_engine

    try:
        # Plugins may add commands.  A broken plugin is skipped with a warning here too.
        if not getattr(cli, "_plugins_added", False):
            args = list(argv if argv is not None else sys.argv[1:])
            strict = "--strict" in args
            extra = [args[i + 1] for i, a in enumerate(args[:-1]) if a in ("-p", "--plugin")]
            try:
                get_engine(strict=strict or None, extra_plugins=extra).add_commands(cli)
            except Exception as exc:  # noqa: BLE001
                _fail(str(exc))
            cli._plugins_added = True  # type: ignore[attr-defined]
        cli.main(args=list(argv) if argv is not None else None, prog_name="engine", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        _fail("aborted", 130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except Exception as exc:  # noqa: BLE001
        if isinstance(exc, _user_errors()) and "-vv" not in (argv if argv is not None else sys.argv):
            _fail(str(exc).splitlines()[0] if isinstance(exc, KeyError) else str(exc))
        raise
    sys.exit(0)


if __name__ == "__main__":  # pragma: no cover
    main()

#!/usr/bin/env python
"""The standard benchmark matrix: every installed style × runtime × batch × size, in-process and over HTTP.

    python benchmarks/run_matrix.py                 # CPU: torch + onnxruntime (+ tensorrt listed), fp32
    python benchmarks/run_matrix.py --cuda          # CUDA: adds fp16, tensorrt, 512²
    python benchmarks/run_matrix.py --styles pix2pix --no-http --seconds 5

Each style is benchmarked in its own process (``engine bench STYLE ... --out``), so one style's memory
or crash does not touch another's numbers; then, for each runtime that worked in-process, a server is
started on loopback (``engine serve STYLE --runtime R``, with the very artifacts the in-process run
used) and loaded at each concurrency (``engine bench STYLE --http URL --compare inprocess.json``).
Everything lands in ``benchmarks/results/<machine>-<date>/``: per style ``inprocess.{json,md}``,
``http-<runtime>.{json,md}`` and their plots, plus ``README.md`` (the summary tables) and
``matrix.json`` (what ran, with which command, how long, and what failed).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
ENGINE = [sys.executable, "-m", "styleengine"]

#: Styles left out unless named: the core's test fixture.
EXCLUDE = {"test-style"}

#: Per-style settings for the standard matrix: CPU-sane model configs and parameters.  Keys: ``model``
#: (--model-set), ``params`` (--set), ``sizes`` / ``batches`` (override the matrix's), ``texts``.
STYLE_SETTINGS: dict[str, dict[str, Any]] = {
    # the reference architecture (unet_256, ngf 64) is the default ModelConfig: nothing to set
    "pix2pix": {},
    # process at the benchmark's --size (its 512 default would resize every 256² image up to 512 first)
    "adain": {"params": {"content_size": 0, "style_size": 0}},
}
#: Iterative styles on CPU (a parameter named like these): few steps and small batches, since one UNet
#: step at 256² takes seconds on a few cores.  The per-stage breakdown still shows the cost per step.
STEP_PARAMS = ("steps", "num_inference_steps", "num_steps", "iterations")
CPU_STEPS, CPU_STEP_BATCHES = 4, (1, 2)


def sh(cmd: list[str], log: list[dict[str, Any]], timeout: float, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    print("$", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as exc:
        log.append({"cmd": cmd, "rc": None, "seconds": round(time.perf_counter() - t0, 1), "error": f"timed out after {timeout}s"})
        return subprocess.CompletedProcess(cmd, 124, exc.stdout or "", (exc.stderr or "") if isinstance(exc.stderr, str) else "")
    log.append({"cmd": cmd, "rc": r.returncode, "seconds": round(time.perf_counter() - t0, 1),
                **({"stderr_tail": r.stderr[-2000:]} if r.returncode else {})})
    sys.stderr.write(r.stderr[-4000:] if r.returncode else "")
    return r


def installed_styles() -> list[dict[str, Any]]:
    r = subprocess.run([*ENGINE, "styles", "--json"], capture_output=True, text=True, check=True)
    return json.loads(r.stdout)["styles"]


def _accepts(model_config: type, **values: Any) -> bool:
    try:
        model_config(**values)
    except Exception:  # noqa: BLE001 - pydantic ValidationError: the style has no such option
        return False
    return True


def style_plan(style: dict[str, Any], cls: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Runtimes, batches, sizes and settings of one style under this matrix."""
    name = style["name"]
    settings = dict(STYLE_SETTINGS.get(name, {}))
    fields = set(cls.Config.model_fields)
    params = dict(settings.get("params", {}))
    notes = []
    if "resolution" in fields and "resolution" not in params:
        params["resolution"] = "{size}"  # styles with a working resolution process at the benchmark's size
    steps = [f for f in STEP_PARAMS if f in fields]
    if steps and not args.cuda:
        params.setdefault(steps[0], CPU_STEPS)
        settings.setdefault("batches", CPU_STEP_BATCHES)
        if not args.full_models and "model" not in settings and _accepts(cls.ModelConfig, size="tiny"):
            settings["model"] = {"size": "tiny"}
            notes.append("tiny random components (the style's `size=tiny`): the pipeline's structure and overheads, "
                         "not the full model's latency — run with --full-models or on CUDA for that")
        notes.append(f"{params[steps[0]]} denoising steps (`{steps[0]}`): the per-stage breakdown gives the cost per step")
    settings["params"] = params
    exportable = "export" in style["capabilities"]
    # openvino is a plugin distribution (plugins/openvino): in the default list only where it is installed
    runtimes = [r for r in args.runtimes if (exportable or r == "torch") and (r != "openvino" or _has_openvino())]
    return {
        "name": name,
        "runtimes": runtimes,
        "batches": tuple(settings.get("batches", args.batches)),
        "sizes": tuple(settings.get("sizes", args.sizes)),
        "model": settings.get("model", {}),
        "params": settings.get("params", {}),
        "texts": settings.get("texts", {}),
        "notes": notes,
    }


def kv(flag: str, values: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for k, v in values.items():
        out += [flag, f"{k}={json.dumps(v) if not isinstance(v, str) else v}"]
    return out


def inprocess(plan: dict[str, Any], out: Path, args: argparse.Namespace, log: list[dict[str, Any]]) -> Path | None:
    cmd = [*ENGINE, "bench", plan["name"], "--runtime", ",".join(plan["runtimes"]), "--batch", ",".join(map(str, plan["batches"])),
           "--size", ",".join(map(str, plan["sizes"])), "--precision", ",".join(args.precisions), "--device", args.device,
           "--warmup", str(args.warmup), "--seconds", str(args.seconds), "--min-iters", str(args.min_iters),
           "--allow-random-weights", "--out", str(out), *kv("--model-set", plan["model"]), *kv("--set", plan["params"]),
           *kv("--text", plan["texts"])]
    if args.iters:
        cmd += ["--iters", str(args.iters)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    r = sh(cmd, log, timeout=args.style_timeout)
    print(r.stdout, flush=True)
    path = out / "inprocess.json"
    return path if r.returncode == 0 and path.is_file() else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server(plan: dict[str, Any], runtime: str, artifacts: str | None, args: argparse.Namespace, log_path: Path):
    """``engine serve`` on loopback in its own process group; stopped (the group) on exit."""
    port = free_port()
    cmd = [*ENGINE, "serve", plan["name"], "--runtime", runtime, "--port", str(port), "--host", "127.0.0.1",
           "--allow-random-weights", "--device", args.device, "--max-batch-size", str(max(plan["batches"])),
           "--max-latency-ms", str(args.server_max_latency_ms), "--timeout", str(args.request_timeout)]
    if artifacts:
        cmd += ["--artifacts", artifacts]
    print("$", " ".join(cmd), flush=True)
    fh = open(log_path, "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield f"http://127.0.0.1:{port}", proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        fh.close()


def http(plan: dict[str, Any], out: Path, inproc: Path, args: argparse.Namespace, log: list[dict[str, Any]]) -> list[Path]:
    report = json.loads(inproc.read_text())
    done = []
    size = plan["sizes"][0]
    for label, rt in sorted(report["runtimes"].items(), key=lambda kv: (kv[1]["runtime"] != "torch", kv[0])):  # torch first
        if rt["status"] != "ok" or rt["precision"] != "fp32" or rt["runtime"] not in args.runtimes:
            continue
        runtime = rt["runtime"]
        log_path = out / f"http-{runtime}.server.log"
        with server(plan, runtime, rt.get("artifacts"), args, log_path) as (url, proc):
            cmd = [*ENGINE, "bench", plan["name"], "--http", url, "--concurrency", ",".join(map(str, args.concurrency)),
                   "--size", str(size), "--compare", str(inproc), "--out", str(out), "--name", f"http-{runtime}",
                   "--timeout", str(args.request_timeout), *kv("--set", plan["params"]), *kv("--text", plan["texts"])]
            if args.requests:
                cmd += ["--requests", str(args.requests)]
            cmd += ["--ready-timeout", str(args.ready_timeout)]
            r = sh(cmd, log, timeout=args.style_timeout)
            print(r.stdout, flush=True)
            if proc.poll() is not None:
                print(f"server for {runtime} exited ({proc.returncode}); see {log_path}", file=sys.stderr)
        result = out / f"http-{runtime}.json"
        if r.returncode == 0 and result.is_file():
            done.append(result)
            if not any(level["errors"] for level in json.loads(result.read_text())["results"]):
                log_path.unlink(missing_ok=True)  # server logs are kept only when a request failed
    return done


def summary(folder: Path, entries: list[dict[str, Any]], argv: list[str]) -> str:
    """README.md of a results folder: environment, then per style the in-process and HTTP tables."""
    from styleengine.bench.httpreport import CMP_HEADERS, HEADERS, _cmp_rows, _rows
    from styleengine.bench.report import INPROC_ALIGN, INPROC_HEADERS, _header, _inproc_rows, _stage_rows, _unavailable_lines, render_table

    lines = [f"# Benchmark matrix — {folder.name}", "", f"`{' '.join(argv)}`", ""]
    if (folder / "NOTES.md").is_file():  # hand-written reading notes survive regeneration
        lines += [(folder / "NOTES.md").read_text().strip(), ""]
    first = True
    for e in entries:
        if not e.get("inprocess"):
            lines += [f"## {e['style']}", "", f"in-process run failed: see `matrix.json`", ""]
            continue
        rep = json.loads(Path(e["inprocess"]).read_text())
        if first:
            lines += [f"- {h}" for h in _header(rep)] + [f"- date: {rep['created']}", ""]
            first = False
        s, st = rep["style"], rep["settings"]
        lines += [f"## {s['name']}", "",
                  f"`{s['distribution']} {s['version']}`, variant `{s['variant']}`, model `{json.dumps(s['model_config'])}`, random weights, "
                  f"params `{json.dumps(s['params'])}`; warm-up {st['warmup']}, {st['seconds']} s per config (≥ {st['min_iters']} iterations). "
                  f"Details: [inprocess.md]({s['name']}/inprocess.md).", "",
                  *(f"- {n}" for n in e["plan"].get("notes", [])), *([""] if e["plan"].get("notes") else []),
                  "### In-process", "", render_table(INPROC_HEADERS, _inproc_rows(rep), markdown=True, align=INPROC_ALIGN), ""]
        stages = _stage_rows(rep)
        if stages:
            lines += ["Per-stage (mean ms per call): " + "; ".join(f"{r[0]} b{r[1]}: {r[3]}" for r in stages), ""]
        bad = _unavailable_lines(rep)
        if bad:
            lines += ["Not measured: " + "; ".join(bad), ""]
        lines += [f"![latency]({s['name']}/inprocess_latency_vs_batch.png) ![throughput]({s['name']}/inprocess_throughput_vs_batch.png)", ""]
        https = [json.loads(Path(p).read_text()) for p in e.get("http", [])]
        if https:
            lines += ["### Over HTTP (loopback; load generator on the same machine)", ""]
            by_rt = {}
            for h in https:
                rt = h["server"].get("runtime") or "?"
                by_rt[rt] = h
                lines += [f"**{rt}** server — [http-{rt}.md]({s['name']}/http-{rt}.md)", "",
                          render_table(HEADERS, _rows(h), markdown=True, align="rrrlrrrrrlr"), ""]
                cmp = _cmp_rows(h)
                if cmp:
                    lines += [render_table(CMP_HEADERS, cmp, markdown=True, align="rrrrrrrr"), ""]
                lines += [f"![latency]({s['name']}/http-{rt}_latency_vs_concurrency.png) "
                          f"![throughput]({s['name']}/http-{rt}_throughput_vs_concurrency.png)", ""]
            if "torch" in by_rt and len(by_rt) > 1:
                base = {r["concurrency"]: r for r in by_rt["torch"]["results"]}
                rows = []
                for rt, h in by_rt.items():
                    for r in h["results"]:
                        b = base.get(r["concurrency"])
                        ratio = (r["images_per_s"] / b["images_per_s"]) if b and b.get("images_per_s") and r.get("images_per_s") else None
                        rows.append([rt, r["concurrency"], f"{r['images_per_s']:.2f}" if r.get("images_per_s") else "–",
                                     f"{ratio:.2f}×" if ratio else "–"])
                lines += ["Server throughput against the torch eager server at the same concurrency (same run):", "",
                          render_table(("server", "conc.", "img/s", "vs torch server"), rows, markdown=True, align="lrrr"), ""]
        elif e.get("http_skipped"):
            lines += [f"HTTP: not run ({e['http_skipped']}).", ""]
    return "\n".join(lines) + "\n"


def _has_openvino() -> bool:
    import importlib.util

    return importlib.util.find_spec("styleengine_openvino") is not None


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ints = lambda s: tuple(int(x) for x in s.split(","))  # noqa: E731
    names = lambda s: tuple(x.strip() for x in s.split(",") if x.strip())  # noqa: E731
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cuda", action="store_true", help="CUDA machine: device cuda, fp32+fp16, torch/onnxruntime/tensorrt, 256 and 512")
    p.add_argument("--styles", type=names, help="styles to run [every installed one but test-style]")
    p.add_argument("--runtimes", type=names, help="[torch,onnxruntime,openvino,tensorrt]")
    p.add_argument("--batches", type=ints, help="[1,4,8]")
    p.add_argument("--sizes", type=ints, help="[256; --cuda: 256,512]")
    p.add_argument("--precisions", type=names, help="[fp32; --cuda: fp32,fp16]; CPU precisions: fp32,bf16,int8 (int8 adds a calibrated export)")
    p.add_argument("--seconds", type=float, default=None, help="time budget per config [10; --cuda 5]")
    p.add_argument("--min-iters", type=int, default=5)
    p.add_argument("--iters", type=int, default=None, help="cap on timed iterations per config")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch / onnxruntime [library default]")
    p.add_argument("--no-http", action="store_true", help="in-process only")
    p.add_argument("--full-models", action="store_true", help="on CPU too, run iterative styles with their full model, not `size=tiny`")
    p.add_argument("--concurrency", type=ints, default=(1, 4, 16))
    p.add_argument("--requests", type=int, default=None, help="requests per concurrency level [max(32, 4 x concurrency)]")
    p.add_argument("--request-timeout", type=float, default=300.0, help="client and server request timeout (s)")
    p.add_argument("--server-max-latency-ms", type=int, default=60_000,
                   help="the server's batching window / queue budget (engine serve --max-latency-ms); its 2 s default "
                        "answers 503 to most requests at concurrency >= 4 when one image takes ~1 s, as on a small CPU")
    p.add_argument("--ready-timeout", type=float, default=600.0, help="seconds to wait for a server's /readyz")
    p.add_argument("--style-timeout", type=float, default=3600.0, help="seconds one engine bench process may take")
    p.add_argument("--out", type=Path, default=ROOT / "results", help="parent of the <machine>-<date> folder")
    p.add_argument("--folder", help="results folder name [<machine>-<date>]")
    p.add_argument("--summary-only", action="store_true", help="only rewrite the folder's README.md from its matrix.json (and NOTES.md)")
    args = p.parse_args(argv)
    args.device = "cuda" if args.cuda else "cpu"
    args.runtimes = args.runtimes or ("torch", "onnxruntime", "openvino", "tensorrt")
    args.batches = args.batches or (1, 4, 8)
    args.sizes = args.sizes or ((256, 512) if args.cuda else (256,))
    args.precisions = args.precisions or (("fp32", "fp16") if args.cuda else ("fp32",))
    args.seconds = args.seconds or (5.0 if args.cuda else 10.0)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from styleengine.bench.env import environment, machine_slug

    folder = args.out / (args.folder or f"{machine_slug(environment()['machine'])}-{dt.date.today().isoformat()}")
    folder.mkdir(parents=True, exist_ok=True)
    if args.summary_only:
        done = json.loads((folder / "matrix.json").read_text())
        absolute = [{**e, "inprocess": str(folder / e["inprocess"]) if e["inprocess"] else None, "http": [str(folder / p) for p in e["http"]]}
                    for e in done["entries"]]
        (folder / "README.md").write_text(summary(folder, absolute, ["python", "benchmarks/run_matrix.py", *done["argv"][1:]]))
        print(f"rewrote {folder / 'README.md'}")
        return 0
    styles = installed_styles()
    from styleengine.plugins import get_engine

    engine = get_engine()
    wanted = set(args.styles) if args.styles else {s["name"] for s in styles} - EXCLUDE
    missing = wanted - {s["name"] for s in styles}
    if missing:
        print(f"not installed: {sorted(missing)}", file=sys.stderr)
    try:
        import bentoml  # noqa: F401

        http_ok, why_not = not args.no_http, "--no-http" if args.no_http else ""
    except ImportError:
        http_ok, why_not = False, "bentoml is not installed (pip install 'styleengine[serving]')"
    log: list[dict[str, Any]] = []
    entries: list[dict[str, Any]] = []
    for style in (s for s in styles if s["name"] in wanted):
        plan = style_plan(style, engine.style_class(style["name"]), args)
        out = folder / plan["name"]
        entry: dict[str, Any] = {"style": plan["name"], "plan": plan}
        inproc = inprocess(plan, out, args, log)
        entry["inprocess"] = str(inproc) if inproc else None
        if inproc and http_ok and plan["model"]:
            entry["http_skipped"] = (f"`engine serve` takes no model-config overrides ({plan['model']}): the server would "
                                     "run another model than the in-process numbers")
        elif inproc and http_ok:
            entry["http"] = [str(p) for p in http(plan, out, inproc, args, log)]
        elif inproc:
            entry["http_skipped"] = why_not
        entries.append(entry)
        (folder / "matrix.json").write_text(json.dumps({"argv": sys.argv, "entries": entries, "commands": log}, indent=2, default=str))
    rel = lambda p: str(Path(p).relative_to(folder)) if p else None  # noqa: E731
    for e in entries:
        e["inprocess"] = rel(e["inprocess"])
        e["http"] = [rel(p) for p in e.get("http", [])]
    (folder / "matrix.json").write_text(json.dumps({"argv": sys.argv, "entries": entries, "commands": log}, indent=2, default=str))
    absolute = [{**e, "inprocess": str(folder / e["inprocess"]) if e["inprocess"] else None, "http": [str(folder / p) for p in e["http"]]} for e in entries]
    (folder / "README.md").write_text(summary(folder, absolute, ["python", "benchmarks/run_matrix.py", *(argv if argv is not None else sys.argv[1:])]))
    print(f"results: {folder}")
    failed = [c for c in log if c["rc"] != 0]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

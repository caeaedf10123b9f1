"""`engine bench`: statistics on known samples and report formats on test-style.  Never asserts timings."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from styleengine.bench import histogram, mean_of_histogram, measure, percentile, speedup, summarize
from styleengine.bench.artifacts import covers, named_ranges, observed_ranges, widened_profile
from styleengine.bench.httpload import HttpConfig, build_form, compare_with, histogram_delta, histogram_state, parse_metrics, run_http
from styleengine.bench.inprocess import add_baseline_ratios
from styleengine.bench.proxy import StageRecorder, TimingSession
from styleengine.bench.report import markdown, render_table, table, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# -- statistics ------------------------------------------------------------------------------------------------
def test_percentiles_on_known_samples():
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([4, 1, 3, 2], 0) == 1 and percentile([4, 1, 3, 2], 100) == 4
    assert percentile([10.0], 99) == 10.0
    xs = [15, 20, 35, 40, 50]
    assert percentile(xs, 40) == pytest.approx(29.0)  # rank 1.6: 20 + 0.6 * 15
    assert percentile(list(range(1, 101)), 90) == pytest.approx(90.1)
    rng = np.random.default_rng(0)
    sample = rng.lognormal(size=257).tolist()
    for q in (50, 90, 95, 99):
        assert percentile(sample, q) == pytest.approx(np.percentile(sample, q))
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summarize_mean_stdev_images_per_second():
    s = summarize([1.0, 2.0, 3.0, 4.0], batch=4)  # seconds in, milliseconds out
    assert s["n"] == 4 and s["mean"] == pytest.approx(2500.0)
    assert s["stdev"] == pytest.approx(statistics.stdev([1, 2, 3, 4]) * 1e3)  # sample stdev (n - 1)
    assert s["min"] == 1000.0 and s["max"] == 4000.0 and s["p50"] == pytest.approx(2500.0)
    assert s["images_per_s"] == pytest.approx(4 / 2.5)
    assert set(s) == {"n", "mean", "stdev", "min", "max", "p50", "p90", "p95", "p99", "images_per_s"}
    one = summarize([0.02])
    assert one["stdev"] == 0.0 and one["images_per_s"] == pytest.approx(50.0)
    with pytest.raises(ValueError):
        summarize([])
    with pytest.raises(ValueError):
        summarize([0.1, float("nan")])


def test_speedup_and_histograms():
    assert speedup(10.0, 5.0) == 2.0 and speedup(10.0, 20.0) == 0.5
    assert speedup(None, 5.0) is None and speedup(10.0, 0.0) is None
    assert histogram([4, 1, 4, 2, 4]) == {1: 1, 2: 1, 4: 3}
    assert mean_of_histogram({1: 1, 4: 3}) == pytest.approx(13 / 4) and mean_of_histogram({}) is None


def test_baseline_ratios_pair_rows_with_torch_eager():
    def row(runtime, batch, p50, mean, precision="fp32", status="ok"):
        return {"runtime": runtime, "precision": precision, "device": "cpu", "mode": "pipeline", "graph": None, "batch": batch,
                "size": 64, "status": status, "latency_ms": {"p50": p50, "mean": mean}}

    rows = [row("torch", 1, 10.0, 12.0), row("onnxruntime", 1, 4.0, 6.0), row("onnxruntime", 4, 8.0, 8.0), row("torch", 1, 5.0, 5.0, "bf16")]
    add_baseline_ratios(rows)
    assert rows[0]["vs_torch"]["p50"] == 1.0
    assert rows[1]["vs_torch"] == {"p50": 2.5, "mean": 2.0, "baseline": "torch fp32"}
    assert rows[2]["vs_torch"] is None  # no torch row at batch 4
    assert rows[3]["vs_torch"]["p50"] == 2.0  # bf16 against torch fp32


# -- the measurement loop and the stage proxy -------------------------------------------------------------------
def test_measure_counts_warmup_iterations_and_prepare():
    calls, prepared = [], []

    def prepare(i):
        prepared.append(i)
        return i

    samples = measure(calls.append, warmup=2, iters=5, prepare=prepare)
    assert len(samples) == 5 and all(s >= 0 for s in samples)
    assert calls == [-1, -2, 0, 1, 2, 3, 4]  # warm-up arguments are negative, timed ones count up
    budget = measure(lambda _: None, warmup=0, iters=None, seconds=0.01, min_iters=7)
    assert len(budget) >= 7
    capped = measure(lambda _: None, warmup=0, iters=4, seconds=60)
    assert len(capped) == 4
    with pytest.raises(ValueError):
        measure(lambda _: None, iters=None, seconds=None)


class FakeSession:
    runtime = "fake"
    device = "cpu"
    input_names = ["x"]
    output_names = ["y"]

    def __init__(self, graph):
        self.graph = graph
        self.extra = "passed through"

    def run(self, inputs):
        return {"y": inputs["x"]}


def test_stage_recorder_per_graph_breakdown_and_capture():
    import torch

    rec = StageRecorder()
    enc, unet = TimingSession(FakeSession("encoder"), rec), TimingSession(FakeSession("unet"), rec)
    assert enc.extra == "passed through" and enc.graph == "encoder" and enc.runtime == "fake"
    enc.run({"x": torch.zeros(1)})  # not recorded outside begin/end, but captured
    for _ in range(3):
        rec.begin()
        enc.run({"x": torch.ones(2)})
        for _ in range(4):
            unet.run({"x": torch.ones(3)})
        rec.end()
    assert torch.equal(rec.captured["encoder"]["x"], torch.zeros(1))  # the first call's inputs, copied
    s = rec.summary(total_mean_ms=1000.0)
    assert s["encoder"]["calls"] == 1 and s["unet"]["calls"] == 4
    assert s["unet"]["per_call_ms"] == pytest.approx(s["unet"]["mean_ms"] / 4)
    assert sum(v["share"] for v in s.values()) == pytest.approx(1.0)
    assert s["other"]["mean_ms"] == pytest.approx(1000.0 - s["encoder"]["mean_ms"] - s["unet"]["mean_ms"])


# -- export profile widening --------------------------------------------------------------------------------------
def test_widened_profile_covers_requested_batch_and_size():
    from styleengine_test_style import TestStyle

    specs = TestStyle().graphs()  # batch 1..4, height/width 8..64 (multiple of 8)
    assert widened_profile(specs, named_ranges(specs, [1, 2], [32, 64])).graphs == {}
    prof = widened_profile(specs, named_ranges(specs, [1, 8], [100]))
    dims = prof.graphs["net"].dims
    assert (dims["batch"].min, dims["batch"].max) == (1, 8)
    assert (dims["height"].min, dims["height"].max, dims["height"].multiple_of) == (8, 104, 8)
    [widened] = [prof.apply(s) for s in specs]
    assert widened.dims["width"].accepts(104) and widened.dims["batch"].accepts(8)


def test_observed_ranges_follow_what_the_pipeline_feeds():
    from styleengine_test_style import TestStyle

    from styleengine.plugins import get_engine

    style = TestStyle()
    cfg = style.parse_config({})
    ranges = observed_ranges(get_engine(), style, {20: cfg, 100: cfg}, [1, 8], [20, 100])
    # test-style pads to a multiple of 8 and runs one image per graph call, whatever the batch
    assert ranges == {"net": {"batch": (1, 1), "height": (24, 104), "width": (24, 104)}}
    prof = widened_profile(style.graphs(), ranges)
    assert set(prof.graphs["net"].dims) == {"height", "width"} and prof.graphs["net"].dims["height"].max == 104


def test_named_ranges_scale_a_guidance_batch_dim():
    from styleengine.spec import Dim, GraphSpec, TensorSpec

    ub = Dim("unet_batch", 3, 3, 12, multiple_of=3)  # InstructPix2Pix: 3 UNet rows per request
    spec = GraphSpec("unet", (TensorSpec("sample", (ub, 4, 8, 8)),), (TensorSpec("out", (ub, 4, 8, 8)),), batch_dim="unet_batch")
    assert named_ranges([spec], [1, 8], [256]) == {"unet": {"unet_batch": (3, 24)}}
    assert widened_profile([spec], named_ranges([spec], [1, 8], [256])).graphs["unet"].dims["unet_batch"].max == 24


def test_covers_names_dims_outside_an_artifact():
    from styleengine_test_style import TestStyle

    from styleengine.export.manifest import GraphRecord, Manifest

    [spec] = TestStyle().graphs()
    m = Manifest(style="test-style", variant="default", graphs={"net": GraphRecord(name="net", spec=spec.to_dict())})
    assert covers(m, [1, 4], [64]) == []
    problems = covers(m, [8], [128])
    assert "graph net: batch needs [8, 8], the artifact has [1, 4]" in problems and any(p.startswith("graph net: height") for p in problems)


# -- end to end on test-style: JSON schema, Markdown, PNGs, unavailable runtimes -------------------------------------
@pytest.fixture(scope="module")
def cli_report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "STYLEENGINE_PLUGINS": "test-style", "STYLEENGINE_CACHE": str(tmp / "cache")}
    cmd = [sys.executable, "-m", "styleengine", "bench", "test-style", "--runtime", "torch,onnxruntime,tensorrt", "--batch", "1,2",
           "--size", "16,24", "--warmup", "1", "--iters", "3", "--allow-random-weights", "--graphs", "--set", "strength=0.5",
           "--threads", "1", "--json", "--out", str(tmp / "out")]
    r = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout), tmp / "out"


def test_inprocess_json_schema(cli_report):
    report, _ = cli_report
    assert report["schema"] == "styleengine.bench/1" and report["kind"] == "in-process"
    assert {"created", "command", "style", "settings", "machine", "versions", "runtimes", "unavailable", "results"} <= set(report)
    assert {"cpu", "cpus", "platform"} <= set(report["machine"])
    assert {"torch", "onnxruntime", "styleengine", "python"} <= set(report["versions"])
    assert report["style"]["name"] == "test-style" and report["style"]["weights"] == "random"
    assert report["style"]["params"] == {"strength": 0.5}
    assert report["settings"]["iters"] == 3 and report["settings"]["batches"] == [1, 2]
    ort = report["runtimes"]["onnxruntime"]
    assert ort["status"] == "ok" and len(ort["manifest_sha256"]) == 64 and ort["sessions"]["net"]["device"] == "CPUExecutionProvider"
    ok = [r for r in report["results"] if r["status"] == "ok"]
    pipe = [r for r in ok if r["mode"] == "pipeline"]
    assert {(r["runtime"], r["batch"], r["size"]) for r in pipe} == {(rt, b, s) for rt in ("torch", "onnxruntime") for b in (1, 2) for s in (16, 24)}
    assert {r["graph"] for r in ok if r["mode"] == "graph"} == {"net"}
    for r in pipe:
        lat = r["latency_ms"]
        assert lat["n"] == 3 and lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
        assert r["images_per_s"] == pytest.approx(r["batch"] / lat["mean"] * 1e3)
        assert r["vs_torch"]["baseline"] == "torch fp32" and r["vs_torch"]["p50"] > 0
        assert {"rss_peak_mb", "rss_increase_mb"} <= set(r["memory"])
        assert {"net", "other"} == set(r["stages"]) and r["stages"]["net"]["calls"] == r["batch"]  # test-style runs one image per call
        if r["runtime"] == "torch":
            assert r["vs_torch"]["p50"] == 1.0 and r["manifest_sha256"] is None
        else:
            assert r["manifest_sha256"] == ort["manifest_sha256"]


def test_unavailable_runtime_listed_with_reason(cli_report):
    from styleengine.runtime.tensorrt import TensorRTRuntime

    report, out = cli_report
    ok, reason = TensorRTRuntime.availability()
    if ok:
        pytest.skip("TensorRT is installed here")
    [trt] = [u for u in report["unavailable"] if u["runtime"] == "tensorrt"]
    assert trt["status"] == "unavailable" and trt["reason"] == reason
    assert not [r for r in report["results"] if r["runtime"] == "tensorrt"]
    assert f"tensorrt (fp32): unavailable: {reason}" in table(report)
    assert reason in (out / "inprocess.md").read_text()


def test_markdown_table_and_pngs_written(cli_report):
    report, out = cli_report
    assert sorted(p.name for p in out.iterdir()) == [
        "inprocess.json", "inprocess.md", "inprocess_latency_vs_batch.png", "inprocess_throughput_vs_batch.png"]
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 5000
    assert json.loads((out / "inprocess.json").read_text())["results"] == report["results"]
    md = (out / "inprocess.md").read_text()
    lines = md.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| runtime |"))
    assert lines[header].split(" | ")[5:8] == ["p50 ms", "p90 ms", "p99 ms"] and "vs torch" in lines[header]
    assert set(lines[header + 1].replace("|", "").split()) <= {":---", "---:"}
    body = lines[header + 2 : header + 2 + len(report["results"]) + 1]
    assert body[-1] == ""  # the table ends after one row per result
    body = body[:-1]
    assert len(body) == len(report["results"]) and all(line.count("|") == lines[header].count("|") for line in body)
    assert any(line.startswith("| onnxruntime | cpu | pipeline | 2 | 24 |") for line in body)
    assert "![inprocess_latency_vs_batch](inprocess_latency_vs_batch.png)" in md and "Per-stage breakdown" in md
    assert report["runtimes"]["onnxruntime"]["manifest_sha256"] in md


def test_render_table_aligns_columns():
    txt = render_table(("a", "bb"), [["x", 1], ["yyy", 22]], align="lr")
    assert txt.splitlines() == ["a    bb", "---  --", "x     1", "yyy  22"]
    md = render_table(("a", "bb"), [["x", 1]], markdown=True, align="lr")
    assert md.splitlines() == ["| a | bb |", "| :--- | ---: |", "| x | 1 |"]


# -- HTTP: a fake service on loopback ------------------------------------------------------------------------------
METRICS_TEMPLATE = """# HELP styleengine_batch_size Requests per style_infer call
# TYPE styleengine_batch_size histogram
styleengine_batch_size_bucket{{le="1.0",runtime="torch",style="test-style"}} {b1}
styleengine_batch_size_bucket{{le="2.0",runtime="torch",style="test-style"}} {b2}
styleengine_batch_size_bucket{{le="+Inf",runtime="torch",style="test-style"}} {b2}
styleengine_batch_size_count{{runtime="torch",style="test-style"}} {b2}
styleengine_batch_size_sum{{runtime="torch",style="test-style"}} {total}
"""


class FakeService(BaseHTTPRequestHandler):
    """/readyz, /metrics and /stylize.json: every 5th request answers 429; others alternate batch sizes 1 and 2."""

    lock = threading.Lock()
    served = {"n": 0, "b1": 0, "b2": 0, "fields": set()}

    def log_message(self, *args):
        pass

    def _send(self, code, body, ctype="application/json", headers=None):
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        s = self.served
        if self.path == "/readyz":
            self._send(200, "{}")
        elif self.path == "/metrics":  # le="2.0" is cumulative: calls of size 1 and 2
            self._send(200, METRICS_TEMPLATE.format(b1=s["b1"], b2=s["b1"] + s["b2"], total=s["b1"] + 2 * s["b2"]), "text/plain")
        else:
            self._send(404, "{}")

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.lock:
            s = self.served
            s["n"] += 1
            n = s["n"]
            s["fields"].update(part.split(b"\"")[1].decode() for part in body.split(b"; name=")[1:])
        if n % 5 == 0:
            self._send(429, json.dumps({"error": "overloaded", "detail": "busy"}))
            return
        size = 1 + n % 2
        with self.lock:
            s["b1" if size == 1 else "b2"] += 1
        doc = {"batch_size": size, "timings": {"queue_ms": 1.0, "inference_ms": 2.0, "total_ms": 3.5}, "runtime": "onnxruntime"}
        self._send(200, json.dumps(doc), headers={"X-Batch-Size": str(size)})


@pytest.fixture
def fake_service():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeService)
    FakeService.served.update(n=0, b1=0, b2=0, fields=set())
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_parse_metrics_and_histogram_delta():
    before = histogram_state(parse_metrics(METRICS_TEMPLATE.format(b1=2, b2=3, total=4)), "styleengine_batch_size")
    after = histogram_state(parse_metrics(METRICS_TEMPLATE.format(b1=5, b2=8, total=13)), "styleengine_batch_size")
    assert before == {"buckets": {"1.0": 2.0, "2.0": 3.0, "+Inf": 3.0}, "sum": 4.0, "count": 3.0}
    d = histogram_delta(before, after)
    assert d["buckets"] == {"1.0": 3, "2.0": 2} and d["count"] == 5 and d["sum"] == 9.0 and d["mean"] == pytest.approx(1.8)


def test_build_form_uses_the_style_fields():
    import dataclasses

    from styleengine_test_style import TestStyle

    from styleengine.style import ImageField, TextField

    data, files = build_form(TestStyle, b"png", {"strength": 0.5}, {}, seed=3)
    assert data == {"strength": "0.5"}  # test-style is not seeded: no seed field
    assert [name for name, _ in files] == ["image"] and files[0][1][2] == "image/png"

    class Refined(TestStyle):  # a style whose instances refine the contract (as pix2pix does)
        inputs = dataclasses.replace(TestStyle.inputs, seeded=True, texts=(TextField("prompt"),),
                                     images=(ImageField("content"), ImageField("style"), ImageField("mask", required=False)))

        @property
        def input_contract(self):
            return dataclasses.replace(type(self).inputs, size_multiple=16)

    data, files = build_form(Refined, b"png", {}, {"prompt": "a cat"}, seed=3)
    assert data == {"prompt": "a cat", "seed": "3"} and [name for name, _ in files] == ["content", "style"]


def test_http_load_report(fake_service, tmp_path):
    from styleengine.plugins import get_engine

    inproc = {"results": [
        {"status": "ok", "mode": "pipeline", "precision": "fp32", "runtime": rt, "batch": b, "size": 32,
         "latency_ms": {"p50": p50}, "images_per_s": ips}
        for rt, b, p50, ips in (("torch", 1, 20.0, 50.0), ("onnxruntime", 1, 10.0, 100.0), ("onnxruntime", 4, 30.0, 133.0))]}
    (tmp_path / "inproc.json").write_text(json.dumps(inproc))
    cfg = HttpConfig(url=fake_service, style="test-style", concurrency=(1, 4), requests=10, warmup=0, size=32,
                     params={"strength": 0.5}, compare=tmp_path / "inproc.json")
    report = run_http(get_engine(), cfg, argv=["engine", "bench"])
    assert report["kind"] == "http" and report["server"]["runtime"] == "onnxruntime"
    assert {"url", "endpoint", "style", "settings", "machine", "versions", "results", "compare"} <= set(report)
    assert FakeService.served["fields"] == {"image", "strength"}
    assert [r["concurrency"] for r in report["results"]] == [1, 4]
    for r in report["results"]:
        assert r["requests"] == 10 and r["ok"] == 8 and r["errors"] == {"429": 2}
        assert set(r["batch_size_seen"]["histogram"]) == {1, 2} and sum(r["batch_size_seen"]["histogram"].values()) == 8
        assert r["metrics"]["batch_size"]["count"] >= 1 and r["metrics"]["batch_size"]["mean"] is not None
        assert r["latency_ms"]["n"] == 8 and {"p50", "p95", "p99"} <= set(r["latency_ms"])
        assert r["server_ms"]["inference_ms"]["p50"] == pytest.approx(2.0)
        v = r["vs_inprocess"]
        assert v["overhead_p50_ms"] == pytest.approx(r["latency_ms"]["p50"] - 10.0)
        assert v["batching_gain"] == pytest.approx(r["images_per_s"] / 100.0)
        assert v["of_best_inprocess"] == pytest.approx(r["images_per_s"] / 133.0)
        assert v["vs_torch_b1"] == pytest.approx(r["images_per_s"] / 50.0)
    assert report["compare"]["inprocess_best_batch"] == 4
    txt = table(report)
    assert "429×2" in txt and "batching gain" in txt
    written = write_report(report, tmp_path / "out")
    assert sorted(p.name for p in written) == ["http.json", "http.md", "http_latency_vs_concurrency.png", "http_throughput_vs_concurrency.png"]
    md = (tmp_path / "out" / "http.md").read_text()
    assert "| conc. |" in md and "## Against in-process" in md and "![http_latency_vs_concurrency]" in md


def test_compare_without_matching_runtime_says_so():
    report = {"results": [{"latency_ms": {"p50": 1.0}, "images_per_s": 1.0}]}
    inproc = {"results": [{"status": "ok", "mode": "pipeline", "precision": "fp32", "runtime": "torch", "batch": 1, "size": 64,
                           "latency_ms": {"p50": 1.0}, "images_per_s": 1.0}]}
    assert "no tensorrt rows" in compare_with(report, inproc, "tensorrt", 64)["error"]


def test_markdown_of_http_report_renders_without_comparison():
    report = {"kind": "http", "url": "http://127.0.0.1:1", "endpoint": "/stylize.json", "style": {"name": "s", "params": {}, "size": 8},
              "server": {"runtime": None}, "settings": {}, "machine": {}, "versions": {}, "created": "now", "compare": None,
              "results": [{"concurrency": 1, "requests": 2, "ok": 0, "errors": {"ConnectError": 2}, "wall_s": 0.1, "images_per_s": 0.0,
                           "latency_ms": None, "batch_size_seen": {"histogram": {}, "mean": None}}]}
    md = markdown(report)
    assert "ConnectError×2" in md and "| 1 | 2 | 0 |" in md  # a level with no success renders without numbers


# -- in-process runner, library level -------------------------------------------------------------------------------
def test_graphs_only_times_each_graph_on_captured_inputs_and_lists_unavailable_precisions():
    from styleengine.bench.inprocess import BenchConfig, run_inprocess
    from styleengine.plugins import get_engine

    cfg = BenchConfig(style="test-style", runtimes=("torch",), batches=(2,), sizes=(20,), precisions=("fp32", "fp16"),
                      warmup=0, iters=2, allow_random_weights=True, mode="graphs")
    report = run_inprocess(get_engine(), cfg, argv=["engine", "bench"])
    [row] = report["results"]
    assert (row["mode"], row["graph"], row["status"]) == ("graph", "net", "ok")
    assert row["input_shapes"] == {"image": [1, 3, 24, 24]}  # what the pipeline really fed: one padded image per call
    assert row["latency_ms"]["n"] == 2 and row["vs_torch"]["p50"] == 1.0
    [unavail] = report["unavailable"]
    assert (unavail["runtime"], unavail["precision"], unavail["status"]) == ("torch", "fp16", "unavailable")
    assert "fp16 on CPU" in unavail["reason"] and report["runtimes"]["torch fp16"]["status"] == "unavailable"


def test_random_weights_must_be_allowed():
    from styleengine.bench.inprocess import BenchConfig, run_inprocess
    from styleengine.plugins import get_engine
    from styleengine.style import WeightsRequiredError

    with pytest.raises(WeightsRequiredError):
        run_inprocess(get_engine(), BenchConfig(style="test-style"))
    with pytest.raises(ValueError):
        BenchConfig(style="test-style", batches=(0,))


def test_size_placeholder_in_parameters():
    from styleengine.bench.command import parse_params
    from styleengine.bench.inputs import with_size

    def yaml_like(items):
        return {i.partition("=")[0]: float(i.partition("=")[2]) for i in items}

    params = parse_params(["resolution={size}", "strength=0.5"], yaml_like)
    assert params == {"resolution": "{size}", "strength": 0.5}
    assert with_size(params, 256) == {"resolution": 256, "strength": 0.5}

"""The checks every style must pass, as a pytest mixin class.

Subclass :class:`StyleConformance` (or call :func:`conformance_suite`) in a plugin's tests, name the style and
give a tiny model config; pytest then runs every check below against it.  Each check that fails says what to
implement or change.  The checks, and the class attribute a test class sets to tune them:

===================================  =============================================================================
``test_registered_through_entry_point``  the style is found through its ``styleengine`` entry point (``style``)
``test_declaration_is_valid``        names, api_version, config classes, input contract (``styleengine.checks``)
``test_capabilities_match_implementation``  every declared capability is implemented, and graphs exist for EXPORT
``test_config_validates``            defaults valid; unknown keys, NaN, inf and out-of-bounds values refused
``test_graphs_run_at_declared_shapes``  each graph runs on torch at its min shapes, outputs named and finite
``test_seeded_inference_is_deterministic``  the same request (same seed) twice gives the same output
``test_batch_equals_single_runs``    a batch of requests gives what each request gives alone (``batch_atol``)
``test_export_parity``               every graph exports to ONNX and matches ONNX Runtime at ``export_points``
``test_save_load_round_trip``        weights saved as an engine checkpoint load back to the same outputs
``test_input_contract``              output float32 HxWx3 in [0, 1] at the request's size, for sizes that are *not*
                                     multiples of the size multiple and at the edges of the graphs' dims
``test_serves_through_generic_service``  one in-process request through the generic service's runner
``test_tensorrt_build``              a TensorRT engine builds for every graph (skipped where tensorrt is missing)
===================================  =============================================================================

A check that cannot apply to a style is skipped with the reason (no graphs to export, nothing to save).  A check
the author must leave out goes into ``skip_checks`` with the reason, e.g. ``{"tensorrt_build": "needs 40 GB"}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from styleengine.hookspecs import hookimpl

#: Name of every check (test method without ``test_``), in the order they run.
CHECKS = (
    "registered_through_entry_point",
    "declaration_is_valid",
    "capabilities_match_implementation",
    "config_validates",
    "graphs_run_at_declared_shapes",
    "seeded_inference_is_deterministic",
    "batch_equals_single_runs",
    "export_parity",
    "save_load_round_trip",
    "input_contract",
    "serves_through_generic_service",
    "tensorrt_build",
)


def fail(check: str, problem: str, fix: str) -> None:
    """Fail a check with the problem and what the author should do (no traceback into the suite)."""
    pytest.fail(f"[{check}] {problem}\n    fix: {fix}", pytrace=False)


class StyleConformance:
    """Mixin of conformance checks: subclass it in a plugin's tests, set ``style`` (or ``style_class``) and a tiny
    ``model_config``; each ``test_*`` method is one check, and a failing one says what to implement."""

    #: The style's name (or alias) as registered through its entry point.  Either this or ``style_class``.
    style: ClassVar[str | None] = None
    #: The Style class under test (default: the class registered under ``style``).  May be a subclass of the
    #: registered class that only shrinks dims for tests.
    style_class: ClassVar[type | None] = None
    #: A tiny model config (dict or ModelConfig) so the checks run in seconds.
    model_config: ClassVar[Mapping[str, Any] | None] = None
    variant: ClassVar[str | None] = None
    #: (height, width) of the test images.
    image_size: ClassVar[tuple[int, int]] = (32, 48)
    #: Parameters for the infer checks (defaults of the style's Config when None).
    params: ClassVar[Mapping[str, Any] | None] = None
    #: Export points to check (all three by default; big graphs may check "min" / "opt" only).
    export_points: ClassVar[tuple[str, ...]] = ("min", "opt", "max")
    #: Dim overrides for the export checks, e.g. ``{"height": {"max": 64}}`` (like an export profile's ``dims``).
    graph_dims: ClassVar[Mapping[str, Mapping[str, int]]] = {}
    #: Largest side the input-contract check tries at the dims' edges (a larger max edge is left out).
    max_test_side: ClassVar[int] = 160
    #: Extra (height, width) sizes for the input-contract check.
    contract_sizes: ClassVar[tuple[tuple[int, int], ...]] = ()
    batch_atol: ClassVar[float] = 1e-5
    determinism_atol: ClassVar[float] = 0.0
    #: Checks to leave out: name (see CHECKS) -> reason, shown as the skip reason.
    skip_checks: ClassVar[Mapping[str, str]] = {}

    # -- helpers ---------------------------------------------------------------------------------------
    def _skip_if_asked(self, check: str) -> None:
        if check in self.skip_checks:
            pytest.skip(f"{check}: {self.skip_checks[check]}")

    def get_style_class(self) -> type:
        cls = type(self).style_class
        if cls is not None:
            return cls
        if not self.style:
            fail("setup", f"{type(self).__name__} names no style", "set style = 'your-style' (or style_class = YourStyle) on the test class")
        from styleengine.plugins import get_engine

        engine = get_engine()
        if self.style not in engine.styles:
            fail("registered_through_entry_point", _not_registered(engine, self.style), _entry_point_fix(self.style))
        return engine.style_class(self.style)

    def make_style(self) -> Any:
        return self.get_style_class()(self.model_config, variant=self.variant)

    def make_config(self, style: Any) -> Any:
        return style.parse_config(self.params)

    def make_request(self, seed: int = 0, size: tuple[int, int] | None = None, fill: float | None = None) -> Any:
        from styleengine.style import StyleRequest

        cls = self.get_style_class()
        rng = np.random.default_rng(seed)
        h, w = size or self.image_size
        images: dict[str, Any] = {}
        for f in cls.inputs.images:
            img = np.full((h, w, 3), fill, np.float32) if fill is not None else rng.random((h, w, 3), dtype=np.float32)
            images[f.name] = [img] if f.multiple else img
        texts = {t.name: "a test" for t in cls.inputs.texts}
        return StyleRequest(images=images, texts=texts, seed=seed, id=f"r{seed}")

    def sessions(self, style: Any) -> dict[str, Any]:
        from styleengine.runtime.base import SessionOptions
        from styleengine.runtime.torch import TorchSession

        return {s.name: TorchSession(s, SessionOptions()) for s in style.graphs()}

    def run_infer(self, style: Any, sessions: Mapping[str, Any], batch: list[Any], cfg: Any, check: str) -> list[Any]:
        res = style.infer(sessions, batch, cfg)
        if not isinstance(res, list | tuple) or len(res) != len(batch):
            n = len(res) if isinstance(res, list | tuple) else type(res).__name__
            fail(check, f"infer returned {n} for {len(batch)} requests", "return a list with one StyleResult per request, in order")
        return list(res)

    def export_specs(self, style: Any) -> list[Any]:
        specs = list(style.export_graphs())
        if self.graph_dims:
            specs = [s.with_dims({k: _shrunk(s.dims[k], v) for k, v in self.graph_dims.items() if k in s.dims}) for s in specs]
        return specs

    # -- entry point and declarations ---------------------------------------------------------------------
    def test_registered_through_entry_point(self) -> None:
        """The style is registered through a ``styleengine`` entry point (and it is the class under test or its base)."""
        self._skip_if_asked("registered_through_entry_point")
        from styleengine.plugins import get_engine

        cls = self.get_style_class()
        name = self.style or cls.name
        engine = get_engine()
        if name not in engine.styles:
            fail("registered_through_entry_point", _not_registered(engine, name), _entry_point_fix(name))
        entry = engine.styles.get(name)
        if not issubclass(cls, entry.obj):
            fail("registered_through_entry_point",
                 f"the entry point registers {entry.obj.__module__}.{entry.obj.__qualname__} as {entry.name!r}, the tests use "
                 f"{cls.__module__}.{cls.__qualname__}", "register the class under test in register_styles (or test the registered one)")

    def test_declaration_is_valid(self) -> None:
        """No declaration errors of :func:`styleengine.checks.check_style` (names, api_version, configs, input contract)."""
        self._skip_if_asked("declaration_is_valid")
        from styleengine.checks import check_style

        problems = [f for f in check_style(self.get_style_class()) if f.level == "error"]
        if problems:
            fail("declaration_is_valid", "; ".join(p.message for p in problems), "change the declarations as each message says")

    def test_capabilities_match_implementation(self) -> None:
        """Every declared capability is implemented; EXPORT has graphs, each with a module, the same in export_graphs()."""
        self._skip_if_asked("capabilities_match_implementation")
        from styleengine.checks import check_style
        from styleengine.style import Capability

        cls = self.get_style_class()
        problems = [f.message for f in check_style(cls) if f.level == "error" and "Capability" in f.message]
        if problems:
            fail("capabilities_match_implementation", "; ".join(problems), "implement the method or remove the capability")
        if Capability.EXPORT in cls.capabilities:
            style = self.make_style()
            specs = style.graphs()
            if not specs:
                fail("capabilities_match_implementation", f"{cls.name} declares Capability.EXPORT but graphs() returned no GraphSpec",
                     "return a GraphSpec for every module infer runs (or remove EXPORT from capabilities)")
            names = sorted(s.name for s in specs)
            exported = sorted(s.name for s in style.export_graphs())
            if names != exported:
                fail("capabilities_match_implementation", f"export_graphs() names {exported} differ from graphs() {names}",
                     "export_graphs() must return the same graphs (names, inputs, outputs) as graphs()")
            for s in specs:
                if s.module is None:
                    fail("capabilities_match_implementation", f"graph {s.name!r} has no module",
                         "set GraphSpec(module=self.modules[...]) to the torch module the graph runs")

    def test_config_validates(self) -> None:
        """Config and ModelConfig: defaults valid; unknown keys, NaN, ±inf and values past each bound refused; Config numbers bounded."""
        self._skip_if_asked("config_validates")
        from pydantic import ValidationError

        from styleengine.checks import field_bounds

        cls = self.get_style_class()
        check = "config_validates"
        for attr in ("Config", "ModelConfig"):
            cfg_cls = getattr(cls, attr)
            try:
                cfg = cfg_cls()
            except ValidationError as exc:
                fail(check, f"{attr}() is invalid with its own defaults: {str(exc).splitlines()[0]}", f"give every {attr} field a valid default")
            if cfg != cfg_cls(**cfg.model_dump()):
                fail(check, f"{attr} does not round-trip through model_dump()", f"make {attr}'s fields plain, serialisable values")
            try:
                cfg_cls(definitely_not_a_field=1)
            except ValidationError:
                pass
            else:
                fail(check, f"{attr} accepts an unknown key", f"derive {attr} from styleengine.StyleConfig (extra='forbid') and do not override it")
            for name, info in cfg_cls.model_fields.items():
                from styleengine.checks import _floaty, _numeric

                if _floaty(info.annotation):
                    for bad in (float("nan"), float("inf"), float("-inf")):
                        try:
                            cfg_cls(**{name: bad})
                        except ValidationError:
                            continue
                        fail(check, f"{attr}.{name} accepts {bad}",
                             f"derive {attr} from styleengine.StyleConfig (allow_inf_nan=False) and do not override allow_inf_nan; "
                             "bound the field with Field(default, ge=..., le=...)")
                if not _numeric(info.annotation):
                    continue
                lo, hi, lo_strict, hi_strict = field_bounds(info)
                for bound, strict, sign in ((lo, lo_strict, -1), (hi, hi_strict, 1)):
                    if bound is None:
                        if attr == "Config":
                            side = "lower (ge=)" if sign < 0 else "upper (le=)"
                            fail(check, f"Config.{name} has no {side} bound: a request may send any value",
                                 f"declare it as {name}: ... = Field(default, ge=LOW, le=HIGH)")
                        continue
                    beyond = bound if strict else bound + sign * (1 if info.annotation is int else max(1e-6, abs(bound) * 1e-3))
                    try:
                        cfg_cls(**{name: beyond})
                    except ValidationError:
                        continue
                    fail(check, f"{attr}.{name} accepts {beyond}, outside its declared bound {bound}",
                         "do not clamp or coerce values in validators: refuse them (raise ValueError)")

    # -- graphs ---------------------------------------------------------------------------------------------
    def test_graphs_run_at_declared_shapes(self) -> None:
        """Each graph runs on torch at its min shapes and returns its declared outputs, finite."""
        self._skip_if_asked("graphs_run_at_declared_shapes")
        import torch

        style = self.make_style()
        specs = style.graphs()
        if not specs:
            pytest.skip("the style has no graphs")
        sessions = self.sessions(style)
        for spec in specs:
            feeds = {k: torch.from_numpy(v) for k, v in spec.example_inputs("min").items()}
            try:
                out = sessions[spec.name].run(feeds)
            except Exception as exc:  # noqa: BLE001
                fail("graphs_run_at_declared_shapes", f"graph {spec.name} fails at its min shapes {spec.shapes('min')}: {type(exc).__name__}: {exc}",
                     "make the module accept every shape its Dims declare (or narrow the Dims)")
            if set(out) != set(spec.output_names):
                fail("graphs_run_at_declared_shapes", f"graph {spec.name} returned outputs {sorted(out)}, declared {spec.output_names}",
                     "return a dict keyed by the declared output names (or a tuple in their order)")
            for t in spec.outputs:
                if not torch.isfinite(out[t.name].float()).all():
                    fail("graphs_run_at_declared_shapes", f"{spec.name}.{t.name} is not finite at the min shapes",
                         "check the module for divisions or logs of zero")

    # -- infer ----------------------------------------------------------------------------------------------
    def test_seeded_inference_is_deterministic(self) -> None:
        """The same request (same seed) run twice gives the same output (``determinism_atol``)."""
        self._skip_if_asked("seeded_inference_is_deterministic")
        style = self.make_style()
        cfg = self.make_config(style)
        check = "seeded_inference_is_deterministic"
        [a] = self.run_infer(style, self.sessions(style), [self.make_request(7)], cfg, check)
        [b] = self.run_infer(style, self.sessions(style), [self.make_request(7)], cfg, check)
        diff = _max_diff(a.image, b.image)
        if diff > self.determinism_atol:
            fail(check, f"the same request (seed 7) run twice differs by {diff:.3g}",
                 "draw all randomness from generators seeded by req.seed (torch.Generator().manual_seed(req.seed)), never the global RNG, "
                 "and keep no state between calls")
        # None is "no randomness was used for this request" (e.g. a code encoded from an example image, a variant
        # that is deterministic); any other seed than the request's is a mistake.
        if style.inputs.seeded and a.seed not in (7, None):
            fail(check, f"a seeded style returned seed {a.seed!r} for a request with seed 7", "return StyleResult(..., seed=req.seed)")

    def test_batch_equals_single_runs(self) -> None:
        """A batch of three requests gives what each gives alone (``batch_atol``)."""
        self._skip_if_asked("batch_equals_single_runs")
        style = self.make_style()
        cfg = self.make_config(style)
        sessions = self.sessions(style)
        reqs = [self.make_request(i) for i in range(3)]
        check = "batch_equals_single_runs"
        batched = self.run_infer(style, sessions, reqs, cfg, check)
        for i, (req, got) in enumerate(zip(reqs, batched, strict=True)):
            [alone] = self.run_infer(style, sessions, [req], cfg, check)
            diff = _max_diff(got.image, alone.image)
            if not diff <= self.batch_atol:
                fail(check, f"request {i} of a batch of 3 differs from the same request alone by {diff:.3g} (batch_atol {self.batch_atol})",
                     "infer must not mix requests: no statistics over the batch (use per-image normalisation), no padding to the "
                     "batch's largest image, one generator per request seeded by req.seed")

    def test_export_parity(self, tmp_path: Path) -> None:
        """Every graph exports to ONNX and matches ONNX Runtime within its tolerance at ``export_points``."""
        self._skip_if_asked("export_parity")
        from styleengine.export.onnx import export_graph
        from styleengine.export.validate import session_for_onnx, validate_graph
        from styleengine.runtime.base import SessionOptions
        from styleengine.runtime.torch import TorchSession

        style = self.make_style()
        if not style.has("export"):
            pytest.skip("the style does not declare Capability.EXPORT")
        specs = self.export_specs(style)
        if not specs:
            fail("export_parity", "the style declares EXPORT and has no graphs", "return GraphSpecs from graphs()")
        for spec in specs:
            path = tmp_path / f"{spec.name}.onnx"
            exporter = spec.exporter or "dynamo"
            try:
                export_graph(spec, path, exporter=exporter)
            except Exception as exc:  # noqa: BLE001
                fail("export_parity", f"graph {spec.name} does not export with torch.onnx ({exporter}): {_first_lines(exc)}",
                     "make forward traceable: no Python branching on tensor values, no .item()/.tolist()/.numpy(), shapes from "
                     "tensor.shape only; or set GraphSpec(exporter='torchscript')")
            try:
                parity = validate_graph(spec, TorchSession(spec, SessionOptions()), session_for_onnx(spec, path), points=self.export_points)
            except Exception as exc:  # noqa: BLE001
                fail("export_parity", f"graph {spec.name}: ONNX Runtime cannot run the export: {type(exc).__name__}: {exc}",
                     "the exported graph must accept every shape its Dims declare; check the Dims and the forward's reshapes")
            if not parity["passed"]:
                bad = []
                for point in self.export_points:
                    for out, st in parity[point]["outputs"].items():
                        if not st.get("passed"):
                            bad.append(f"{out} at {point} {parity[point]['shapes']}: " + (st.get("error") or
                                       f"max |err| {st['max_abs']:.3g}, PSNR {st['psnr']:.1f} dB"))
                t = spec.tolerance
                fail("export_parity", f"graph {spec.name}: ONNX Runtime drifts from torch beyond the tolerance (atol {t.atol}, rtol {t.rtol}"
                     f"{f', PSNR >= {t.psnr} dB' if t.psnr else ''}): " + "; ".join(bad),
                     "the export computes something else than torch eager: look for shape- or batch-dependent Python code, in-place "
                     "ops on inputs and ops lowered differently; loosen GraphSpec.tolerance only for a known, bounded error (fp16)")

    def test_save_load_round_trip(self, tmp_path: Path) -> None:
        """Perturbed weights saved as an engine checkpoint load back to the same tensors, model config and outputs."""
        self._skip_if_asked("save_load_round_trip")
        import torch

        from styleengine.weights import save_checkpoint

        style = self.make_style()
        tensors = style.state_dict()
        if not tensors:
            pytest.skip("the style has no weights to save")
        gen = torch.Generator().manual_seed(1)
        with torch.no_grad():  # weights other than the seeded initialisation, so loading is observable
            for mod in style.modules.values():
                for p in mod.parameters():
                    if p.is_floating_point():
                        p.add_(torch.randn(p.shape, generator=gen, dtype=torch.float32).to(p.dtype) * 1e-2)
        tensors = style.state_dict()
        path = save_checkpoint(tmp_path / "ckpt", tensors, style=style.name, model_config=style.model_config.model_dump(mode="json"))
        fresh = self.make_style()
        try:
            fresh.load_weights(path)
        except Exception as exc:  # noqa: BLE001
            fail("save_load_round_trip", f"load_weights of a checkpoint of state_dict() fails: {type(exc).__name__}: {exc}",
                 "state_dict() and load_state_dict() must be inverses: every tensor of every module in build(), keyed 'module.param'")
        if fresh.model_config != style.model_config:
            fail("save_load_round_trip", f"model config {fresh.model_config} after loading, {style.model_config} saved",
                 "keep every architecture option in ModelConfig")
        back = fresh.state_dict()
        diff = sorted(set(back) ^ set(tensors)) or [k for k in tensors if not torch.equal(back[k].cpu(), tensors[k].cpu())]
        if diff:
            fail("save_load_round_trip", f"tensors differ after save -> load: {diff[:5]}", "load every saved tensor into the module it came from")
        cfg = self.make_config(style)
        req = self.make_request(3)
        [a] = self.run_infer(style, self.sessions(style), [req], cfg, "save_load_round_trip")
        [b] = self.run_infer(fresh, self.sessions(fresh), [req], cfg, "save_load_round_trip")
        d = _max_diff(a.image, b.image)
        if d > self.determinism_atol:
            fail("save_load_round_trip", f"outputs differ by {d:.3g} after save -> load",
                 "everything infer uses must be in the modules' state (parameters and persistent buffers) or in ModelConfig")

    def contract_test_sizes(self, style: Any) -> list[tuple[int, int]]:
        """Sizes the input-contract check runs: the test size, sizes that are not multiples of the size multiple,
        and the edges of the graphs' height/width dims (where they are small enough)."""
        inp = style.inputs
        m = inp.size_multiple
        h, w = self.image_size

        def off(v: int) -> int:  # a side that is not a multiple of m (for m = 1: an odd side)
            if m == 1:
                return v | 1
            return (v // m) * m + max(1, m // 2 - 1)

        sizes = [(h, w), (off(h), off(w + m))]
        dims: dict[str, Any] = {}
        for s in style.graphs():
            dims.update({k: v for k, v in s.dims.items() if k in ("height", "width")})
        hd, wd = dims.get("height"), dims.get("width")
        if hd is not None and wd is not None:
            lo_h, lo_w = max(hd.min, inp.min_side), max(wd.min, inp.min_side)
            sizes += [(lo_h, lo_w), (lo_h + 1, off(lo_w + 2 * m))]
            if max(hd.max, wd.max) <= self.max_test_side:
                sizes += [(hd.max, wd.max), (hd.max - 1, off(wd.max - m))]
        sizes += list(self.contract_sizes)
        out: list[tuple[int, int]] = []
        for sz in sizes:
            sz = (max(sz[0], inp.min_side, 1), max(sz[1], inp.min_side, 1))
            if sz not in out and max(sz) <= inp.max_side:
                out.append(sz)
        return out

    def test_input_contract(self) -> None:
        """Outputs are float32 HxWx3 in [0, 1] at the request's size for odd sizes, the dims' edges and flat black/white images."""
        self._skip_if_asked("input_contract")
        from styleengine.preprocess import SizeError

        style = self.make_style()
        cfg = self.make_config(style)
        sessions = self.sessions(style)
        inp = style.inputs
        check = "input_contract"
        m = inp.size_multiple
        for size in self.contract_test_sizes(style):
            fits = size[0] % m == 0 and size[1] % m == 0
            try:
                [res] = self.run_infer(style, sessions, [self.make_request(0, size)], cfg, check)
            except SizeError as exc:
                if inp.size_policy == "none" and not fits:
                    continue  # refused with a clear message, as the contract says
                fail(check, f"a {size[1]}x{size[0]} request (size policy {inp.size_policy!r}, multiple {m}) was refused: {exc}",
                     "bring the image to a size the graphs take with styleengine.preprocess.fit(img, self.inputs, height_dim, width_dim)")
            except Exception as exc:  # noqa: BLE001
                fail(check, f"a {size[1]}x{size[0]} request (size policy {inp.size_policy!r}, multiple {m}) fails: {type(exc).__name__}: {exc}",
                     "fit every image with styleengine.preprocess.fit(...) before the graphs and restore(output, fitted) after; "
                     "with size_policy='none' raise styleengine.preprocess.SizeError for sizes the graphs do not take")
            if inp.size_policy == "none" and not fits:
                fail(check, f"size policy 'none' but a {size[1]}x{size[0]} request (not a multiple of {m}) was served",
                     "raise styleengine.preprocess.SizeError for sizes the contract refuses, or declare another size_policy")
            _check_image(res.image, size, check, f"{size[1]}x{size[0]} request")
            for i, extra in enumerate(res.images or []):
                _check_image(extra, None, check, f"images[{i}] of a {size[1]}x{size[0]} request")
        for fill in (0.0, 1.0):  # the ends of the value range the decoder produces
            [res] = self.run_infer(style, sessions, [self.make_request(0, fill=fill)], cfg, check)
            _check_image(res.image, tuple(self.image_size), check, f"an all-{fill:g} image")

    # -- serving --------------------------------------------------------------------------------------------
    def test_serves_through_generic_service(self) -> None:
        """The generic service builds the style's HTTP form and answers one in-process request through its runner."""
        self._skip_if_asked("serves_through_generic_service")
        from styleengine.data import ImageLimits
        from styleengine.serving.args import ServeArgs
        from styleengine.serving.runner import RunnerCore, RunnerItem
        from styleengine.serving.schema import RequestLimits, build_input_model

        cls = self.get_style_class()
        check = "serves_through_generic_service"
        try:
            build_input_model(cls, RequestLimits(ImageLimits()))
        except Exception as exc:  # noqa: BLE001
            fail(check, f"the service cannot build the HTTP form of {cls.name}: {type(exc).__name__}: {exc}",
                 "Config fields must be JSON-schema types (numbers, strings, bools, Literals, lists of them) named unlike the input fields")
        engine = _engine_with(cls)
        model_set = self.model_config.model_dump(mode="json") if hasattr(self.model_config, "model_dump") else dict(self.model_config or {})
        args = ServeArgs(style=cls.name, allow_random_weights=True, model_set=model_set, variant=self.variant, params=dict(self.params or {}),
                         warmup=False, max_batch_size=2, max_latency_ms=600_000, timeout_s=600)
        try:
            core = RunnerCore(args, engine=engine)
            core.start(background=False)
        except Exception as exc:  # noqa: BLE001
            fail(check, f"the generic service cannot load {cls.name}: {type(exc).__name__}: {exc}",
                 "the style must build from ModelConfig alone (random weights) and open torch sessions for graphs()")
        if not core.ready:
            fail(check, f"the runner did not start: {core.error}", "see the error: start-up opens a session for every graph")
        import time

        req = self.make_request(5)
        images = {k: ([_u8(a) for a in v] if isinstance(v, list) else _u8(v)) for k, v in req.images.items()}
        [out] = core.run_batch([RunnerItem(id="conformance", images=images, texts=dict(req.texts), params=dict(self.params or {}), seed=5,
                                           sent_at=time.time())])
        if out.status != 200:
            fail(check, f"the service answered {out.status} {out.error}: {out.detail}",
                 "run the request through infer yourself with the same inputs: the server calls style_infer exactly so")
        h, w = self.image_size
        if out.image is None or tuple(out.image.shape) != (h, w, 3):
            fail(check, f"the service returned an image of shape {None if out.image is None else out.image.shape}, expected {(h, w, 3)}",
                 "return StyleResult.image as float32 HxWx3 at the request's size")

    def test_tensorrt_build(self, tmp_path: Path) -> None:
        """A TensorRT engine builds for every graph (skipped where tensorrt does not import)."""
        self._skip_if_asked("tensorrt_build")
        from styleengine.export.tensorrt import tensorrt_available

        ok, why = tensorrt_available()
        if not ok:
            pytest.skip(f"TensorRT is not usable here: {why}")
        from styleengine.export.onnx import export_graph
        from styleengine.export.tensorrt import build_engine

        style = self.make_style()
        if not style.has("export"):
            pytest.skip("the style does not declare Capability.EXPORT")
        for spec in self.export_specs(style):
            onnx_path = tmp_path / f"{spec.name}.onnx"
            export_graph(spec, onnx_path, exporter=spec.exporter or "dynamo")
            plan = tmp_path / f"{spec.name}.plan"
            try:
                build_engine(spec, onnx_path, plan, precision="fp32", engine_cache=tmp_path / "cache")
            except Exception as exc:  # noqa: BLE001
                fail("tensorrt_build", f"graph {spec.name}: TensorRT cannot build an engine: {type(exc).__name__}: {exc}",
                     "use ops TensorRT supports (see its ONNX operator matrix) or keep the graph on onnxruntime")
            assert plan.is_file() and plan.stat().st_size > 0


def conformance_suite(style: str | type, *, name: str | None = None, **attrs: Any) -> type:
    """A ready test class: ``TestMyStyle = conformance_suite("my-style", model_config={"hidden": 4})``."""
    key = "style_class" if isinstance(style, type) else "style"
    label = name or "Test" + "".join(p.capitalize() for p in str(getattr(style, "name", style)).replace("_", "-").split("-")) + "Conformance"
    import sys

    caller = sys._getframe(1).f_globals.get("__name__", __name__)  # report the tests under the caller's module
    return type(label, (StyleConformance,), {key: style, **attrs, "__test__": True, "__module__": caller})


# -- internals ----------------------------------------------------------------------------------------------
def _first_lines(exc: BaseException) -> str:
    """``Type: first line`` of an exception and of its cause (torch.onnx wraps the real reason), ANSI colours removed."""
    import re

    parts = []
    while exc is not None and len(parts) < 3:
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip().splitlines()
        parts.append(f"{type(exc).__name__}: {text[0] if text else ''}")
        exc = exc.__cause__  # type: ignore[assignment]
    return " <- ".join(parts)


def _max_diff(a: Any, b: Any) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return float("inf")
    return float(np.abs(a - b).max()) if a.size else 0.0


def _shrunk(dim: Any, changes: Mapping[str, int]) -> Any:
    """``dim`` with ``changes`` applied; an opt (or min) left outside the new range is moved into it."""
    values = {"min": dim.min, "opt": dim.opt, "max": dim.max, **changes}
    values["opt"] = min(max(values["opt"], values["min"]), values["max"])
    return dim.replace(**values)


def _u8(img: np.ndarray) -> np.ndarray:
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def _check_image(img: Any, size: tuple[int, int] | None, check: str, what: str) -> None:
    if not isinstance(img, np.ndarray) or img.dtype != np.float32:
        fail(check, f"{what}: the result image is {type(img).__name__} {getattr(img, 'dtype', '')}, not a float32 numpy array",
             "return StyleResult(image=...) as float32 HxWx3 RGB in [0, 1] (styleengine.preprocess.from_tensor does it)")
    if img.ndim != 3 or img.shape[2] != 3:
        fail(check, f"{what}: the result image has shape {img.shape}, not HxWx3", "return HxWx3 RGB (from_tensor converts NCHW)")
    if size is not None and tuple(img.shape[:2]) != tuple(size):
        fail(check, f"{what}: the result is {img.shape[1]}x{img.shape[0]}, the request was {size[1]}x{size[0]}",
             "call styleengine.preprocess.restore(output, fitted) on each output before from_tensor: it crops the padding (pad) "
             "or resizes back (resize, fixed) to the request's size")
    if not np.isfinite(img).all():
        fail(check, f"{what}: the result has NaN or inf", "clip or guard the pipeline's divisions")
    lo, hi = float(img.min()), float(img.max())
    if lo < 0.0 or hi > 1.0:
        fail(check, f"{what}: the result spans [{lo:.3g}, {hi:.3g}], outside [0, 1]",
             "convert from the graph's value range with styleengine.preprocess.from_tensor(t, value_range) (it clips to [0, 1])")


def _not_registered(engine: Any, name: str) -> str:
    skipped = [s.message() for s in engine.skipped]
    known = ", ".join(engine.styles.names()) or "none"
    return f"no style {name!r} is registered through an entry point (registered: {known})" + (
        f"; skipped plugins: {'; '.join(skipped)}" if skipped else "")


def _entry_point_fix(name: str) -> str:
    module = "styleengine_" + name.replace("-", "_")
    return (f"declare the entry point in pyproject.toml:\n        [project.entry-points.styleengine]\n        {name} = \"{module}\"\n"
            f"    give {module} a register_styles hookimpl that calls register(YourStyle), and reinstall (pip install -e .)")


class _Registrar:
    """A plugin object registering one class (the class under test, which may be a test subclass)."""

    def __init__(self, cls: type) -> None:
        self.cls = cls
        self.__name__ = f"conformance-{cls.name}"

    @hookimpl
    def register_styles(self, register: Any) -> None:
        register(self.cls)


def _engine_with(cls: type) -> Any:
    from styleengine.plugins import load_engine

    return load_engine(entry_points=False, extra_plugins=[_Registrar(cls)], strict=True)  # type: ignore[list-item]

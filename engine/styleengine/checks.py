"""Static checks of a Style's declarations, shared by ``engine plugins --check`` and the conformance suite.

Torch-free: only the class is inspected (nothing is built or run).  Each problem is a :class:`Finding`
with a level (``error``: the style is broken or breaks a rule of the plugin API; ``warning``: it works but
a user or the server will miss something) and a message that says what to change.
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

Level = Literal["error", "warning"]


@dataclass(frozen=True)
class Finding:
    level: Level
    style: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"level": self.level, "style": self.style, "message": self.message}


def overrides(cls: type, method: str) -> bool:
    """Does ``cls`` (or a base between it and :class:`Style`) implement ``method``?"""
    from .style import Style

    return getattr(cls, method, None) is not getattr(Style, method, None)


def _numeric(annotation: Any) -> bool:
    """int / float, alone or in an Optional / Union (bool is not numeric here)."""
    if annotation in (int, float):
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_numeric(a) for a in typing.get_args(annotation) if a is not type(None))
    return False


def _floaty(annotation: Any) -> bool:
    if annotation is float:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(a is float for a in typing.get_args(annotation))
    return False


def field_bounds(info: Any) -> tuple[float | None, float | None, bool, bool]:
    """(lower, upper, lower_strict, upper_strict) of a pydantic field from its ``ge/gt/le/lt`` metadata."""
    lo = hi = None
    lo_strict = hi_strict = False
    for m in getattr(info, "metadata", ()):
        for attr, strict, is_lo in (("ge", False, True), ("gt", True, True), ("le", False, False), ("lt", True, False)):
            v = getattr(m, attr, None)
            if v is None:
                continue
            if is_lo:
                lo, lo_strict = float(v), strict
            else:
                hi, hi_strict = float(v), strict
    return lo, hi, lo_strict, hi_strict


def check_config_class(style: str, attr: str, cfg: Any, *, bounds_required: bool) -> list[Finding]:
    """Rules every config class follows: unknown keys refused, NaN/inf refused, (per request) two-sided bounds."""
    out: list[Finding] = []
    conf = getattr(cfg, "model_config", {}) or {}
    where = f"{style}.{attr}"
    if conf.get("extra") != "forbid":
        out.append(Finding("error", style, f"{where} accepts unknown keys (extra={conf.get('extra')!r}): derive it from "
                                            "styleengine.StyleConfig and do not override model_config['extra'] (it must be 'forbid')"))
    fields = getattr(cfg, "model_fields", {})
    floats = [n for n, f in fields.items() if _floaty(f.annotation)]
    if floats and conf.get("allow_inf_nan", True):
        out.append(Finding("error", style, f"{where} accepts NaN/inf in {', '.join(floats)}: derive it from styleengine.StyleConfig "
                                            "(allow_inf_nan=False) and do not override model_config['allow_inf_nan']"))
    for name, info in fields.items():
        if not _numeric(info.annotation):
            continue
        lo, hi, _, _ = field_bounds(info)
        if bounds_required and (lo is None or hi is None):
            missing = " and no ".join(s for s, v in (("lower (ge=/gt=)", lo), ("upper (le=/lt=)", hi)) if v is None)
            out.append(Finding("warning", style, f"{where}.{name} has no {missing} bound: a request can send any number; "
                                                  f"declare it as Field(default, ge=..., le=...)"))
        if attr == "Config" and not info.description:
            out.append(Finding("warning", style, f"{where}.{name} has no description: the HTTP form, OpenAPI schema and "
                                                  "--help show it bare; add Field(..., description=...)"))
    return out


def check_style(cls: Any, distribution: str = "") -> list[Finding]:
    """Every declaration problem of a style class (empty list: all good)."""
    from . import API_VERSION
    from .registry import _NAME
    from .style import Capability, Style, StyleConfig

    name = getattr(cls, "name", None) or getattr(cls, "__qualname__", repr(cls))
    out: list[Finding] = []

    def err(msg: str) -> None:
        out.append(Finding("error", name, msg))

    def warn(msg: str) -> None:
        out.append(Finding("warning", name, msg))

    if not (isinstance(cls, type) and issubclass(cls, Style)):
        err(f"{cls!r} is not a styleengine.Style subclass: subclass styleengine.Style")
        return out
    if not getattr(cls, "name", None):
        err(f"{cls.__qualname__} has no name: set the class attribute name = 'my-style'")
        return out
    for n in (cls.name, *cls.aliases):
        if not isinstance(n, str) or not _NAME.match(n):
            err(f"name or alias {n!r} is invalid: use lower-case letters, digits, '-' and '_', starting with a letter")
    if cls.api_version != API_VERSION:
        err(f"api_version is {cls.api_version}, this styleengine provides {API_VERSION}: upgrade the plugin or the engine")
    if not cls.description:
        warn("no description: `engine styles` and the service's docs show none; set description = '...'")

    caps = set(cls.capabilities)
    unknown = [c for c in caps if not isinstance(c, Capability)]
    if unknown:
        err(f"capabilities {unknown!r} are not styleengine.Capability members (TRAIN, EXPORT, INFER)")
    if Capability.INFER not in caps:
        warn("does not declare Capability.INFER: `engine infer` and the server will not run it")
    if Capability.INFER in caps and not overrides(cls, "infer"):
        err("declares Capability.INFER but does not implement infer(sessions, batch, cfg): implement it (return one "
            "StyleResult per request) or remove INFER from capabilities")
    if Capability.EXPORT in caps and not overrides(cls, "graphs"):
        err("declares Capability.EXPORT but does not implement graphs(): return a GraphSpec per exportable module, or remove "
            "EXPORT from capabilities")
    if Capability.TRAIN in caps:
        if not overrides(cls, "train"):
            err("declares Capability.TRAIN but does not implement train(cfg, ctx): implement it (through styleengine.training) "
                "or remove TRAIN from capabilities")
        if cls.TrainConfig is None:
            err("declares Capability.TRAIN but has no TrainConfig: set TrainConfig = a StyleConfig subclass of its hyper-parameters")
    elif overrides(cls, "train"):
        warn("implements train() but does not declare Capability.TRAIN: `engine train` refuses it; add Capability.TRAIN")
    if Capability.EXPORT not in caps and overrides(cls, "graphs"):
        warn("implements graphs() but does not declare Capability.EXPORT: `engine export` refuses it; add Capability.EXPORT "
             "(or leave it out on purpose if the graphs cannot export)")
    if cls.needs_weights is True and not overrides(cls, "build") and not isinstance(cls.__dict__.get("needs_weights"), property):
        warn("needs_weights is True but build() is not implemented: a style without modules has no weights; set needs_weights = False")

    for attr in ("Config", "ModelConfig", "TrainConfig"):
        c = getattr(cls, attr)
        if c is None and attr == "TrainConfig":
            continue
        if not (isinstance(c, type) and issubclass(c, StyleConfig)):
            err(f"{attr} must subclass styleengine.StyleConfig (got {c!r})")
            continue
        out += check_config_class(name, attr, c, bounds_required=attr == "Config")
        try:
            c()
        except Exception as exc:  # noqa: BLE001
            if attr != "TrainConfig":
                err(f"{attr}() fails with its defaults ({type(exc).__name__}: {str(exc).splitlines()[0]}): give every field a valid default")

    if not cls.variants:
        err("variants is empty: declare at least one, e.g. variants = ('default',)")
    inp = cls.inputs
    if not inp.images and not inp.texts:
        err("inputs declares no image and no text: a request would carry nothing")
    names = [f.name for f in inp.images] + [t.name for t in inp.texts]
    if len(set(names)) != len(names):
        err(f"inputs uses a field name twice: {names}")
    clash = set(names) & set(getattr(cls.Config, "model_fields", {}))
    if clash:
        err(f"Config parameters {sorted(clash)} have the names of input fields: rename one of them")
    if "seed" in getattr(cls.Config, "model_fields", {}):
        err("Config has a 'seed' parameter: the seed is part of every request already (StyleRequest.seed); remove it")
    lo, hi = inp.value_range
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        err(f"inputs.value_range {inp.value_range} must be two finite numbers, low < high")
    if inp.size_multiple < 1:
        err(f"inputs.size_multiple is {inp.size_multiple}: use 1 or more")
    if not (1 <= inp.min_side <= inp.max_side):
        err(f"inputs.min_side/max_side ({inp.min_side}, {inp.max_side}) must satisfy 1 <= min_side <= max_side")
    if inp.size_policy not in ("resize", "pad", "fixed", "none"):
        err(f"inputs.size_policy {inp.size_policy!r} is not resize, pad, fixed or none")
    if inp.size_policy == "fixed" and inp.fixed_size is not None and inp.fixed_size % inp.size_multiple:
        err(f"inputs.fixed_size {inp.fixed_size} is not a multiple of size_multiple {inp.size_multiple}")
    if cls.long_running and Capability.INFER not in caps:
        warn("long_running is set but the style does not infer")
    return out


def errors(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.level == "error"]


# -- whole plugins (engine plugins --check) --------------------------------------------------------------------
VERB_HOOKS = ("style_train", "style_export", "style_infer")


@dataclass
class PluginReport:
    """One plugin's result: ``status`` is ``ok``, ``warnings`` or ``errors``."""

    name: str
    distribution: str
    version: str
    styles: tuple[str, ...] = ()
    runtimes: tuple[str, ...] = ()
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        return "errors" if self.errors else "warnings" if self.warnings else "ok"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "distribution": self.distribution, "version": self.version, "status": self.status,
                "styles": list(self.styles), "runtimes": list(self.runtimes), "errors": self.errors, "warnings": self.warnings}


def check_engine(engine: Any) -> list[PluginReport]:
    """Check every plugin the engine found: load failures, hooks no spec knows (pluggy's ``check_pending``,
    attributed to each plugin), verb hooks that replace instead of wrap, and every style's declarations."""
    import difflib

    from pluggy import PluginValidationError

    from . import hookspecs

    reports: dict[str, PluginReport] = {}
    for p in engine.plugins:
        reports[p.name] = PluginReport(p.name, p.distribution, p.version, tuple(p.styles), tuple(p.runtimes))
    for s in engine.skipped:
        rep = reports.setdefault(s.name, PluginReport(s.name, s.distribution, s.version))
        rep.errors.append(f"SKIPPED ({s.stage}): {s.error}")

    pm = engine.pm
    known = [n for n in dir(hookspecs) if not n.startswith("_") and hasattr(getattr(hookspecs, n), "styleengine_spec")]
    for hook_name in list(pm.hook.__dict__):
        if hook_name.startswith("_"):
            continue
        caller = getattr(pm.hook, hook_name)
        for impl in caller.get_hookimpls():
            rep = reports.setdefault(impl.plugin_name, PluginReport(impl.plugin_name, impl.plugin_name, ""))
            if not caller.has_spec():
                if impl.optionalhook:
                    rep.warnings.append(f"implements {hook_name!r} (optionalhook), which no hookspec of this styleengine defines: it never runs")
                    continue
                close = difflib.get_close_matches(hook_name, known, n=1)
                hint = f" did you mean {close[0]!r}?" if close else f" known hooks: {', '.join(sorted(known))}"
                rep.errors.append(f"implements unknown hook {hook_name!r} (pluggy's check_pending refuses it);{hint}")
            elif hook_name in VERB_HOOKS and impl.plugin_name != "styleengine" and not (impl.wrapper or impl.hookwrapper):
                rep.warnings.append(f"implements {hook_name} without wrapper=True: as a firstresult hook it replaces the engine's own "
                                    f"call for every style; use @hookimpl(wrapper=True) and `yield` for cross-cutting work")
    try:
        pm.check_pending()
    except PluginValidationError as exc:  # already reported per plugin above; make sure nothing slipped through
        name = pm.get_name(exc.plugin) or str(exc.plugin)
        rep = reports.setdefault(name, PluginReport(name, name, ""))
        if not any("unknown hook" in e for e in rep.errors):
            rep.errors.append(str(exc))

    for entry in engine.styles:
        owner = next((r for r in reports.values() if entry.name in r.styles), None)
        if owner is None:
            owner = reports.setdefault(entry.distribution, PluginReport(entry.distribution, entry.distribution, entry.version, (entry.name,)))
        for f in check_style(entry.obj, entry.distribution):
            (owner.errors if f.level == "error" else owner.warnings).append(f"style {entry.name}: {f.message}")
    return list(reports.values())

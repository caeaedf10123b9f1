"""Plugin discovery and the Engine object (pluggy PluginManager + style/runtime registries).

Plugins are found through the ``styleengine`` entry-point group (entry name = plugin name, value =
module).  Built-in styles are ordinary distributions found the same way.  Loading is defensive: a
plugin that fails to import or to register is skipped with a warning naming its distribution and
the error, so one broken plugin never takes the CLI or the server down; ``strict=True`` (``--strict``,
``STYLEENGINE_STRICT=1``) turns any such failure into :class:`PluginLoadError`.

``STYLEENGINE_PLUGINS`` is an allow-list of plugin (entry-point) names, comma separated; when set,
only those load (``STYLEENGINE_PLUGINS=`` loads none but the engine's own).  Extra plugin modules
can be given by import path (``-p my.module`` or ``STYLEENGINE_EXTRA_PLUGINS``), like pytest's ``-p``.

A plugin's import runs under a deadline (``STYLEENGINE_PLUGIN_IMPORT_TIMEOUT`` seconds, 120 by default:
a cold import of diffusers and torch on a busy 2-core machine takes tens of seconds): an import that hangs
(a network call, a lock) is abandoned in its thread and the plugin skipped like one that raised.  Anything
a plugin's import raises, ``SystemExit`` included, is caught the same way.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType
from typing import Any

import pluggy

from . import hookspecs
from .registry import Registry, RegistryError, check_style_class

log = logging.getLogger(__name__)

GROUP = "styleengine"
ENV_ALLOW = "STYLEENGINE_PLUGINS"
ENV_EXTRA = "STYLEENGINE_EXTRA_PLUGINS"
ENV_STRICT = "STYLEENGINE_STRICT"
ENV_IMPORT_TIMEOUT = "STYLEENGINE_PLUGIN_IMPORT_TIMEOUT"
DEFAULT_IMPORT_TIMEOUT_S = 120.0
BUILTIN = "styleengine.builtin"


class PluginLoadError(RuntimeError):
    """A plugin failed to load or register and strict mode is on."""


@dataclass(frozen=True)
class PluginInfo:
    name: str
    distribution: str
    version: str
    module: str
    styles: tuple[str, ...] = ()
    runtimes: tuple[str, ...] = ()


@dataclass(frozen=True)
class SkippedPlugin:
    name: str
    distribution: str
    version: str
    stage: str  # "import", "register_styles", "register_runtimes", "register_commands", "allow-list"
    error: str

    def message(self) -> str:
        return f"plugin {self.name!r} from {self.distribution} {self.version} skipped ({self.stage}): {self.error}"


@dataclass
class Engine:
    """Everything loaded: the plugin manager, registries, and what was loaded or skipped."""

    pm: pluggy.PluginManager
    styles: Registry[Any] = field(default_factory=lambda: Registry("style"))
    runtimes: Registry[Any] = field(default_factory=lambda: Registry("runtime"))
    plugins: list[PluginInfo] = field(default_factory=list)
    skipped: list[SkippedPlugin] = field(default_factory=list)
    strict: bool = False

    @property
    def hook(self) -> Any:
        return self.pm.hook

    def style_class(self, name: str) -> type:
        return self.styles.get(name).obj

    def runtime_class(self, name: str) -> type:
        return self.runtimes.get(name).obj

    def add_commands(self, cli: Any) -> None:
        """Let plugins add CLI commands; a failing plugin is skipped like at load time."""
        for impl in self.pm.hook.register_commands.get_hookimpls():
            try:
                impl.function(cli=cli)
            except Exception as exc:  # noqa: BLE001 - isolation is the point
                info = self._info(impl.plugin_name)
                self._skip(info.name, info.distribution, info.version, "register_commands", exc)

    # -- internals -----------------------------------------------------------------------------
    def _info(self, plugin_name: str) -> PluginInfo:
        for p in self.plugins:
            if p.name == plugin_name:
                return p
        return PluginInfo(plugin_name, plugin_name, "", plugin_name)

    def _skip(self, name: str, dist: str, version: str, stage: str, exc: BaseException | str) -> None:
        err = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
        rec = SkippedPlugin(name, dist, version, stage, err)
        if self.strict:
            raise PluginLoadError(rec.message())
        self.skipped.append(rec)
        log.warning(rec.message())


def _dist_of(ep: metadata.EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return ep.value.split(".")[0], ""
    return dist.metadata["Name"] or ep.name, dist.version or ""


def _allow_list(allow: Iterable[str] | None) -> set[str] | None:
    if allow is not None:
        return {a.strip() for a in allow if a.strip()}
    raw = os.environ.get(ENV_ALLOW)
    if raw is None:
        return None
    return {a.strip() for a in raw.split(",") if a.strip()}


def import_timeout() -> float:
    raw = os.environ.get(ENV_IMPORT_TIMEOUT, "")
    try:
        value = float(raw) if raw.strip() else DEFAULT_IMPORT_TIMEOUT_S
    except ValueError:
        raise PluginLoadError(f"{ENV_IMPORT_TIMEOUT}={raw!r} is not a number of seconds") from None
    if not value > 0:
        raise PluginLoadError(f"{ENV_IMPORT_TIMEOUT}={raw!r} must be positive")
    return value


def _import_within(load: Any, name: str) -> Any:
    """``load()`` on a daemon thread, waited for :func:`import_timeout` seconds.  Its exception (any, as
    a plugin calling ``sys.exit`` at import must not end the CLI) is re-raised as a RuntimeError here."""
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["module"] = load()
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            result["error"] = exc

    t = threading.Thread(target=run, name=f"styleengine-import-{name}", daemon=True)
    t.start()
    timeout = import_timeout()
    t.join(timeout)
    if t.is_alive():
        raise RuntimeError(f"its import did not finish within {timeout:g} s ({ENV_IMPORT_TIMEOUT}); it was abandoned")
    if "error" in result:
        exc = result["error"]
        if isinstance(exc, Exception):
            raise exc
        raise RuntimeError(f"its import raised {type(exc).__name__}: {exc}")
    return result["module"]


def load_engine(
    *,
    strict: bool | None = None,
    allow: Iterable[str] | None = None,
    extra_plugins: Sequence[str | ModuleType] = (),
    entry_points: bool = True,
) -> Engine:
    """Create a PluginManager, load plugins, and run the registration hooks."""
    if strict is None:
        strict = os.environ.get(ENV_STRICT, "") not in ("", "0", "false", "no")
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    engine = Engine(pm=pm, strict=strict)

    from . import __version__
    from .builtin import EnginePlugin

    pm.register(EnginePlugin(engine), name="styleengine")
    engine.plugins.append(PluginInfo("styleengine", "styleengine", __version__, BUILTIN))

    allowed = _allow_list(allow)
    candidates: list[tuple[str, str, str, Any]] = []  # name, dist, version, loader
    if entry_points:
        for ep in sorted(metadata.entry_points(group=GROUP), key=lambda e: e.name):
            dist, version = _dist_of(ep)
            candidates.append((ep.name, dist, version, ep))
    extra_env = [m for m in os.environ.get(ENV_EXTRA, "").split(",") if m.strip()]
    for mod in [*extra_env, *extra_plugins]:
        name = mod if isinstance(mod, str) else mod.__name__
        candidates.append((name, name, "", mod))

    for name, dist, version, loader in candidates:
        if allowed is not None and name not in allowed:
            log.debug("plugin %s (%s) not in %s; not loaded", name, dist, ENV_ALLOW)
            continue
        if pm.has_plugin(name):
            engine._skip(name, dist, version, "import", f"a plugin named {name!r} is already loaded")
            continue
        try:
            if isinstance(loader, metadata.EntryPoint):
                module = _import_within(loader.load, name)
            elif isinstance(loader, str):
                module = _import_within(lambda: importlib.import_module(loader.strip()), name)
            else:
                module = loader
            pm.register(module, name=name)
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not take the engine down
            engine._skip(name, dist, version, "import", exc)
            continue
        engine.plugins.append(PluginInfo(name, dist, version, getattr(module, "__name__", str(module))))

    _register_all(engine, "register_styles", engine.styles, _style_entry)
    _register_all(engine, "register_runtimes", engine.runtimes, _runtime_entry)
    return engine


def _style_entry(cls: Any, dist: str) -> tuple[str, tuple[str, ...]]:
    check_style_class(cls, dist)
    return cls.name, tuple(cls.aliases)


def _runtime_entry(cls: Any, dist: str) -> tuple[str, tuple[str, ...]]:
    from .runtime.base import Runtime

    if not (isinstance(cls, type) and issubclass(cls, Runtime) and getattr(cls, "name", None)):
        raise RegistryError(f"{dist} registered {cls!r}, which is not a named styleengine Runtime subclass")
    return cls.name, ()


def _register_all(engine: Engine, hook_name: str, registry: Registry[Any], describe: Any) -> None:
    """Call one registration hook plugin by plugin, so a failure only removes that plugin.

    A plugin's registrations are collected first and committed only if all of them are valid: a
    plugin is either fully in or fully out.
    """
    hook = getattr(engine.pm.hook, hook_name)
    for impl in hook.get_hookimpls():  # registration order (pluggy calls LIFO; we register FIFO)
        info = engine._info(impl.plugin_name)
        pending: list[Any] = []
        try:
            impl.function(register=pending.append)
            names = []
            for obj in pending:
                name, aliases = describe(obj, info.distribution)
                names.append((name, aliases, obj))
            staged = Registry[Any](registry.kind)
            for name, aliases, obj in names:  # duplicates within the plugin itself
                staged.add(name, obj, distribution=info.distribution, version=info.version, aliases=aliases)
            for name, aliases, obj in names:  # then against everything registered so far
                for n in (name, *aliases):
                    if n in registry:
                        owner = registry.get(n)
                        raise RegistryError(
                            f"{registry.kind} {n!r} is registered twice: by {owner.distribution} and by {info.distribution}"
                        )
        except Exception as exc:  # noqa: BLE001
            engine._skip(info.name, info.distribution, info.version, hook_name, exc)
            if hook_name == "register_styles" and engine.pm.has_plugin(info.name):
                engine.pm.unregister(name=info.name)
                engine.plugins = [p for p in engine.plugins if p.name != info.name]
            continue
        for name, aliases, obj in names:
            registry.add(name, obj, distribution=info.distribution, version=info.version, aliases=aliases)
        attr = "styles" if hook_name == "register_styles" else "runtimes"
        engine.plugins = [
            PluginInfo(**{**p.__dict__, attr: p.__dict__[attr] + tuple(n for n, _, _ in names)}) if p.name == info.name else p
            for p in engine.plugins
        ]


_ENGINE: Engine | None = None
_ENGINE_KEY: tuple[Any, ...] | None = None


def get_engine(*, strict: bool | None = None, extra_plugins: Sequence[str] = ()) -> Engine:
    """The process-wide engine, loaded on first use and reloaded only when the arguments change."""
    global _ENGINE, _ENGINE_KEY
    key = (strict, tuple(extra_plugins), os.environ.get(ENV_ALLOW), os.environ.get(ENV_EXTRA))
    if _ENGINE is None or key != _ENGINE_KEY:
        _ENGINE = load_engine(strict=strict, extra_plugins=extra_plugins)
        _ENGINE_KEY = key
    return _ENGINE


def reset_engine() -> None:
    global _ENGINE, _ENGINE_KEY
    _ENGINE = _ENGINE_KEY = None

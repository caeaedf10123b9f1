"""The opt-in pytest plugin: ``pytest_plugins = ["styleengine.testing"]`` in a conftest.py.

* registers the ``conformance`` marker and puts it on every check of every :class:`StyleConformance` class;
* adds the engine's version, plugin API version and installed styles to the report header;
* reads the ``styleengine_conformance`` ini option (a line per style, ``NAME`` or ``NAME {json of class
  attributes}``) and runs the whole suite for each, collected under the conftest.py that enabled the plugin.
"""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

import pytest

INI = "styleengine_conformance"
_DONE = pytest.StashKey[bool]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        INI,
        type="linelist",
        default=[],
        help='styles to run the styleengine conformance suite on: one per line, NAME or NAME {"model_config": {...}, ...}',
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "conformance: a styleengine conformance check (styleengine.testing)")


def pytest_report_header(config: pytest.Config) -> str:
    import styleengine

    try:
        from styleengine.plugins import get_engine

        names = ", ".join(get_engine().styles.names()) or "none"
    except Exception as exc:  # noqa: BLE001 - a header must never break a run
        names = f"(cannot load plugins: {exc})"
    return f"styleengine {styleengine.__version__} (plugin API {styleengine.API_VERSION}); styles: {names}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from .conformance import StyleConformance

    for item in items:
        cls = getattr(item, "cls", None)
        if isinstance(cls, type) and issubclass(cls, StyleConformance):
            item.add_marker(pytest.mark.conformance)


def parse_line(line: str) -> tuple[str, dict[str, Any]]:
    """``NAME`` or ``NAME {json}`` -> (name, class attributes); lists become tuples (image_size, export_points)."""
    name, _, rest = line.strip().partition(" ")
    attrs: dict[str, Any] = {}
    if rest.strip():
        try:
            attrs = json.loads(rest)
        except json.JSONDecodeError as exc:
            raise pytest.UsageError(f"{INI}: {line!r}: the part after the name must be a JSON object ({exc})") from None
        if not isinstance(attrs, dict):
            raise pytest.UsageError(f"{INI}: {line!r}: the part after the name must be a JSON object")
    from .conformance import StyleConformance

    unknown = [k for k in attrs if not hasattr(StyleConformance, k) or k.startswith("_")]
    if unknown:
        raise pytest.UsageError(f"{INI}: {line!r}: unknown settings {unknown}; see styleengine.testing.StyleConformance")
    return name, {k: tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list) else v for k, v in attrs.items()}


class ConformanceModule(pytest.Module):
    """The generated test classes, as a module collected under the conftest.py that enabled the plugin."""

    def _getobj(self) -> Any:
        from .conformance import conformance_suite

        mod = types.ModuleType("styleengine_conformance")
        for line in self.config.getini(INI):
            if not line.strip():
                continue
            name, attrs = parse_line(line)
            cls = conformance_suite(name, **attrs)
            cls.__module__ = mod.__name__
            setattr(mod, cls.__name__, cls)
        return mod


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    config = parent.config
    if file_path.name != "conftest.py" or config.stash.get(_DONE, False):
        return None
    try:
        lines = config.getini(INI)
    except ValueError:  # the plugin was registered after the ini options were read
        return None
    if not lines:
        return None
    try:
        enabled_here = "styleengine.testing" in file_path.read_text(errors="replace")
    except OSError:
        return None
    if not enabled_here:
        return None
    config.stash[_DONE] = True
    return ConformanceModule.from_parent(parent, path=file_path)

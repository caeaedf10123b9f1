"""The template plugin is part of CI: make install installs it from its folder and make test collects its tests."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "examples" / "styleengine-tonemap"


def test_template_is_installed_and_tested_by_make() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert "EXAMPLES := $(sort $(dir $(wildcard examples/*/pyproject.toml)))" in makefile
    assert "$(foreach p,$(PLUGINS) $(EXAMPLES),-e $(p))" in makefile
    assert "$(BIN)/python -m styleengine plugins --check" in makefile  # CI fails on a plugin with errors
    root = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "examples" in root["tool"]["pytest"]["ini_options"]["testpaths"]
    assert (TEMPLATE / "tests" / "test_tonemap.py").is_file()


def test_template_declares_its_entry_point_and_is_installed() -> None:
    from importlib import metadata

    project = tomllib.loads((TEMPLATE / "pyproject.toml").read_text())["project"]
    assert project["name"] == "styleengine-tonemap"
    assert project["entry-points"]["styleengine"] == {"tonemap": "styleengine_tonemap"}
    assert "serving" in project["optional-dependencies"]
    [ep] = [e for e in metadata.entry_points(group="styleengine") if e.name == "tonemap"]
    assert ep.value == "styleengine_tonemap" and ep.dist.metadata["Name"] == "styleengine-tonemap"


def test_template_uses_only_the_public_api() -> None:
    """The template imports styleengine's documented modules only (see docs/writing-a-plugin.md, Public API)."""
    import re

    public = ("styleengine", "styleengine.preprocess", "styleengine.spec", "styleengine.training", "styleengine.training.samples",
              "styleengine.data", "styleengine.data.errors", "styleengine.testing", "styleengine.runtime.base",
              "styleengine.runtime.torch", "styleengine.style")
    for path in TEMPLATE.rglob("*.py"):
        for mod in re.findall(r"^\s*(?:from|import) (styleengine(?:\.[\w.]+)?)(?=\s|$)", path.read_text(), re.M):
            assert mod in public, f"{path.relative_to(REPO)} imports {mod}, which is not public API"

"""Helpers shared by the core tests (importable: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import textwrap
from pathlib import Path


def make_dist(root: Path, dist: str, entry_points: dict[str, str], modules: dict[str, str], version: str = "1.0") -> None:
    """Write an importable fake distribution (dist-info + modules) under ``root`` (put on sys.path)."""
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    eps = "[styleengine]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(eps)
    for name, src in modules.items():
        (root / f"{name}.py").write_text(textwrap.dedent(src))


STYLE_SRC = '''
import styleengine
from styleengine.style import Style

class {cls}(Style):
    name = "{name}"
    aliases = {aliases!r}
    api_version = {api}

@styleengine.hookimpl
def register_styles(register):
    register({cls})
'''


def style_module(name: str, cls: str = "S", aliases: tuple[str, ...] = (), api: int = 1) -> str:
    return STYLE_SRC.format(name=name, cls=cls, aliases=aliases, api=api)

"""``engine plugin new NAME``: start a plugin from the template in ``examples/styleengine-tonemap``.

The template is copied with its names replaced: distribution ``styleengine-NAME``, import package
``styleengine_NAME``, entry point and style name ``NAME``, class ``CamelName``.  The copy is a working,
tested plugin (the tone-mapping network) to change into one's own style; its tests run the conformance suite.

Where the template comes from, first found: ``--template DIR``, ``$STYLEENGINE_TEMPLATE``, the
``examples/styleengine-tonemap`` folder of the checkout styleengine is installed from.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

TEMPLATE_NAME = "tonemap"
ENV_TEMPLATE = "STYLEENGINE_TEMPLATE"
_NAME = re.compile(r"^[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*$")
_SKIP = {"__pycache__", ".pytest_cache", "build", "dist", ".venv", ".git"}


class ScaffoldError(ValueError):
    """The plugin cannot be created (bad name, target exists, no template); one line."""


def find_template(template: str | os.PathLike[str] | None = None) -> Path:
    candidates = [Path(template)] if template else []
    if os.environ.get(ENV_TEMPLATE):
        candidates.append(Path(os.environ[ENV_TEMPLATE]))
    import styleengine

    candidates.append(Path(styleengine.__file__).resolve().parents[2] / "examples" / f"styleengine-{TEMPLATE_NAME}")
    for c in candidates:
        if (c / "pyproject.toml").is_file() and (c / "src" / f"styleengine_{TEMPLATE_NAME}").is_dir():
            return c
    tried = ", ".join(str(c) for c in candidates)
    raise ScaffoldError(f"no plugin template found (tried {tried}); pass --template DIR (a copy of examples/styleengine-{TEMPLATE_NAME} "
                        f"from the styleengine repository) or set {ENV_TEMPLATE}")


def names(name: str) -> dict[str, str]:
    if not _NAME.match(name):
        raise ScaffoldError(f"plugin name {name!r} is invalid: lower-case letters and digits, words joined by '-' or '_' (e.g. my-grade)")
    if name.replace("_", "-") == TEMPLATE_NAME:
        raise ScaffoldError(f"{name!r} is the template's own name; choose another")
    snake, kebab = name.replace("-", "_"), name.replace("_", "-")
    camel = "".join(p.capitalize() for p in re.split(r"[-_]", name))
    return {"style": name, "snake": snake, "kebab": kebab, "camel": camel}


def _rewrite(text: str, n: dict[str, str]) -> str:
    t = TEMPLATE_NAME
    text = text.replace('aliases = ("tone-map",)', "aliases = ()")  # the template's alias would clash with it
    text = text.replace(f"styleengine_{t}", f"styleengine_{n['snake']}")
    text = text.replace(f"styleengine-{t}", f"styleengine-{n['kebab']}")
    text = text.replace("ToneMapNet", f"{n['camel']}Net")
    text = text.replace(t.capitalize(), n["camel"])
    return text.replace(t, n["style"])


def new_plugin(name: str, dest: str | os.PathLike[str] = ".", template: str | os.PathLike[str] | None = None) -> Path:
    """Copy the template to ``dest/styleengine-NAME`` with the names filled in; returns the new folder."""
    n = names(name)
    src = find_template(template)
    target = Path(dest) / f"styleengine-{n['kebab']}"
    if target.exists():
        raise ScaffoldError(f"{target} already exists; choose another --dir or name")
    tmp = target.with_name(target.name + ".tmp-new")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for path in sorted(src.rglob("*")):
            rel = path.relative_to(src)
            if any(part in _SKIP or part.endswith(".egg-info") for part in rel.parts):
                continue
            out = tmp / Path(*[_rewrite(part, n).replace(f"test_{n['style']}", f"test_{n['snake']}") for part in rel.parts])
            if path.is_dir():
                out.mkdir(parents=True, exist_ok=True)
                continue
            out.parent.mkdir(parents=True, exist_ok=True)
            try:
                out.write_text(_rewrite(path.read_text(encoding="utf-8"), n), encoding="utf-8")
            except UnicodeDecodeError:
                shutil.copyfile(path, out)
            shutil.copymode(path, out)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target

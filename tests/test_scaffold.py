"""``engine plugin new``: the template copied with every name filled in, and the copy imports and registers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def engine(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "styleengine", *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_new_plugin_has_the_new_names_and_imports(tmp_path: Path) -> None:
    r = engine("plugin", "new", "my-grade", "--dir", str(tmp_path), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    root = Path(r.stdout.strip())
    assert root == tmp_path / "styleengine-my-grade"
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert files == ["README.md", "pyproject.toml", *(f"src/styleengine_my_grade/{m}.py" for m in
                     ("__init__", "config", "nets", "pipeline", "style", "train")), "tests/test_my_grade.py"]
    for f in files:
        text = (root / f).read_text()
        assert "tonemap" not in text.lower().replace("tone-mapping", "").replace("tone mapping", ""), f
    pyproject = (root / "pyproject.toml").read_text()
    assert 'name = "styleengine-my-grade"' in pyproject and 'my-grade = "styleengine_my_grade"' in pyproject
    # the copy imports, registers its style through the hook, and passes the static checks
    probe = (
        "import json, styleengine_my_grade as m\n"
        "from styleengine.plugins import load_engine\n"
        "from styleengine.checks import check_style\n"
        "e = load_engine(entry_points=False, extra_plugins=['styleengine_my_grade'], strict=True)\n"
        "cls = e.style_class('my-grade')\n"
        "print(json.dumps({'cls': cls.__name__, 'aliases': list(cls.aliases), 'errors': [f.message for f in check_style(cls) if f.level == 'error'],"
        " 'graphs': [g.name for g in cls({'hidden': 2}).graphs()]}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"cls": "MyGrade", "aliases": [], "errors": [], "graphs": ["net"]}


@pytest.mark.parametrize(("name", "message"), [("My Grade", "is invalid"), ("tonemap", "the template's own name")])
def test_bad_names_are_refused(tmp_path: Path, name: str, message: str) -> None:
    r = engine("plugin", "new", name, "--dir", str(tmp_path), cwd=tmp_path)
    assert r.returncode == 1 and message in r.stderr and not list(tmp_path.iterdir())


def test_existing_folder_is_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "styleengine-grade").mkdir()
    r = engine("plugin", "new", "grade", "--dir", str(tmp_path), cwd=tmp_path)
    assert r.returncode == 1 and "already exists" in r.stderr
    assert not list((tmp_path / "styleengine-grade").iterdir())

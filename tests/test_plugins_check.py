"""``engine plugins --check``: per-plugin OK / WARNINGS / ERRORS, pluggy's unknown-hook validation, each style's
declarations, ``--json``, and the exit status CI relies on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

MODULES = {
    # a misspelt hook (pluggy's check_pending refuses it) and a style declaring TRAIN it does not implement
    "se_broken": '''
        import styleengine
        from styleengine import Capability, Style

        class Boast(Style):
            name = "boast"
            description = "declares what it lacks"
            capabilities = frozenset({Capability.INFER, Capability.TRAIN})
            def infer(self, sessions, batch, cfg):
                return []

        @styleengine.hookimpl
        def register_style(register):
            pass

        @styleengine.hookimpl
        def register_styles(register):
            register(Boast)
    ''',
    # works, but the style has no description and the infer hook replaces instead of wrapping
    "se_warn": '''
        import styleengine
        from styleengine import Capability, Style

        class Quiet(Style):
            capabilities = frozenset({Capability.INFER})
            name = "quiet"
            needs_weights = False
            def infer(self, sessions, batch, cfg):
                return []

        @styleengine.hookimpl
        def register_styles(register):
            register(Quiet)

        @styleengine.hookimpl
        def style_infer(style, sessions, batch, cfg):
            return None
    ''',
    "se_fine": '''
        import styleengine
        from styleengine import Capability, Style

        class Fine(Style):
            capabilities = frozenset({Capability.INFER})
            name = "fine"
            description = "all good"
            needs_weights = False
            def infer(self, sessions, batch, cfg):
                return []

        @styleengine.hookimpl
        def register_styles(register):
            register(Fine)
    ''',
}


def write_modules(root: Path) -> None:
    for name, src in MODULES.items():
        (root / f"{name}.py").write_text(textwrap.dedent(src))


def test_reports_per_plugin(plugin_root: Path) -> None:
    from styleengine.checks import check_engine
    from styleengine.plugins import load_engine

    write_modules(plugin_root)
    engine = load_engine(entry_points=False, extra_plugins=list(MODULES))
    reports = {r.name: r for r in check_engine(engine)}
    assert reports["styleengine"].status == "ok"
    assert reports["se_fine"].status == "ok" and reports["se_fine"].styles == ("fine",)
    broken = reports["se_broken"]
    assert broken.status == "errors"
    assert any("unknown hook 'register_style'" in e and "did you mean 'register_styles'" in e for e in broken.errors)
    assert any("style boast: declares Capability.TRAIN but does not implement train" in e for e in broken.errors)
    warn = reports["se_warn"]
    assert warn.status == "warnings" and not warn.errors
    assert any("style quiet: no description" in w for w in warn.warnings)
    assert any("style_infer without wrapper=True" in w for w in warn.warnings)


def test_cli_json_and_exit_status(plugin_root: Path, tmp_path: Path) -> None:
    write_modules(plugin_root)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_root), os.environ.get("PYTHONPATH", "")]), "STYLEENGINE_PLUGINS": ""}

    def run(*mods: str, json_out: bool = True) -> subprocess.CompletedProcess[str]:
        args = [a for m in mods for a in ("-p", m)]
        return subprocess.run([sys.executable, "-m", "styleengine", *args, "plugins", "--check", *(["--json"] if json_out else [])],
                              capture_output=True, text=True, env={**env, "STYLEENGINE_PLUGINS": ",".join(mods)}, cwd=tmp_path, timeout=120)

    ok = run("se_fine", "se_warn")
    assert ok.returncode == 0, ok.stderr  # warnings do not fail CI
    data = json.loads(ok.stdout)
    assert data["ok"] is True
    assert {p["name"]: p["status"] for p in data["plugins"]} == {"styleengine": "ok", "se_fine": "ok", "se_warn": "warnings"}
    bad = run("se_fine", "se_broken", json_out=False)
    assert bad.returncode == 1
    assert "se_broken: se_broken (style boast) — ERRORS" in bad.stdout
    assert "error: implements unknown hook 'register_style'" in bad.stdout
    assert "3 plugins: 2 ok, 0 with warnings, 1 with errors" in bad.stdout

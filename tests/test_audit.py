"""The CI vulnerability gate (.ci/audit.py) on pip-audit reports made here: unwaived findings and expired
waivers fail, dated waivers pass, and an unreachable service is reported (failing only when required)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / ".ci" / "audit.py"


@pytest.fixture
def audit(monkeypatch, tmp_path):
    spec = importlib.util.spec_from_file_location("ci_audit", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(mod, "WAIVERS", tmp_path / "waivers.json")

    def run(report, waivers=(), required=False):
        (tmp_path / "waivers.json").write_text(json.dumps(list(waivers)))
        monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 1, json.dumps(report), ""))
        monkeypatch.setenv("STYLEENGINE_AUDIT_REQUIRED", "1" if required else "")
        return mod.main()

    return run


VULN = {"dependencies": [{"name": "Pillow", "version": "9.0.0", "vulns": [{"id": "PYSEC-1", "aliases": ["CVE-2", "GHSA-3"], "fix_versions": ["9.0.1"]}]},
                         {"name": "numpy", "version": "2.0.0", "vulns": []}]}


def test_findings_waivers_and_expiry(audit, capsys):
    assert audit({"dependencies": [{"name": "numpy", "version": "2.0.0", "vulns": []}]}) == 0
    assert audit(VULN) == 1 and "VULNERABLE Pillow 9.0.0: PYSEC-1" in capsys.readouterr().out
    assert audit(VULN, [{"id": "CVE-2", "package": "pillow", "until": "2999-01-01", "reason": "no fix for our use yet"}]) == 0
    assert audit(VULN, [{"id": "CVE-2", "package": "pillow", "until": "2000-01-01", "reason": "old"}]) == 1
    assert "EXPIRED WAIVER" in capsys.readouterr().out


def test_unreachable_service(audit, capsys):
    skipped = {"dependencies": [{"name": "numpy", "version": "2.0.0", "skip_reason": "Dependency not found on PyPI"}]}
    assert audit(skipped) == 0 and "NOT RUN" in capsys.readouterr().err
    assert audit(skipped, required=True) == 1

#!/usr/bin/env python
"""pip-audit over the installed set (.venv), with dated waivers (.ci/audit-waivers.json).

    .venv/bin/python .ci/audit.py            # what .ci/run does after `make test`

Fails (exit 1) on a known vulnerability without a waiver, and on a waiver past its date (renew it with a
reason, or upgrade).  A waiver: {"id": "GHSA-...|PYSEC-...|CVE-...", "package": "name", "until": "YYYY-MM-DD",
"reason": "why it cannot be fixed yet"}.

pip-audit asks a vulnerability service (PyPI's JSON API by default, or OSV) about every package.  Where that
service cannot be reached (a CI network that only reaches a package mirror), nothing could be audited: the
script says so loudly and exits 0, or 1 when STYLEENGINE_AUDIT_REQUIRED=1 (set it where the service is
reachable, so a silent skip cannot happen there).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
WAIVERS = HERE / "audit-waivers.json"


def main() -> int:
    waivers = json.loads(WAIVERS.read_text()) if WAIVERS.is_file() else []
    today = dt.date.today()
    expired = [w for w in waivers if dt.date.fromisoformat(w["until"]) < today]
    cmd = [sys.executable, "-m", "pip_audit", "--format", "json", "--progress-spinner", "off", "--skip-editable"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    try:
        report = json.loads(r.stdout)
    except ValueError:
        return unreachable(f"pip-audit gave no report (exit {r.returncode}): {' '.join(r.stderr.split())[-400:]}")
    deps = report.get("dependencies", report if isinstance(report, list) else [])
    audited = [d for d in deps if "skip_reason" not in d]
    if deps and not audited:
        return unreachable(f"none of {len(deps)} packages could be audited ({deps[0].get('skip_reason', '')})")
    waived = {(w["package"].lower(), w["id"]) for w in waivers if w not in expired}
    found, open_ = [], []
    for d in audited:
        for v in d.get("vulns", []):
            ids = {v["id"], *v.get("aliases", [])}
            entry = f"{d['name']} {d['version']}: {v['id']} (fix: {', '.join(v.get('fix_versions', [])) or 'none yet'})"
            found.append(entry)
            if not any((d["name"].lower(), i) in waived for i in ids):
                open_.append(entry)
    print(f"pip-audit: {len(audited)} of {len(deps)} packages audited, {len(found)} known vulnerabilities, {len(open_)} not waived")
    for e in open_:
        print(f"  VULNERABLE {e}")
    for w in expired:
        print(f"  EXPIRED WAIVER {w['package']} {w['id']} (until {w['until']}): {w.get('reason', '')}")
    return 1 if open_ or expired else 0


def unreachable(why: str) -> int:
    required = os.environ.get("STYLEENGINE_AUDIT_REQUIRED", "") not in ("", "0", "false")
    print(f"pip-audit: NOT RUN: the vulnerability service is unreachable here: {why}", file=sys.stderr)
    return 1 if required else 0


if __name__ == "__main__":
    sys.exit(main())

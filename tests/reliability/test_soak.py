"""The one-minute soak (benchmarks/reliability/soak.py): a real server under 4 users for 60 s, 10 % of the
requests invalid.  Bars: no error on a valid request, no 5xx or unanswered request, every invalid request a
4xx, server RSS growth under 10 % after warm-up.  The 10-minute record lives in benchmarks/results/."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
SOAK = Path(__file__).parents[2] / "benchmarks" / "reliability" / "soak.py"


def test_one_minute_soak(tmp_path, bento_home):
    import os

    env = {**os.environ, "BENTOML_HOME": str(bento_home)}
    r = subprocess.run([sys.executable, str(SOAK), "--duration", "60", "--window", "20", "--out", str(tmp_path)], env=env,
                       capture_output=True, text=True, timeout=400)
    summary = json.loads((tmp_path / "soak.json").read_text())
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert summary["valid"] > 50 and summary["invalid"] > 0
    assert summary["errors_on_valid"] == 0 and summary["answers_5xx_or_none"] == 0
    assert summary["invalid_answered_4xx"] == summary["invalid"]
    assert summary["rss_growth"] is not None and summary["rss_growth"] < 0.10

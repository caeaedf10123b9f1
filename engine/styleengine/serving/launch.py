"""``python -m styleengine.serving.launch ARGS...``: ``bentoml serve ARGS...`` with per-server state.

``engine serve`` runs BentoML through this module instead of ``python -m bentoml`` for one reason BentoML
offers no option for: every ``bentoml serve`` sharing a ``BENTOML_HOME`` uses one Prometheus multiprocess
folder and **wipes it at start**, so starting a second server on a machine empties the first one's
``/metrics``.  Here each server gets its own folder (a temporary directory, removed at exit), set through
BentoML's own configuration container before its CLI runs.  Everything else is BentoML's CLI unchanged.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    metrics_dir = tempfile.mkdtemp(prefix="styleengine-prometheus-")
    from . import lifecycle

    lifecycle.cleanup.append(lambda: shutil.rmtree(metrics_dir, ignore_errors=True))
    try:
        from bentoml._internal.configuration.containers import BentoMLContainer

        BentoMLContainer.prometheus_multiproc_dir.set(metrics_dir)
        from bentoml_cli.cli import cli

        try:
            cli.main(args=["serve", *(argv if argv is not None else sys.argv[1:])], prog_name="bentoml", standalone_mode=True)
        except SystemExit as exc:
            return int(exc.code or 0) if not isinstance(exc.code, str) else 1
        return 0
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


if __name__ == "__main__":  # pragma: no cover - a process entry point
    sys.exit(main())

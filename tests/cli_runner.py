"""The real ``flowker`` command line in a subprocess, for the CLI tests (imported by name:
``tests/`` is on sys.path through its conftest)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_flowker(*args, cwd: Path = REPO, **settings: str) -> subprocess.CompletedProcess:
    """``python -m flowker ARGS`` in ``cwd`` (bounded by a timeout), with none of this
    process's ``FLOWKER_*`` variables, only ``settings``; this checkout is importable."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("FLOWKER_")}
    environment.update(settings)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), environment.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "flowker", *map(str, args)],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )

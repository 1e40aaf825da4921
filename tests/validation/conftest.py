"""Fixtures for the spec tests: the real plugin registry and the spec folders."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def registry():
    """The registry the CLI uses: built-in types loaded through the plugin manager."""
    from flowker.plugins import load_registry

    return load_registry(None)


@pytest.fixture
def run_flowker():
    """Run the real ``flowker`` command line in a subprocess (bounded by a timeout)."""

    def run(*args, cwd=REPO):
        environment = {key: value for key, value in os.environ.items() if not key.startswith("FLOWKER_")}
        return subprocess.run(
            [sys.executable, "-m", "flowker", *map(str, args)],
            cwd=cwd,
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
        )

    return run

"""Fixtures for the spec tests: the real plugin registry and the spec folders."""

from __future__ import annotations

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
    from cli_runner import run_flowker

    return run_flowker

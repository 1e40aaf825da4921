"""Fixtures of the schedule tests: the plugin registry and an execution service on the
test's database."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def registry():
    from flowker.plugins import load_registry
    from flowker.settings import Settings

    return load_registry(Settings())


@pytest.fixture
def service(database, database_url, registry):
    from flowker.runner.service import ExecutionService
    from flowker.settings import Settings

    service = ExecutionService(Settings.from_mapping({"database_url": database_url}), registry, database=database)
    yield service
    service.close()

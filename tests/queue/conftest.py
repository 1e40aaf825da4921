"""Fixtures for the queue tests: an execution service on the test's database (both
backends), a stub executor on 127.0.0.1, and ``flowker worker`` processes, each
stopped at teardown."""

from __future__ import annotations

import pytest

from flowker.local_server import LocalHTTPServer
from queue_helpers import QueueStub, WorkerProcess


@pytest.fixture(scope="session")
def registry():
    from flowker.plugins import load_registry
    from flowker.settings import Settings

    return load_registry(Settings())


@pytest.fixture
def service(database, database_url, registry):
    """The service a test enqueues with (and, in-process tests, claims and runs with)."""
    from flowker.runner.service import ExecutionService
    from flowker.settings import Settings

    service = ExecutionService(Settings.from_mapping({"database_url": database_url}), registry, database=database)
    yield service
    service.close()


@pytest.fixture
def stub():
    handler = QueueStub()
    with LocalHTTPServer(handler) as server:
        server.stub = handler
        yield server


@pytest.fixture
def start_worker(database_url):
    """``start_worker(*args, env=...)``: a started ``flowker worker`` on the test's
    database; every one started is stopped at teardown (killed if still running)."""
    started: list[WorkerProcess] = []

    def start(*args: str, env: dict | None = None) -> WorkerProcess:
        worker = WorkerProcess(database_url, *args, env=env)
        started.append(worker)
        return worker.start()

    try:
        yield start
    finally:
        for worker in started:
            worker.stop()

"""Fixtures for the multi-server tests: several ``flowker serve`` processes on one
PostgreSQL schema (``postgres_schema_url`` from tests/conftest.py) and a stub executor."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from flowker.local_server import LocalHTTPServer
from scale_helpers import ServerProcess, StubService


@pytest.fixture
def stub():
    service = StubService()
    with LocalHTTPServer(service) as server:
        server.service = service
        try:
            yield server
        finally:
            service.release()  # held /slow calls end before the server stops


@pytest.fixture
def cluster(postgres_schema_url):
    """``cluster.start(n)``: n started servers on one fresh schema (started together, as a
    rolling deploy would); ``cluster.url`` is that schema; every server is stopped at teardown."""

    class Cluster:
        url = postgres_schema_url

        def __init__(self):
            self.servers: list[ServerProcess] = []

        def start(self, count: int = 1, **options) -> list[ServerProcess]:
            servers = [ServerProcess(self.url, **options) for _ in range(count)]
            self.servers.extend(servers)
            with ThreadPoolExecutor(max_workers=count) as pool:
                return list(pool.map(lambda server: server.start(), servers))

    created = Cluster()
    try:
        yield created
    finally:
        for server in created.servers:
            server.stop()

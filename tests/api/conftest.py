"""Fixtures for the REST API tests: an app on a migrated database (both backends where
storage matters), TestClients with and without the key, and a local HTTP stub that
executors call on 127.0.0.1 (loopback is allowed in development mode)."""

from __future__ import annotations

import threading

import falcon.testing
import pytest

from flowker.local_server import LocalHTTPServer

from api_helpers import API_KEY, create_executor, create_workflow, make_settings
from app_factory import AppFactory


@pytest.fixture(scope="session")
def registry():
    from flowker.plugins import load_registry

    return load_registry()


class ApiAppFactory(AppFactory):
    """``make_app(settings={...overrides}, **create_app options)``."""

    def __call__(self, **options):
        return self.build(self.settings(**options.pop("settings", {})), **options)


@pytest.fixture
def make_app(database, database_url, registry):
    factory = ApiAppFactory(database, database_url, registry, make_settings)
    yield factory
    factory.close()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return falcon.testing.TestClient(app, headers={"X-API-Key": API_KEY})


@pytest.fixture
def anonymous(app):
    return falcon.testing.TestClient(app)


@pytest.fixture
def stub():
    """A local service answering JSON; ``stub.gate`` (an Event) can hold requests back."""
    gate = threading.Event()
    gate.set()

    def handler(request):
        gate.wait(timeout=10)
        if request.path.startswith("/unauthorized"):
            return 401, {}, {"error": "no"}
        if request.path.startswith("/protected") and request.header("Authorization") != "Bearer stub-token-1234567":
            return 401, {}, {"error": "bad token"}
        return 200, {}, {"score": 42, "path": request.path}

    server = LocalHTTPServer(handler)
    server.gate = gate
    with server:
        yield server


@pytest.fixture
def active_workflow(client, stub):
    """(workflow id, executor id) of an active payments workflow calling the stub."""
    executor_id = create_executor(client, stub.url)
    return create_workflow(client, activate=True), executor_id


@pytest.fixture
def sqlite_factory(tmp_path, registry):
    """Apps on a SQLite file only: for behaviour that does not depend on the backend."""
    from flowker.storage.database import bind_database
    from flowker.storage.migrations import upgrade

    database = bind_database(f"sqlite:///{tmp_path}/api.db")
    upgrade(database)
    factory = ApiAppFactory(database, f"sqlite:///{tmp_path}/api.db", registry, make_settings)
    yield factory
    factory.close()
    if not database.is_closed():
        database.close()

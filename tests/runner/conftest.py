"""Fixtures for the runner tests: settings with fast retries, a bound database, an
execution service, helpers that store workflows and executors, and local HTTP servers."""

from __future__ import annotations

import socket
import threading

import pytest

from flowker.local_server import LocalHTTPServer
from flowker.settings import Settings

from runner_helpers import TOKEN_VARIABLE, BEARER_TOKEN, Recorder, make_settings


@pytest.fixture(scope="session")
def registry():
    from flowker.plugins import load_registry

    return load_registry(Settings())


@pytest.fixture
def sqlite_database(tmp_path):
    """SQLite only: for tests whose subject is not the storage backend."""
    from flowker.storage.database import bind_database
    from flowker.storage.migrations import upgrade

    url = f"sqlite:///{tmp_path}/runner.db"
    db = bind_database(url)
    upgrade(db)
    db.connect(reuse_if_open=True)
    db.flowker_test_url = url
    try:
        yield db
    finally:
        if not db.is_closed():
            db.close()


def _url_of(db) -> str:
    return getattr(db, "flowker_test_url", None)


@pytest.fixture
def settings(sqlite_database):
    return make_settings(_url_of(sqlite_database))


@pytest.fixture
def service_factory(registry):
    """Builds ExecutionServices (closed at the end); pass settings to change them."""
    from flowker.runner.service import ExecutionService

    services = []

    def build(settings, **kwargs):
        service = ExecutionService(settings, registry, **kwargs)
        services.append(service)
        return service

    yield build
    for service in services:
        service.close()


@pytest.fixture
def service(service_factory, settings):
    return service_factory(settings)


@pytest.fixture
def token_env(monkeypatch):
    monkeypatch.setenv(TOKEN_VARIABLE, BEARER_TOKEN)
    return BEARER_TOKEN


@pytest.fixture
def http_server():
    recorder = Recorder()
    server = LocalHTTPServer(recorder)
    server.recorder = recorder
    with server:
        yield server


class ResetServer:
    """Accepts connections and resets them at once (RST): a peer that dies mid-request."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _loop(self):
        import struct

        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            try:
                conn.recv(65536)  # read the request, then reset instead of answering
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            finally:
                conn.close()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def reset_server():
    with ResetServer() as server:
        yield server

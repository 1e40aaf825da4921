"""Fixtures for the end-to-end tests: a stub executor service, ``flowker serve`` processes."""

from __future__ import annotations

import threading
import time

import pytest

from e2e_helpers import API_KEY, FlowkerServer, flowker_env
from flowker.local_server import LocalHTTPServer


class ScorerStub:
    """What the test executor calls: ``/score`` answers at once, ``/slow`` after ``slow_seconds``."""

    def __init__(self):
        self.slow_seconds = 3.0
        self.slow_started = threading.Event()

    def __call__(self, request):
        body = request.json() if request.body else {}
        if request.path == "/slow":
            self.slow_started.set()
            time.sleep(self.slow_seconds)
        if request.path not in ("/score", "/slow"):
            return 404, {}, {"error": "no such endpoint"}
        amount = body.get("amount", 0) if isinstance(body, dict) else 0
        return 200, {}, {"score": int(amount) % 100}


@pytest.fixture
def scorer():
    stub = ScorerStub()
    with LocalHTTPServer(stub) as server:
        server.stub = stub
        yield server


@pytest.fixture
def start_server(database_url):
    """``start_server(*args, env_extra..., workers=, drain_seconds=)``: a started ``flowker serve``
    on this test's database; every one started is stopped at teardown."""
    started: list[FlowkerServer] = []

    def start(*args: str, api_keys: str | None = f"e2e:{API_KEY}", **options) -> FlowkerServer:
        extra = {"FLOWKER_API_KEYS": api_keys} if api_keys else {}
        extra.update(options.pop("env", {}))
        server = FlowkerServer(flowker_env(database_url, **extra), *args, **options)
        started.append(server)
        return server.start()

    try:
        yield start
    finally:
        for server in started:
            server.stop()

"""Fixtures for the hardening tests: apps on real databases, a real OpenID provider and a
real password-grant provider (the npm packages the auth tests use, started here with
this suite's own canary secrets), and a log capture at DEBUG.

The Node launchers and the throwaway TLS CA are reused from ``tests/auth/conftest.py``,
loaded by path under another module name (its fixtures are not registered twice).
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path

import falcon.testing
import pytest

from app_factory import AppFactory
from hardening_helpers import API_KEY, make_settings

_AUTH_CONFTEST = Path(__file__).resolve().parents[1] / "auth" / "conftest.py"


def _auth_fixtures_module():
    name = "flowker_hardening_auth_launchers"
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, _AUTH_CONFTEST)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def auth_launchers():
    """``tests/auth/conftest.py`` as a module: NodeProvider, _make_tls_files, SERVERS_DIR."""
    return _auth_fixtures_module()


@pytest.fixture(scope="session")
def hardening_tls(auth_launchers, tmp_path_factory):
    return auth_launchers._make_tls_files(tmp_path_factory.mktemp("hardening-tls"))


@pytest.fixture(scope="session")
def hardening_registry():
    from flowker.plugins import load_registry

    return load_registry()


class HardeningAppFactory(AppFactory):
    """``make_app(settings=None, queue_concurrency=0, **overrides)`` and ``client(app=None, key=..., **overrides)``."""

    def __call__(self, settings=None, queue_concurrency: int = 0, **overrides):
        return self.build(settings or self.settings(**overrides), queue_concurrency=queue_concurrency)

    def client(self, app=None, key: str | None = API_KEY, **overrides):
        app = app or self(**overrides)
        headers = {"X-API-Key": key} if key else {}
        return falcon.testing.TestClient(app, headers=headers)


@pytest.fixture
def make_app(database, database_url, hardening_registry):
    """Apps on the ``database`` fixture's backend (SQLite file and PostgreSQL)."""
    factory = HardeningAppFactory(database, database_url, hardening_registry, make_settings)
    yield factory
    factory.close()


@pytest.fixture
def sqlite_apps(tmp_path, hardening_registry):
    """Apps on a SQLite file only: for behaviour that does not depend on the backend."""
    from flowker.storage.database import bind_database
    from flowker.storage.migrations import upgrade

    url = f"sqlite:///{tmp_path}/hardening.db"
    database = bind_database(url)
    upgrade(database)
    factory = HardeningAppFactory(database, url, hardening_registry, make_settings)
    yield factory
    factory.close()
    if not database.is_closed():
        database.close()


class LogCapture(logging.Handler):
    """Every record of every logger, formatted as a handler would write it (with tracebacks)."""

    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        self.lines: list[str] = []
        self.records = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.records += 1
        text = self.format(record)
        if record.stack_info:
            text += "\n" + record.stack_info
        self.lines.append(text)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


LIBRARY_LOGGERS = ("urllib3", "requests", "requests_oauthlib", "oauthlib", "flowker", "falcon", "peewee")


class JsonLogCapture(LogCapture):
    """The same records, as ``FLOWKER_LOG_FORMAT=json`` writes them (the named fields too)."""

    def __init__(self):
        from flowker.observability.logs import JsonFormatter

        super().__init__()
        self.setFormatter(JsonFormatter())


@pytest.fixture
def debug_json_logs(debug_logs):
    """Every record of the test at DEBUG, as JSON lines (on top of :func:`debug_logs`)."""
    capture = JsonLogCapture()
    root = logging.getLogger()
    root.addHandler(capture)
    try:
        yield capture
    finally:
        root.removeHandler(capture)


@pytest.fixture
def debug_logs():
    """The root logger (and the HTTP/OAuth libraries' loggers) at DEBUG into a capture."""
    capture = LogCapture()
    root = logging.getLogger()
    saved = {name: logging.getLogger(name).level for name in LIBRARY_LOGGERS}
    saved_root = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        root.setLevel(saved_root)
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)

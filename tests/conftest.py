"""Shared fixtures: a real database on each backend.

``database_url`` runs a test on SQLite (a file in tmp_path) and on PostgreSQL (a
fresh schema in the database named by FLOWKER_TEST_POSTGRES_URL, dropped after the
test). Without that variable the PostgreSQL half is skipped and the run says so;
with it set but unreachable, the session stops with an error.
"""

from __future__ import annotations

import os
import uuid
from urllib.parse import quote

import pytest

POSTGRES_URL_VARIABLE = "FLOWKER_TEST_POSTGRES_URL"
POSTGRES_URL = os.environ.get(POSTGRES_URL_VARIABLE, "").strip()


def _postgres_admin_connection():
    import psycopg2

    from flowker.storage.database import open_database

    database = open_database(POSTGRES_URL)
    params = dict(database.connect_params)
    params.pop("options", None)
    return psycopg2.connect(dbname=database.database, **params)


def pytest_sessionstart(session):
    if not POSTGRES_URL:
        return
    try:
        _postgres_admin_connection().close()
    except Exception as exc:  # noqa: BLE001 - any failure to connect stops the run loudly
        pytest.exit(
            f"{POSTGRES_URL_VARIABLE} is set to {POSTGRES_URL} but PostgreSQL is unreachable: {exc}",
            returncode=3,
        )


def pytest_terminal_summary(terminalreporter):
    postgres_ran = sum(
        1
        for report in terminalreporter.stats.get("passed", []) + terminalreporter.stats.get("failed", [])
        if "postgres" in report.keywords and report.when == "call"
    )
    if POSTGRES_URL:
        terminalreporter.write_line(f"PostgreSQL tests ran against {POSTGRES_URL}: {postgres_ran}")
    else:
        terminalreporter.write_line(
            f"PostgreSQL tests did NOT run: set {POSTGRES_URL_VARIABLE} "
            "(e.g. postgresql://postgres@127.0.0.1:5432/test) to run them",
            yellow=True,
            bold=True,
        )


@pytest.fixture
def postgres_schema_url():
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    if not POSTGRES_URL:
        pytest.skip(f"PostgreSQL tests did not run: {POSTGRES_URL_VARIABLE} is not set")
    schema = "flowker_test_" + uuid.uuid4().hex[:12]
    admin = _postgres_admin_connection()
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{separator}options={quote('-csearch_path=' + schema)}"
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request, tmp_path):
    """A migrated-nothing database URL, on each backend in turn."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/flowker.db"
    return request.getfixturevalue("postgres_schema_url")


@pytest.fixture
def database(database_url):
    """The models' proxy bound to a migrated database, connected for the test."""
    from flowker.storage.database import bind_database, close_database
    from flowker.storage.migrations import upgrade

    db = bind_database(database_url)
    upgrade(db)
    db.connect(reuse_if_open=True)
    try:
        yield db
    finally:
        close_database(db)

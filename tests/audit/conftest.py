"""Fixtures of the audit tests: signing keys, and fresh databases on demand (the stateful
test needs a new one per example) on the backend the ``database_url`` parameter selects."""

from __future__ import annotations

import os
import uuid
from urllib.parse import quote

import pytest

from audit_helpers import close, migrated


@pytest.fixture(scope="session")
def signing_key():
    from flowker.audit.checkpoints import generate_signing_key

    return generate_signing_key()


@pytest.fixture(scope="session")
def attacker_key():
    from flowker.audit.checkpoints import generate_signing_key

    return generate_signing_key()


@pytest.fixture
def key_files(tmp_path, signing_key):
    """(private key path, public key path) of ``signing_key``."""
    from flowker.audit.checkpoints import private_key_pem, public_key_pem

    private, public = tmp_path / "audit-signing.pem", tmp_path / "audit-public.pem"
    private.write_text(private_key_pem(signing_key))
    public.write_text(public_key_pem(signing_key))
    return str(private), str(public)


def _admin_connection():
    import psycopg2

    from flowker.storage.database import open_database

    database = open_database(os.environ["FLOWKER_TEST_POSTGRES_URL"].strip())
    params = dict(database.connect_params)
    params.pop("options", None)
    connection = psycopg2.connect(dbname=database.database, **params)
    connection.autocommit = True
    return connection


@pytest.fixture
def fresh_url(database_url, tmp_path):
    """A factory of new, empty, migrated databases on the same backend as ``database_url``."""
    schemas: list[str] = []
    admin = None if database_url.startswith("sqlite") else _admin_connection()

    def make() -> str:
        if admin is None:
            url = f"sqlite:///{tmp_path}/chain-{uuid.uuid4().hex[:8]}.db"
        else:
            schema = "flowker_audit_" + uuid.uuid4().hex[:12]
            with admin.cursor() as cursor:
                cursor.execute(f"CREATE SCHEMA {schema}")
            schemas.append(schema)
            root = os.environ["FLOWKER_TEST_POSTGRES_URL"].strip()
            separator = "&" if "?" in root else "?"
            url = f"{root}{separator}options={quote('-csearch_path=' + schema)}"
        close(migrated(url))
        return url

    try:
        yield make
    finally:
        if admin is not None:
            try:
                with admin.cursor() as cursor:
                    for schema in schemas:
                        cursor.execute(f"DROP SCHEMA {schema} CASCADE")
            finally:
                admin.close()


@pytest.fixture
def chain_db(database_url):
    """A migrated database for ``database_url``, not bound to the models' proxy."""
    database = migrated(database_url)
    try:
        yield database
    finally:
        close(database)


@pytest.fixture
def witness_service(tmp_path):
    """A real ``flowker witness serve`` process on 127.0.0.1 (a free port): (url, its dir)."""
    import re
    import select
    import subprocess
    import sys

    directory = tmp_path / "witness"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("FLOWKER_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "flowker", "witness", "serve", "--dir", str(directory), "--bind", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )
    try:
        ready, _, _ = select.select([process.stdout], [], [], 30)
        line = process.stdout.readline() if ready else ""
        found = re.search(r"http://127\.0\.0\.1:\d+", line)
        if not found:
            details = process.stderr.read() if process.poll() is not None else ""
            raise RuntimeError(f"the witness did not start: {line!r} {details}")
        yield found.group(0), directory
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        process.stdout.close()
        process.stderr.close()


@pytest.fixture(params=["file", "http"])
def witness_url(request, tmp_path):
    """A witness of each kind: a file:// directory, and a real witness service."""
    if request.param == "file":
        return f"file://{tmp_path}/witness-volume"
    return request.getfixturevalue("witness_service")[0]

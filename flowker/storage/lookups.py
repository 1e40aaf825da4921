"""The small reads the runner makes on every start and every executor step.

Raw SQL on purpose: these run per execution and per step, and building them with peewee
cost more than running them. Only the columns the runner needs, never a spec.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from flowker.storage.models import Executor, Workflow
from flowker.storage.statements import model_database


@dataclass(frozen=True)
class WorkflowHead:
    """The columns of a Workflow row that starting an execution needs (not its spec)."""

    id: str
    name: str
    status: str
    version: int


def workflow_head(workflow_id: str) -> WorkflowHead | None:
    database = model_database(Workflow)
    p = database.param
    row = database.execute_sql(
        f'SELECT "id", "name", "status", "version" FROM "{Workflow._meta.table_name}" WHERE "id" = {p}', (workflow_id,)
    ).fetchone()
    return WorkflowHead(*row) if row else None


def executor_heads(reference: str) -> list[tuple]:
    """(id, name, version, status) of the executors named ``reference`` or with that id (at most two)."""
    database = model_database(Executor)
    p = database.param
    return database.execute_sql(
        f'SELECT "id", "name", "version", "status" FROM "{Executor._meta.table_name}" '
        f'WHERE "name" = {p} OR "id" = {p} LIMIT 2',
        (reference, reference),
    ).fetchall()


@dataclass(frozen=True)
class StoredApiKey:
    """The columns of an ApiKeyRecord row that checking a presented key needs."""

    id: str
    name: str
    key_hash: str
    role: str
    workflows: list | None
    expires_at: datetime.datetime | None  # naive UTC
    revoked_at: datetime.datetime | None
    expiry_recorded_at: datetime.datetime | None


_API_KEY_COLUMNS = ("id", "name", "key_hash", "role", "workflows", "expires_at", "revoked_at", "expiry_recorded_at")


def api_key_by_lookup_id(database, lookup_id: str) -> StoredApiKey | None:
    """The stored key whose lookup id this is (read on every request that presents one)."""
    from flowker.storage.models import ApiKeyRecord

    p = database.param
    columns = ", ".join(f'"{name}"' for name in _API_KEY_COLUMNS)
    row = database.execute_sql(
        f'SELECT {columns} FROM "{ApiKeyRecord._meta.table_name}" WHERE "lookup_id" = {p}', (lookup_id,)
    ).fetchone()
    if row is None:
        return None
    fields = ApiKeyRecord._meta.fields
    return StoredApiKey(*(fields[name].python_value(value) for name, value in zip(_API_KEY_COLUMNS, row)))

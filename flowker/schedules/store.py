"""The schedule_tick table: claiming a tick (once across every process), the latest
tick of each workflow, and pruning. Raw SQL: ``INSERT ... ON CONFLICT DO NOTHING`` is
one statement on both backends (SQLite 3.24+, PostgreSQL) and raises nothing when
another scheduler claimed the tick first (on PostgreSQL it waits for that one's commit).
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, Iterable

import peewee

from flowker.storage.models import ScheduleTick, Workflow, utcnow
from flowker.storage.statements import model_database

QUEUED, REFUSED = "queued", "refused"


def claim_tick(workflow_id: str, tick: _dt.datetime) -> bool:
    """Insert the (workflow, tick) row in the caller's transaction; False when it exists
    (another scheduler fired that tick). ``tick``: naive UTC."""
    database = model_database(ScheduleTick)
    table = ScheduleTick._meta.table_name
    p = database.param
    cursor = database.execute_sql(
        f'INSERT INTO "{table}" ("workflow_id", "tick", "execution_id", "outcome", "recorded_at") '
        f"VALUES ({p}, {p}, NULL, {p}, {p}) ON CONFLICT DO NOTHING",
        (workflow_id, tick, QUEUED, utcnow()),
    )
    return cursor.rowcount == 1


def settle_tick(workflow_id: str, tick: _dt.datetime, execution_id: str | None, outcome: str) -> None:
    ScheduleTick.update(execution_id=execution_id, outcome=outcome).where(
        (ScheduleTick.workflow_id == workflow_id) & (ScheduleTick.tick == tick)
    ).execute()


def active_workflows() -> list[tuple[str, int, _dt.datetime]]:
    """(id, version, active since) of every active workflow. An active workflow is never
    edited (only drafts are), so its ``updated_at`` is when it was activated."""
    database = model_database(Workflow)
    p = database.param
    return database.execute_sql(
        f'SELECT "id", "version", "updated_at" FROM "{Workflow._meta.table_name}" WHERE "status" = {p}', ("active",)
    ).fetchall()


def workflow_spec(workflow_id: str, version: int) -> dict | None:
    row = (
        Workflow.select(Workflow.spec)
        .where((Workflow.id == workflow_id) & (Workflow.version == version))
        .tuples()
        .first()
    )
    return row[0] if row else None


def latest_ticks(workflow_ids: list[str]) -> dict[str, _dt.datetime]:
    """The latest claimed tick (naive UTC) of each workflow that has one."""
    if not workflow_ids:
        return {}
    query: Any = (
        ScheduleTick.select(ScheduleTick.workflow_id, peewee.fn.MAX(ScheduleTick.tick))
        .where(ScheduleTick.workflow_id.in_(workflow_ids))
        .group_by(ScheduleTick.workflow_id)
        .tuples()
    )
    rows: Iterable[tuple[str, Any]] = query  # .tuples(): (workflow id, MAX(tick))
    return {workflow_id: as_datetime(latest) for workflow_id, latest in rows}


def as_datetime(value) -> _dt.datetime:
    """A naive UTC datetime read by raw SQL or MAX() (SQLite answers text)."""
    if isinstance(value, _dt.datetime):
        return value
    return ScheduleTick.tick.python_value(value)


def prune_ticks(older_than: _dt.datetime) -> int:
    """Delete ticks before ``older_than`` (naive UTC), keeping each workflow's latest: it is
    where the next pass starts, the rest only record history."""
    database = model_database(ScheduleTick)
    table = ScheduleTick._meta.table_name
    p = database.param
    cursor = database.execute_sql(
        f'DELETE FROM "{table}" WHERE "tick" < {p} AND "tick" < '
        f'(SELECT MAX(t."tick") FROM "{table}" t WHERE t."workflow_id" = "{table}"."workflow_id")',
        (older_than,),
    )
    return cursor.rowcount

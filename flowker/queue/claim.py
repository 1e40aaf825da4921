"""Claiming queued executions: ``queued`` -> ``running`` for one worker, exactly once.

A claim is one write transaction that picks the oldest queued rows, moves them to
``running`` with the claimer's owner, lease and ``started_at``, and appends their
EXECUTION_STARTED entries: a row is claimed with its audit entry or not at all.

- PostgreSQL: ``SELECT ... FOR UPDATE SKIP LOCKED``: claimers never wait for each
  other's rows, so workers on every host claim side by side.
- SQLite: the write transaction (``BEGIN IMMEDIATE``) is the database's one writer.

A workflow's ``concurrency: N`` is checked inside the claiming transaction by counting
its running executions. On PostgreSQL two claimers could both count N-1 and both take
the Nth slot, so the count is made under a per-workflow transaction advisory lock,
taken with ``pg_try_advisory_xact_lock``: a claimer that finds it held skips that
workflow this time (no claimer ever waits on one, so none can deadlock) and reports
the contention, and its worker tries again shortly. A workflow at its limit is skipped
without holding back the others.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from flowker.errors import FlowkerError
from flowker.runner.records import audit_batch, audit_item, prepare_audit
from flowker.storage.database import bound_to, connection, is_postgres, write_transaction
from flowker.storage.models import Execution, utcnow
from flowker.storage.statements import model_database

logger = logging.getLogger(__name__)

# The first key of the two-key PostgreSQL advisory locks on a workflow's running count
# ("Flow"); the second is hashtext(workflow id). Two-key locks never meet one-key ones.
CONCURRENCY_LOCK_CLASS = 0x466C6F77
# Rows looked at per claim beyond the ones wanted (some may belong to workflows at their limit).
CANDIDATE_SLACK = 16
MAX_CANDIDATES = 256


@dataclass
class ClaimResult:
    """What one claim took, and whether a workflow was skipped only because another
    claimer held its concurrency lock (its worker should look again soon)."""

    executions: list[Execution] = field(default_factory=list)
    contended: bool = False


def claim(service, limit: int = 1, *, now: dt.datetime | None = None) -> ClaimResult:
    """Claim up to ``limit`` queued executions for ``service`` (its owner, lease, plans,
    database and audit log); run each with ``service.run_claimed``."""
    if limit < 1:
        return ClaimResult()
    with bound_to(service.database), connection():
        database = model_database(Execution)
        with write_transaction():
            return _claim_in_transaction(service, database, limit, now or utcnow())


def _claim_in_transaction(service, database, limit: int, now: dt.datetime) -> ClaimResult:
    postgres = is_postgres(database)
    candidates = _candidates(postgres, min(limit + CANDIDATE_SLACK, MAX_CANDIDATES))
    result = ClaimResult()
    free_slots: dict[str, int | None] = {}  # workflow id -> slots left (None: no limit)
    chosen: list[Execution] = []
    for execution in candidates:
        if len(chosen) >= limit:
            break
        workflow_id = execution.workflow_id
        if workflow_id not in free_slots:
            free_slots[workflow_id] = _free_slots(service, database, postgres, execution, result)
        slots = free_slots[workflow_id]
        if slots is None:
            chosen.append(execution)
        elif slots > 0:
            free_slots[workflow_id] = slots - 1
            chosen.append(execution)
    if not chosen:
        return result
    lease_until = now + dt.timedelta(seconds=service.lease_seconds)
    ids = [execution.id for execution in chosen]
    updated = (
        Execution.update(status="running", owner=service.owner, lease_expires_at=lease_until, started_at=now)
        .where(Execution.id.in_(ids) & (Execution.status == "queued"))
        .execute()
    )
    if updated != len(ids):
        # Only SQLite without SKIP LOCKED could see this, and its write lock excludes it.
        raise FlowkerError(f"claimed {updated} of {len(ids)} queued executions: another claimer took some")
    entries = []
    for execution in chosen:
        execution.status, execution.owner = "running", service.owner
        execution.lease_expires_at, execution.started_at = lease_until, now
        waited_ms = round((now - execution.queued_at).total_seconds() * 1000.0, 3) if execution.queued_at else None
        entries.append(
            audit_item(
                "EXECUTION_STARTED",
                "SUCCESS",
                execution.id,
                context={"workflowId": execution.workflow_id, "workflowVersion": execution.workflow_version},
                metadata={
                    "totalSteps": execution.total_steps,
                    "owner": service.owner,
                    "queuedMs": waited_ms,
                    **({"retryOf": execution.retry_of} if execution.retry_of else {}),
                },
            )
        )
    audit_batch(prepare_audit(entries), service.audit_log)
    result.executions = chosen
    return result


def _candidates(postgres: bool, count: int) -> list[Execution]:
    query = (
        Execution.select().where(Execution.status == "queued").order_by(Execution.queued_at, Execution.id).limit(count)
    )
    if postgres:
        query = query.for_update("FOR UPDATE SKIP LOCKED")  # type: ignore[arg-type]  # peewee takes the clause text too
    return list(query)


def _free_slots(service, database, postgres: bool, execution: Execution, result: ClaimResult) -> int | None:
    """How many more executions of this one's workflow may start now (None: no limit)."""
    try:
        limit = service.plan(execution.workflow_id, execution.workflow_version).concurrency
    except FlowkerError:
        return None  # a version that cannot compile: the run fails at once, like any other
    if limit is None:
        return None
    if postgres:
        locked = database.execute_sql(
            "SELECT pg_try_advisory_xact_lock(%s, hashtext(%s))", (CONCURRENCY_LOCK_CLASS, execution.workflow_id)
        ).fetchone()[0]
        if not locked:
            result.contended = True
            return 0
    running = (
        Execution.select()
        .where((Execution.workflow_id == execution.workflow_id) & (Execution.status == "running"))
        .count()
    )
    return max(0, limit - running)


def queue_depth(database=None) -> tuple[int, float | None]:
    """(queued executions, age in seconds of the oldest one or None) on ``database``
    (default: the bound one)."""
    from peewee import fn

    with bound_to(database), connection():
        row = (
            Execution.select(fn.COUNT(Execution.id), fn.MIN(Execution.queued_at))
            .where(Execution.status == "queued")
            .tuples()
            .first()
        )
    count, oldest = row if row else (0, None)
    if oldest is not None and isinstance(oldest, str):  # SQLite aggregates come back as text
        oldest = dt.datetime.fromisoformat(oldest)
    age = (utcnow() - oldest).total_seconds() if oldest is not None else None
    return int(count or 0), (max(0.0, age) if age is not None else None)

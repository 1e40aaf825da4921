"""Claiming queued executions: ``queued`` -> ``running`` for one worker, exactly once.

A claim is one write transaction that picks the oldest queued rows, moves them to
``running`` with the claimer's owner, lease and ``started_at``, and appends their
EXECUTION_STARTED entries: a row is claimed with its audit entry or not at all. A row
with ``resumes > 0`` (requeued after its owner died, by the resume machinery) keeps its
``started_at`` and is audited EXECUTION_RESUMED, naming the row's ``owner`` as queued.

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

from peewee import Case

from flowker.errors import FlowkerError
from flowker.runner.records import audit_batch, audit_item, prepare_audit
from flowker.storage.database import bound_to, connection, is_postgres, write_transaction
from flowker.storage.models import Execution, utcnow
from flowker.storage.statements import model_database

logger = logging.getLogger(__name__)

# The first key of the two-key PostgreSQL advisory locks on a workflow's running count
# ("Flow"); the second is hashtext(workflow id). Two-key locks never meet one-key ones.
CONCURRENCY_LOCK_CLASS = 0x466C6F77
# Rounds of one claim: each looks at as many rows as are still wanted, skipping the
# workflows found at their limit in the rounds before.
MAX_ROUNDS = 8


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
        if not is_postgres(database) and not _anything_queued():
            return ClaimResult()  # SQLite: an idle look takes no write lock
        with write_transaction():
            return _claim_in_transaction(service, database, limit, now)


def _anything_queued() -> bool:
    return Execution.select(Execution.id).where(Execution.status == "queued").limit(1).exists()


def _claim_in_transaction(service, database, limit: int, now: dt.datetime | None) -> ClaimResult:
    postgres = is_postgres(database)
    result = ClaimResult()
    free_slots: dict[str, int | None] = {}  # workflow id -> slots left (None: no limit)
    chosen: list[Execution] = []
    seen: set[str] = set()  # rows looked at (on PostgreSQL, locked by this transaction)
    held_back: set[str] = set()  # workflows at their limit, or whose lock another claimer holds
    # Rows are locked only as many at a time as are wanted: a claimer that locked more than
    # it takes would hide them from the other claimers (SKIP LOCKED) until it commits.
    for _ in range(MAX_ROUNDS):
        wanted = limit - len(chosen)
        if wanted <= 0:
            break
        candidates = _candidates(postgres, wanted, seen, held_back)
        for execution in candidates:
            seen.add(execution.id)
            workflow_id = execution.workflow_id
            if workflow_id not in free_slots:
                free_slots[workflow_id] = _free_slots(service, database, postgres, execution, result)
            slots = free_slots[workflow_id]
            if slots is None:
                chosen.append(execution)
            elif slots > 0:
                free_slots[workflow_id] = slots - 1
                chosen.append(execution)
            else:
                held_back.add(workflow_id)
        if len(candidates) < wanted:
            break  # nothing more is queued (or free to lock)
    if not chosen:
        return result
    # Read now, after the rows: a run queued while this claim began is not started before it was queued.
    now = now or utcnow()
    lease_until = now + dt.timedelta(seconds=service.lease_seconds)
    ids = [execution.id for execution in chosen]
    updated = (
        Execution.update(
            status="running",
            owner=service.owner,
            lease_expires_at=lease_until,
            # A resumed run keeps the time it first started (its deadline counts its steps).
            started_at=Case(None, [(Execution.resumes > 0, Execution.started_at)], now),
        )
        .where(Execution.id.in_(ids) & (Execution.status == "queued"))
        .execute()
    )
    if updated != len(ids):
        # Only SQLite without SKIP LOCKED could see this, and its write lock excludes it.
        raise FlowkerError(f"claimed {updated} of {len(ids)} queued executions: another claimer took some")
    entries = [_claim_entry(execution, service.owner, now) for execution in chosen]
    for execution in chosen:
        execution.status, execution.owner, execution.lease_expires_at = "running", service.owner, lease_until
        if not execution.resumes:
            execution.started_at = now
    audit_batch(prepare_audit(entries), service.audit_log)
    result.executions = chosen
    return result


def _claim_entry(execution: Execution, owner: str, now: dt.datetime) -> dict:
    """EXECUTION_STARTED; a resumed run (requeued after its owner died, audited then as
    EXECUTION_RESUMED naming that owner) says how many times it was resumed."""
    waited_ms = round((now - execution.queued_at).total_seconds() * 1000.0, 3) if execution.queued_at else None
    metadata = {"totalSteps": execution.total_steps, "owner": owner, "queuedMs": waited_ms}
    if execution.retry_of:
        metadata["retryOf"] = execution.retry_of
    if execution.resumes:
        metadata["resumes"] = execution.resumes
    return audit_item(
        "EXECUTION_STARTED",
        "SUCCESS",
        execution.id,
        context={"workflowId": execution.workflow_id, "workflowVersion": execution.workflow_version},
        metadata=metadata,
    )


def _candidates(postgres: bool, count: int, seen: set[str], held_back: set[str]) -> list[Execution]:
    """The oldest queued rows not looked at yet, of workflows not held back; on PostgreSQL
    locked, skipping the rows other claimers hold."""
    condition = Execution.status == "queued"
    if seen:
        condition &= Execution.id.not_in(list(seen))
    if held_back:
        condition &= Execution.workflow_id.not_in(list(held_back))
    query = Execution.select().where(condition).order_by(Execution.queued_at, Execution.id).limit(count)
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

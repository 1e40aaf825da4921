"""Leases: no execution stays ``running`` forever after its process died.

An execution carries its owner and ``lease_expires_at``. The owning process extends the
lease with every step it records and, for long steps (a slow call, retry waits), from a
heartbeat thread. :func:`recover_interrupted` settles executions whose lease expired; an
execution another live process is running keeps a fresh lease and is never touched. It
runs at start-up (``serve`` and ``run``) and, in every server worker, from a
:class:`LeaseSweeper` thread: the runs of a process that died are settled by the ones
still alive, without waiting for it to restart.

Settled means resumed (DESIGN 16): the run goes back to ``queued`` (owner and lease
cleared, ``resumes`` + 1) with an EXECUTION_RESUMED entry naming the dead owner, in one
transaction, and a worker claims it like any queued run and continues from its last
recorded step (flowker.runner.resume). A workflow with ``onInterrupt: fail`` keeps the
old rule: the run is failed with EXECUTION_INTERRUPTED. So is a run already resumed
:data:`RESUME_LIMIT` times: a step that kills every process running it (memory, a
crashing plugin) must not take the workers down one after another.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import dataclass, field
from typing import Callable

from flowker.runner.queue_notice import notify_queue_workers
from flowker.runner.records import audit_append
from flowker.storage.database import bound_to, connection, write_transaction
from flowker.storage.models import Execution, WorkflowVersion, utcnow
from flowker.storage.statements import model_database

logger = logging.getLogger(__name__)

INTERRUPTED_MESSAGE = "interrupted: the process running this execution stopped before it finished"
RECOVERY_BATCH = 500
# A run whose process died after it had been resumed this many times is failed instead.
RESUME_LIMIT = 3


@dataclass
class Recovered:
    """What one recovery settled: runs put back in the queue, and runs failed."""

    resumed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        return self.resumed + self.failed

    def __len__(self) -> int:
        return len(self.resumed) + len(self.failed)

    def describe(self) -> str:
        """e.g. "2 resumed (queued again), 1 failed (onInterrupt: fail)"."""
        parts = []
        if self.resumed:
            parts.append(f"{len(self.resumed)} resumed (queued again)")
        if self.failed:
            parts.append(f"{len(self.failed)} failed as interrupted")
        return ", ".join(parts) or "none"


def _expired(now: dt.datetime):
    return (Execution.status == "running") & (Execution.lease_expires_at.is_null() | (Execution.lease_expires_at < now))


def recover_interrupted(now: dt.datetime | None = None, *, audit_log=None, database=None) -> Recovered:
    """Resume (or, by the workflow's ``onInterrupt``, fail) every running execution whose
    lease expired. ``database`` (default: the bound one) and ``audit_log`` are the runtime's."""
    recovered = Recovered()
    seen: set[str] = set()
    policies: dict[tuple[str, int], str] = {}
    now = now or utcnow()
    with bound_to(database), connection():
        while True:
            candidates = list(
                Execution.select(
                    Execution.id,
                    Execution.workflow_id,
                    Execution.workflow_version,
                    Execution.owner,
                    Execution.current_step,
                    Execution.total_steps,
                    Execution.resumes,
                )
                .where(_expired(now))
                .order_by(Execution.started_at)
                .limit(RECOVERY_BATCH)
            )
            batch = [c for c in candidates if c.id not in seen]
            if not batch:
                return recovered
            for execution in batch:
                seen.add(execution.id)
                key = (execution.workflow_id, execution.workflow_version)
                if key not in policies:
                    policies[key] = _on_interrupt(*key)
                resumes = execution.resumes or 0
                if policies[key] == "resume" and resumes < RESUME_LIMIT:
                    if _requeue(execution, now, audit_log):
                        recovered.resumed.append(execution.id)
                else:
                    reason = (
                        "lease expired; onInterrupt: fail"
                        if policies[key] == "fail"
                        else f"lease expired after {resumes} resumes (the limit)"
                    )
                    if _fail(execution, now, reason, audit_log):
                        recovered.failed.append(execution.id)
            if len(candidates) < RECOVERY_BATCH:
                return recovered


def _on_interrupt(workflow_id: str, version: int) -> str:
    """The version's ``onInterrupt`` (read from its stored spec: no plugin is needed)."""
    snapshot = (
        WorkflowVersion.select(WorkflowVersion.spec)
        .where((WorkflowVersion.workflow_id == workflow_id) & (WorkflowVersion.version == version))
        .first()
    )
    spec = snapshot.spec if snapshot is not None and isinstance(snapshot.spec, dict) else {}
    return "fail" if spec.get("onInterrupt") == "fail" else "resume"


def _requeue(execution: Execution, now: dt.datetime, audit_log) -> bool:
    with write_transaction():
        # Compare-and-set: a heartbeat that renewed the lease meanwhile wins.
        updated = (
            Execution.update(
                status="queued",
                owner=None,
                lease_expires_at=None,
                queued_at=now,
                resumes=Execution.resumes + 1,
            )
            .where((Execution.id == execution.id) & _expired(now))
            .execute()
        )
        if not updated:
            return False
        audit_append(
            "EXECUTION_RESUMED",
            "SUCCESS",
            execution.id,
            context={"workflowId": execution.workflow_id, "workflowVersion": execution.workflow_version},
            metadata={
                "previousOwner": execution.owner,
                "currentStep": execution.current_step,
                "totalSteps": execution.total_steps,
                "resumes": (execution.resumes or 0) + 1,
                "reason": "lease expired",
            },
            audit_log=audit_log,
        )
        notify_queue_workers(model_database(Execution))  # delivered at commit, as an enqueue's
    return True


def _fail(execution: Execution, now: dt.datetime, reason: str, audit_log) -> bool:
    with write_transaction():
        updated = (
            Execution.update(
                status="failed",
                error_message=INTERRUPTED_MESSAGE,
                completed_at=now,
                lease_expires_at=None,
            )
            .where((Execution.id == execution.id) & _expired(now))
            .execute()
        )
        if not updated:
            return False
        audit_append(
            "EXECUTION_INTERRUPTED",
            "FAILED",
            execution.id,
            context={"workflowId": execution.workflow_id},
            metadata={
                "previousOwner": execution.owner,
                "currentStep": execution.current_step,
                "totalSteps": execution.total_steps,
                "reason": reason,
            },
            audit_log=audit_log,
        )
    return True


class PeriodicTask:
    """Calls ``work`` every ``interval`` seconds in a daemon thread, from :meth:`start`
    (again after a call is harmless) until :meth:`stop`; a failing call is logged and
    tried again at the next interval."""

    def __init__(self, name: str, interval: float, work: Callable[[], object]):
        self.name = name
        self.interval = interval
        self.work = work
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with self._lock:
            if self._thread is None and not self._wake.is_set():
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()

    def stop(self) -> None:
        with self._lock:
            self._wake.set()
            thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._wake.wait(self.interval):
            try:
                self.work()
            except Exception:  # noqa: BLE001 - e.g. the database is briefly down: next interval
                logger.warning("%s failed; retrying in %.1f s", self.name, self.interval, exc_info=True)


class LeaseHeartbeat:
    """Extends the leases of this process's running executions every ``interval`` seconds.

    A daemon thread started on first use and stopped by :meth:`stop`. It opens its own
    database connection for each beat.
    """

    def __init__(self, owner: str, lease_seconds: float, interval: float | None = None, *, database=None):
        self.owner = owner
        self.database = database  # the runtime's (None: the process's bound one)
        self.lease_seconds = lease_seconds
        self.interval = interval if interval is not None else max(lease_seconds / 3.0, 0.05)
        self._active: dict[str, int] = {}
        self._lock = threading.Lock()
        self._task = PeriodicTask("flowker-lease-heartbeat", self.interval, self.beat)

    def track(self, execution_id: str) -> None:
        with self._lock:
            self._active[execution_id] = self._active.get(execution_id, 0) + 1
        self._task.start()

    def untrack(self, execution_id: str) -> None:
        with self._lock:
            count = self._active.get(execution_id, 0) - 1
            if count > 0:
                self._active[execution_id] = count
            else:
                self._active.pop(execution_id, None)

    def beat(self) -> int:
        """Renew the leases now; returns how many rows were renewed."""
        with self._lock:
            ids = list(self._active)
        if not ids:
            return 0
        with bound_to(self.database), connection():
            return (
                Execution.update(lease_expires_at=utcnow() + dt.timedelta(seconds=self.lease_seconds))
                .where(Execution.id.in_(ids) & (Execution.status == "running") & (Execution.owner == self.owner))
                .execute()
            )

    def stop(self) -> None:
        self._task.stop()


class LeaseSweeper:
    """Runs :func:`recover_interrupted` every ``interval`` seconds in a daemon thread.

    Every worker of every server sweeps; two sweeps racing for one execution are settled
    by the compare-and-set in :func:`recover_interrupted` (one update, one audit entry).
    """

    def __init__(self, interval: float, *, audit_log=None, database=None):
        self.interval = max(float(interval), 0.05)
        self.audit_log, self.database = audit_log, database  # the runtime's
        self.recovered = 0  # executions this sweeper resumed or failed (tests and metrics)
        self._task = PeriodicTask("flowker-lease-sweeper", self.interval, self.sweep)

    def start(self) -> None:
        self._task.start()

    def stop(self) -> None:
        self._task.stop()

    def sweep(self) -> Recovered:
        recovered = recover_interrupted(audit_log=self.audit_log, database=self.database)
        if recovered:
            self.recovered += len(recovered)
            logger.warning(
                "settled %d execution(s) whose process stopped (lease expired): %s: %s",
                len(recovered),
                recovered.describe(),
                ", ".join(recovered.ids[:10]),
            )
        return recovered

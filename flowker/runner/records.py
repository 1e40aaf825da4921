"""Execution and step rows, and the audit entries that commit with them.

Each step's StepResult row, the execution's progress (current step, lease) and the
step's audit entries (STEP_*, and PROVIDER_CALL_STARTED plus PROVIDER_CALL_COMPLETED or
_FAILED for every attempt of an executor call) are written in one transaction: a step is
recorded with its audit trail or not at all. Steps are grouped into one commit: the
pending ones are committed before the next executor call goes out, with the execution's
end, or once the oldest has waited 0.25 s. A commit (and the write lock it holds) is the
expensive part of a step, so a trigger, a call and the actions after it usually share
the execution's last commit. An executor call's record is therefore committed before any
other call is made and at most 0.25 s (plus one step) after its call ended: a process
that dies in that window loses the record of that one call as it would for a call in
flight, and the resumed run sends that call again with the same Idempotency-Key (DESIGN
16; a workflow with ``onInterrupt: fail`` is failed instead). An executor call still going after
:data:`PROGRESS_AFTER_SECONDS` has the steps before it committed from a timer thread, so
a slow run's progress can be read (GET /v1/executions/{id}/steps); a fast one pays no
extra commit. Secrets never reach a row:
stored inputs, outputs and messages pass through the process :class:`Redactor`.

Every write names this process as the owner: once the lease was lost (the run was put
back in the queue and another worker may hold it), a flush raises :class:`LeaseLost` and
writes nothing, and the end is not written either.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from typing import Any, Callable

from flowker.runner.engine import COMPLETED, FAILED, SKIPPED, RunOutcome, StepRecord
from flowker.runner.graph import NodePlan
from flowker.runner.progress_timers import ArmedCallback, ProgressTimers
from flowker.storage.database import bound_to, connection, write_transaction
from flowker.storage.models import Execution, StepResult, utcnow
from flowker.storage.statements import CompiledInsert, CompiledUpdate, model_database

logger = logging.getLogger(__name__)

RESOURCE_TYPE = "execution"
MAX_ERROR_MESSAGE = 4000

# Pending steps are committed before the next executor call, at the end, or once the
# oldest has waited this long.
FLUSH_INTERVAL_SECONDS = 0.25
# An executor call still going after this long (plus up to one tick of the shared timer
# thread, flowker.runner.progress_timers) has the steps before it committed, so a run's progress can be read while a slow call holds it (GET
# /v1/executions/{id}/steps); a fast call adds no commit.
PROGRESS_AFTER_SECONDS = 1.0

STEP_EVENTS = {COMPLETED: "STEP_COMPLETED", FAILED: "STEP_FAILED", SKIPPED: "STEP_SKIPPED"}

# The rows every execution writes, as statements compiled once (see flowker.storage.statements).
STEP_COLUMNS = (
    "execution",
    "step_number",
    "node_id",
    "node_name",
    "node_type",
    "status",
    "input_data",
    "output",
    "error_message",
    "attempts",
    "duration_ms",
    "call_details",
    "started_at",
    "completed_at",
)
INSERT_STEPS = CompiledInsert(StepResult, STEP_COLUMNS)
RENEW_PROGRESS = CompiledUpdate(Execution, ("current_step", "lease_expires_at"), '"id" = {p} AND "owner" = {p}')
FINISH_EXECUTION = CompiledUpdate(
    Execution,
    ("status", "final_output", "error_message", "completed_at", "lease_expires_at", "trace_id", "current_step"),
    '"id" = {p} AND "status" = \'running\' AND "owner" = {p}',
)
FINISH_EXECUTION_KEEP_STEP = CompiledUpdate(
    Execution,
    ("status", "final_output", "error_message", "completed_at", "lease_expires_at", "trace_id"),
    '"id" = {p} AND "status" = \'running\' AND "owner" = {p}',
)


class LeaseLost(Exception):
    """This process no longer holds the execution's lease: nothing of the run is written."""


def audit_append(
    event_type: str,
    result: str,
    resource_id: str,
    *,
    actor=None,
    context: dict | None = None,
    metadata: dict | None = None,
    action: str = "EXECUTE",
    audit_log=None,
) -> None:
    """One audit entry inside the caller's transaction, appended with ``audit_log`` (the
    runtime's; without it, a plain log of the bound database)."""
    from flowker.audit import chain

    chain.append(
        **audit_item(event_type, result, resource_id, actor=actor, context=context, metadata=metadata, action=action),
        audit_log=audit_log,
    )


def audit_item(
    event_type: str,
    result: str,
    resource_id: str,
    *,
    actor=None,
    context: dict | None = None,
    metadata: dict | None = None,
    action: str = "EXECUTE",
) -> dict:
    """The arguments of one execution audit entry, for ``chain.append``/``chain.append_many``."""
    from flowker.audit import chain

    return {
        "event_type": event_type,
        "action": action,
        "result": result,
        "resource_type": RESOURCE_TYPE,
        "resource_id": resource_id,
        "actor": actor if actor is not None else chain.SYSTEM_ACTOR,
        "context": context or {},
        "metadata": metadata or {},
    }


def audit_batch(items: list, audit_log=None) -> None:
    """Several entries (items of :func:`audit_item` or from :func:`prepare_audit`), in
    order, inside the caller's transaction: one lock, one INSERT. ``audit_log`` as for
    :func:`audit_append`."""
    from flowker.audit import chain

    chain.append_many(items, audit_log=audit_log)


def prepare_audit(items: list[dict]) -> list:
    """``items`` validated, redacted and serialized for :func:`audit_batch`: done before a
    write transaction begins, this work does not hold the database's write lock."""
    from flowker.audit import chain

    return chain.prepare_many(items)


class ExecutionRecorder:
    """The engine's step sink for one execution: writes rows, audit entries, progress.

    ``observer`` (optional) sees each step start and end (``flowker run`` prints them).
    """

    def __init__(
        self,
        execution: Execution,
        *,
        owner: str,
        lease_seconds: float,
        redactor,
        observer=None,
        clock: Callable[[], dt.datetime] = utcnow,
        flush_interval: float = FLUSH_INTERVAL_SECONDS,
        audit_log=None,
        telemetry=None,
        timers: ProgressTimers | None = None,
    ):
        self.execution = execution
        # The service's shared timer thread for progress commits; None: no progress commits
        # (a recorder made on its own, in tests).
        self.timers = timers
        # Metrics and log lines of this run (flowker.runner.run_telemetry.RunTelemetry), if any.
        self.telemetry = telemetry
        self.audit_log = audit_log  # the runtime's AuditLog (None: a plain log of the bound database)
        self.owner = owner
        self.lease_seconds = lease_seconds
        self.redactor = redactor
        self.observer = observer
        self.clock = clock
        self.flush_interval = flush_interval
        self.context = {"workflowId": execution.workflow_id, "workflowVersion": execution.workflow_version}
        self._pending: list[StepRecord] = []
        self._pending_since = 0.0
        self._pending_call = False  # a pending record is an executor call's (it had side effects)
        self.progress_after = PROGRESS_AFTER_SECONDS
        # A slow call's progress commit runs on the timers' thread: the lock keeps it and
        # the engine's thread from touching the pending steps at once.
        self._lock = threading.RLock()
        self._progress_timer: ArmedCallback | None = None
        self._database = model_database(Execution)

    # -- StepSink ---------------------------------------------------------------------

    def step_started(self, node: NodePlan) -> None:
        # A finished call is on record before the next call goes out: at most one call's
        # record is ever pending, and only while steps without side effects run.
        if self._pending and (
            (self._pending_call and node.type == "executor")
            or time.monotonic() - self._pending_since >= self.flush_interval
        ):
            self.flush()
        if self._pending and node.type == "executor" and self.timers is not None:
            self._progress_timer = self.timers.arm(self.progress_after, self._progress_flush)
        if self.observer is not None:
            self.observer.step_started(node)

    def _cancel_progress_timer(self) -> None:
        if self._progress_timer is not None:
            self._progress_timer.cancel()
            self._progress_timer = None

    def _progress_flush(self) -> None:
        """The timer's commit of the steps before a slow call (the timers' thread, its own connection).
        A failure leaves them pending: the engine's next commit writes them or fails the run."""
        try:
            with bound_to(self._database), connection(self._database):
                self.flush()
        except LeaseLost:
            logger.warning("execution %s: lease lost while a call was in flight", self.execution.id)
        except Exception:  # noqa: BLE001 - the run's own commits report what is wrong
            logger.exception("execution %s: the progress commit failed", self.execution.id)

    def step_finished(self, record: StepRecord) -> None:
        with self._lock:
            self._cancel_progress_timer()
            self._step_finished(record)

    def _step_finished(self, record: StepRecord) -> None:
        if not self._pending:
            self._pending_since = time.monotonic()
        self._pending.append(record)
        if record.call is not None:
            self._pending_call = True
        if self.telemetry is not None:
            self.telemetry.step_settled(record)
        if time.monotonic() - self._pending_since >= self.flush_interval:
            self.flush()
        if self.observer is not None:
            self.observer.step_finished(record)

    def flush(self) -> None:
        """Commit the pending steps, each with its audit entries, and renew the lease."""
        with self._lock:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        database = model_database(Execution)
        rows, entries = self._prepared_pending([])
        with write_transaction():
            # The audit append comes last: on PostgreSQL it holds the chain's lock until commit.
            progress = (self._pending[-1].node.step_number, self.clock() + dt.timedelta(seconds=self.lease_seconds))
            if not RENEW_PROGRESS.execute(database, progress, (self.execution.id, self.owner)):
                raise LeaseLost(f"execution {self.execution.id} is no longer run by {self.owner}")
            INSERT_STEPS.execute(database, rows)
            audit_batch(entries, self.audit_log)
        self.execution.current_step, self.execution.lease_expires_at = progress
        self._forget_pending()

    def discard_pending(self) -> None:
        """Forget steps that could not be committed (the run ends as failed without them)."""
        with self._lock:
            self._cancel_progress_timer()
            self._forget_pending()

    def _forget_pending(self) -> None:
        self._pending.clear()
        self._pending_call = False

    def _prepared_pending(self, trailing: list[dict], scrubbed: dict[str, str] | None = None) -> tuple[list, list]:
        """The pending steps' rows and their audit entries in step order (``trailing`` ones
        after them), scrubbed and serialized before the write transaction begins, so the
        database's write lock is held only for the statements."""
        if scrubbed is None:
            scrubbed = {}  # one flush is one moment: each distinct string is scrubbed once
        rows = [self._step_row(record, scrubbed) for record in self._pending]
        items: list[dict] = []
        for record in self._pending:
            self._audit_step(record, items)
        items.extend(trailing)
        return rows, prepare_audit(items)

    # -- the end ----------------------------------------------------------------------

    def finish(self, outcome: RunOutcome) -> bool:
        """Commit the last steps with the execution's end and its EXECUTION_* entry.

        Answers False when the execution was already settled elsewhere (nothing written);
        else the recorder's Execution object holds what was written."""
        with self._lock:
            self._cancel_progress_timer()
            return self._finish(outcome)

    def _finish(self, outcome: RunOutcome) -> bool:
        now = self.clock()
        status = COMPLETED if outcome.status == COMPLETED else FAILED
        error = self._message(outcome.error_message) if status == FAILED else None
        scrubbed: dict[str, str] = {}
        final_output = self._clean(outcome.final_output, scrubbed) if status == COMPLETED else None
        duration_ms = _ms_between(self.execution.started_at, now)
        ended = audit_item(
            "EXECUTION_COMPLETED" if status == COMPLETED else "EXECUTION_FAILED",
            "SUCCESS" if status == COMPLETED else "FAILED",
            self.execution.id,
            context=self.context,
            metadata={
                "status": status,
                "steps": len(outcome.steps),
                "durationMs": duration_ms,
                **({"errorMessage": error, "failedNode": outcome.failed_node} if error else {}),
            },
        )
        rows, entries = self._prepared_pending([ended], scrubbed)
        database = model_database(Execution)
        trace_id = getattr(self.execution, "trace_id", None)  # set by a traced run (flowker.tracing)
        with write_transaction():
            if self._pending:
                updated = FINISH_EXECUTION.execute(
                    database,
                    (status, final_output, error, now, None, trace_id, self._pending[-1].node.step_number),
                    (self.execution.id, self.owner),
                )
            else:
                updated = FINISH_EXECUTION_KEEP_STEP.execute(
                    database, (status, final_output, error, now, None, trace_id), (self.execution.id, self.owner)
                )
            if not updated:
                return False  # settled or taken over elsewhere (after a lost lease): keep that record
            if rows:
                INSERT_STEPS.execute(database, rows)
            audit_batch(entries, self.audit_log)
        self.execution.status, self.execution.final_output, self.execution.error_message = status, final_output, error
        self.execution.completed_at, self.execution.lease_expires_at = now, None
        if self._pending:
            self.execution.current_step = self._pending[-1].node.step_number
        self._forget_pending()
        if self.telemetry is not None:
            self.telemetry.execution_ended(status, duration_ms)
        return True

    # -- helpers ----------------------------------------------------------------------

    def _step_row(self, record: StepRecord, scrubbed: dict[str, str] | None = None) -> tuple:
        """A StepResult row in :data:`STEP_COLUMNS` order."""
        node, call = record.node, record.call
        return (
            self.execution.id,
            node.step_number,
            node.id,
            node.name,
            node.type,
            record.status,
            self._clean_input(record.input, scrubbed),
            self._clean(record.output, scrubbed),
            self._message(record.error),
            record.attempts,
            int(round(record.duration_ms)),
            self._clean(call.details(), scrubbed) if call is not None else None,
            record.started_at,
            record.completed_at,
        )

    def _audit_step(self, record: StepRecord, items: list[dict]) -> None:
        node = record.node
        step_context = {**self.context, "nodeId": node.id, "nodeType": node.type, "stepNumber": node.step_number}
        if record.call is not None:
            self._audit_attempts(record, step_context, items)
        metadata: dict[str, Any] = {
            "status": record.status,
            "durationMs": round(record.duration_ms, 3),
            "attempts": record.attempts,
        }
        if record.error:
            metadata["errorMessage"] = self._message(record.error)
        if record.error_code:
            metadata["errorCode"] = record.error_code
        if record.reason:
            metadata["reason"] = record.reason
        items.append(
            audit_item(
                STEP_EVENTS[record.status],
                "FAILED" if record.status == FAILED else "SUCCESS",
                self.execution.id,
                context=step_context,
                metadata=metadata,
            )
        )

    def _audit_attempts(self, record: StepRecord, step_context: dict, items: list[dict]) -> None:
        call = record.call
        assert call is not None  # _audit_step calls this only for a step that made a call
        request = record.input or {}
        call_context = {
            **step_context,
            "executor": request.get("executor"),
            "endpoint": request.get("endpoint"),
            "method": call.method,
            "url": call.url,
        }
        for attempt in call.attempts:
            context = {**call_context, "attempt": attempt["attempt"]}
            items.append(
                audit_item(
                    "PROVIDER_CALL_STARTED",
                    "SUCCESS",
                    self.execution.id,
                    context=context,
                    metadata={"startedAt": attempt["startedAt"]},
                )
            )
            answered_ok = attempt.get("outcome") == "answered" and 200 <= attempt.get("statusCode", 0) < 300
            metadata = {key: attempt[key] for key in ("statusCode", "durationMs", "outcome") if key in attempt}
            if "error" in attempt:
                metadata["error"] = self._message(attempt["error"])
            items.append(
                audit_item(
                    "PROVIDER_CALL_COMPLETED" if answered_ok else "PROVIDER_CALL_FAILED",
                    "SUCCESS" if answered_ok else "FAILED",
                    self.execution.id,
                    context=context,
                    metadata=metadata,
                )
            )

    def _message(self, message: str | None) -> str | None:
        if not message:
            return message
        return self.redactor.scrub_text(message)[:MAX_ERROR_MESSAGE]

    def _clean(self, value: Any, scrubbed: dict[str, str] | None = None) -> Any:
        """Registered secret values and credential-looking text scrubbed from every string,
        keys included (a hostile executor may echo a credential back as a JSON key).

        ``scrubbed`` memoizes within one flush (the same keys and values recur across a
        step's input, output and call details); never across flushes. Across flushes the
        Redactor's own cache answers, and it is dropped whenever a secret is registered,
        so a secret registered later is scrubbed from every later row."""
        return _scrubbed_copy(value, self.redactor.scrub_text, {} if scrubbed is None else scrubbed)

    def _clean_input(self, value: Any, scrubbed: dict[str, str] | None = None) -> Any:
        if isinstance(value, dict) and isinstance(value.get("headers"), dict):
            value = {**value, "headers": self.redactor.redact_headers(value["headers"])}
        return self._clean(value, scrubbed)


def _scrubbed_copy(value: Any, scrub: Callable[[str], str], memo: dict[str, str]) -> Any:
    """A copy of JSON-like ``value`` with every string (keys included) passed through
    ``scrub``, each distinct one once (``memo``). Leaves are handled in the loops: this
    runs over every stored input, output and call details."""
    if isinstance(value, str):
        clean = memo.get(value)
        if clean is None:
            clean = memo[value] = scrub(value)
        return clean
    if isinstance(value, dict):
        result = {}
        for key, item in value.items():
            if isinstance(key, str):
                clean_key = memo.get(key)
                if clean_key is None:
                    clean_key = memo[key] = scrub(key)
                key = clean_key
            if isinstance(item, (str, dict, list)):
                item = _scrubbed_copy(item, scrub, memo)
            result[key] = item
        return result
    if isinstance(value, list):
        return [_scrubbed_copy(item, scrub, memo) if isinstance(item, (str, dict, list)) else item for item in value]
    return value


def _ms_between(start: dt.datetime | None, end: dt.datetime) -> float | None:
    if start is None:
        return None
    return round((end - start).total_seconds() * 1000.0, 3)

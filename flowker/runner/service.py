"""The execution service: what the REST API, webhooks and ``flowker run`` call.

::

    service = ExecutionService(settings, registry)          # opens no connection
    started = service.start(workflow_id, input_data, actor=actor, idempotency_key=key)
    execution = service.run(started.execution.id)            # synchronous, never raises for a failed run
    started = service.execute(workflow_id, input_data, actor=actor)   # start + run
    service.recover_interrupted()                            # at start-up
    queued = service.enqueue(workflow_id, input_data, actor=actor)   # a queued run (flowker.queue)
    execution = service.run_claimed(claimed_execution)       # a worker's claimed run

The service owns everything that lives per process: the compiled plans (LRU keyed by
(workflow id, version)), the circuit breakers (by executor id), the executor clients and
their sessions, the OIDC token cache, the redactor and the lease heartbeat.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from typing import Any

from flowker.errors import FlowkerError, NotFound
from flowker.expression_sandbox import ExpressionSandbox
from flowker.runner.breakers import BreakerBoard
from flowker.runner.engine import FAILED, Engine, RunOutcome
from flowker.runner.executors import ExecutorPool
from flowker.runner.admission import (
    MAX_IDEMPOTENCY_KEY,
    PLAN_CACHE_SIZE,
    PlanCache,
    StartResult,
    admit,
    created_once,
    request_hash,
)
from flowker.runner.graph import WorkflowPlan, compile_plan
from flowker.runner.queue_notice import QUEUE_CHANNEL, notify_queue_workers
from flowker.runner.progress_timers import ProgressTimers
from flowker.runner.records import (
    FLUSH_INTERVAL_SECONDS,
    ExecutionRecorder,
    LeaseLost,
    audit_batch,
    audit_item,
    prepare_audit,
)
from flowker.runner.resume import recorded_steps
from flowker.runner.run_telemetry import RunTelemetry
from flowker.runner.recovery import LeaseHeartbeat, LeaseSweeper, Recovered, recover_interrupted
from flowker.runner.wal_checkpoints import WalCheckpointer
from flowker.storage.database import bound_to, connection
from flowker.storage.lookups import WorkflowHead
from flowker.storage.models import Execution, WorkflowVersion, new_id, utcnow
from flowker.storage.statements import CompiledInsert, CompiledSelect, model_database, model_from_values
from flowker.tracing import NO_TRACING
from flowker.error_codes import ErrorCode

logger = logging.getLogger(__name__)

DEFAULT_LEASE_SECONDS = 60.0

# The statements every execution runs, compiled once (see flowker.storage.statements).
EXECUTION_COLUMNS = (
    "id",
    "workflow_id",
    "workflow_version",
    "status",
    "input_data",
    "idempotency_key",
    "request_hash",
    "current_step",
    "total_steps",
    "owner",
    "lease_expires_at",
    "started_at",
)
INSERT_EXECUTION = CompiledInsert(Execution, EXECUTION_COLUMNS)
QUEUED_COLUMNS = EXECUTION_COLUMNS + ("queued_at", "retry_of", "trace_parent")
INSERT_QUEUED_EXECUTION = CompiledInsert(Execution, QUEUED_COLUMNS)
TRACE_PARENT_LENGTH = 55
EXECUTION_BY_ID = CompiledSelect(Execution, '"id" = {p}')


__all__ = ["ExecutionService", "StartResult", "request_hash", "MAX_IDEMPOTENCY_KEY", "QUEUE_CHANNEL"]


class ExecutionService:
    def __init__(
        self,
        settings,
        registry,
        *,
        redactor=None,
        owner: str | None = None,
        lease_seconds: float | None = None,
        heartbeat_interval: float | None = None,
        plan_cache_size: int = PLAN_CACHE_SIZE,
        flush_interval: float = FLUSH_INTERVAL_SECONDS,
        database=None,
        audit_log=None,
        metrics=None,
        tracing=None,
    ):
        from flowker.auth.token_cache import TokenCache
        from flowker.observability.metrics import Metrics
        from flowker.security.redaction import Redactor

        from flowker.security.redaction import install_log_redaction

        self.settings = settings
        self.registry = registry
        # The runtime's database and audit log (flowker.runtime): every run, and this
        # service's threads, use them. None: the database bound to the caller's context,
        # appended to without checkpoints.
        self.database = database
        self.audit_log = audit_log
        # The runtime's metrics (flowker.observability.metrics); none recorded without.
        self.metrics = metrics if metrics is not None else Metrics.disabled()
        self.redactor = redactor if redactor is not None else Redactor()
        # Spans per execution, step and executor call (flowker.tracing); off by default.
        self.tracing = tracing if tracing is not None else NO_TRACING
        # Secrets resolved and tokens obtained for runs are scrubbed from every log record of
        # the process (urllib3 logs URLs with query-string keys, the log action the values
        # it is given, peewee the SQL parameters).
        self._uninstall_log_redaction = install_log_redaction(self.redactor)
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        # An explicit argument (tests) wins over FLOWKER_EXECUTION_LEASE_SECONDS.
        if lease_seconds is None:
            lease_seconds = getattr(settings, "execution_lease_seconds", DEFAULT_LEASE_SECONDS)
        self.lease_seconds = lease_seconds
        self.flush_interval = flush_interval  # how long finished steps may wait for a commit
        self.plans = PlanCache(plan_cache_size)
        self.breakers = BreakerBoard.from_settings(
            settings, on_state=self.metrics.breaker_state if self.metrics.enabled else None
        )
        self.token_cache = TokenCache()
        self.executors = ExecutorPool(
            settings, registry, self.redactor, self.breakers, token_cache=self.token_cache, tracing=self.tracing
        )
        self.heartbeat = LeaseHeartbeat(self.owner, lease_seconds, heartbeat_interval, database=database)
        # Started by server workers (start_sweeping): a dead peer's runs are queued again (or
        # failed) within about one and a half leases, without waiting for it to restart.
        self.sweeper = LeaseSweeper(lease_seconds / 2.0, audit_log=audit_log, database=database)
        # SQLite: the log is copied back by a thread of its own, not by a step's commit.
        self.wal_checkpoints = WalCheckpointer(database=database)
        self.progress_timers = ProgressTimers()  # slow calls' progress commits (no thread per call)
        # Expensive expressions run in evaluator processes, started on first use (after a fork).
        self.expression_sandbox = ExpressionSandbox()

    # -- starting ---------------------------------------------------------------------

    def start(
        self,
        workflow_id: str,
        input_data: Any,
        *,
        actor,
        idempotency_key: str | None = None,
        request_digest: str | None = None,
        checked_input: Any = None,
    ) -> StartResult:
        """Create a running execution (and its EXECUTION_STARTED entry), or find the keyed one.

        ``request_digest`` is what a repeated Idempotency-Key must match (default: the hash of
        ``input_data``); webhooks pass the hash of the body alone, without ``_webhook``.
        ``checked_input`` is what the trigger's inputSchema checks (default: ``input_data``;
        webhooks pass the body without ``_webhook``): a mismatch raises
        :class:`InputValidationError` (FLK-0511) before anything is written.
        """
        input_data = input_data if input_data is not None else {}
        with bound_to(self.database), connection():
            admitted = admit(self.plan, workflow_id, input_data, idempotency_key, request_digest, checked_input)
            if isinstance(admitted, StartResult):
                return admitted
            workflow, plan, digest = admitted
            execution_id = new_id()
            # Serialized before the transaction: the write lock is held for the statements only.
            started_entry = _creation_entry(
                "EXECUTION_STARTED", execution_id, workflow, plan, actor, digest, idempotency_key
            )

            def create() -> Execution:
                execution = self._create(execution_id, workflow, plan, input_data, digest, idempotency_key)
                audit_batch([started_entry], self.audit_log)
                return execution

            return created_once(workflow_id, idempotency_key, digest, create)

    def enqueue(
        self,
        workflow_id: str,
        input_data: Any,
        *,
        actor,
        idempotency_key: str | None = None,
        request_digest: str | None = None,
        checked_input: Any = None,
        retry_of: str | None = None,
        workflow_version: int | None = None,
        trace_parent: str | None = None,
        audit_metadata: dict | None = None,
    ) -> StartResult:
        """Create a ``queued`` execution (and its EXECUTION_QUEUED entry) for a worker to
        claim (flowker.queue), or find the keyed one; the same checks as :meth:`start`.

        ``workflow_version``: run that version (a retry runs the original's), active or not;
        default the workflow's current version, which must be active. ``trace_parent``: the
        W3C traceparent the run continues. ``audit_metadata`` joins the entry's metadata.
        A caller's enclosing write transaction makes this one a savepoint of it; on
        PostgreSQL a ``NOTIFY flowker_queue`` is sent at its commit.
        """
        input_data = input_data if input_data is not None else {}
        with bound_to(self.database), connection():
            admitted = admit(
                self.plan, workflow_id, input_data, idempotency_key, request_digest, checked_input, workflow_version
            )
            if isinstance(admitted, StartResult):
                return admitted
            workflow, plan, digest = admitted
            execution_id = new_id()
            queued_entry = _creation_entry(
                "EXECUTION_QUEUED",
                execution_id,
                workflow,
                plan,
                actor,
                digest,
                idempotency_key,
                {**({"retryOf": retry_of} if retry_of else {}), **(audit_metadata or {})},
            )
            database = model_database(Execution)

            def create() -> Execution:
                now = utcnow()
                values = (
                    execution_id,
                    workflow.id,
                    workflow.version,
                    "queued",
                    input_data,
                    idempotency_key,
                    digest,
                    0,
                    plan.total_steps,
                    None,
                    None,
                    now,  # NOT NULL: the claim sets the real start
                    now,
                    retry_of,
                    trace_parent if trace_parent and len(trace_parent) <= TRACE_PARENT_LENGTH else None,
                )
                INSERT_QUEUED_EXECUTION.execute(database, [values])
                audit_batch([queued_entry], self.audit_log)
                notify_queue_workers(database)  # delivered at commit
                return model_from_values(
                    Execution,
                    QUEUED_COLUMNS + ("final_output", "error_message", "completed_at", "resumes", "trace_id"),
                    values + (None, None, None, 0, None),
                )

            return created_once(workflow_id, idempotency_key, digest, create)

    def _create(
        self, execution_id: str, workflow: WorkflowHead, plan: WorkflowPlan, input_data, digest, idempotency_key
    ) -> Execution:
        now = utcnow()
        values = (
            execution_id,
            workflow.id,
            workflow.version,
            "running",
            input_data,
            idempotency_key,
            digest,
            0,
            plan.total_steps,
            self.owner,
            now + _seconds(self.lease_seconds),
            now,
        )
        INSERT_EXECUTION.execute(model_database(Execution), [values])
        return model_from_values(
            Execution,
            EXECUTION_COLUMNS + ("final_output", "error_message", "completed_at"),
            values + (None, None, None),
        )

    def plan(self, workflow_id: str, version: int) -> WorkflowPlan:
        """The compiled plan of a workflow version (compiled once, then cached)."""

        def compile_() -> WorkflowPlan:
            with bound_to(self.database):
                snapshot = WorkflowVersion.get_or_none(
                    (WorkflowVersion.workflow_id == workflow_id) & (WorkflowVersion.version == version)
                )
            if snapshot is None:
                raise FlowkerError(f"workflow {workflow_id} has no stored version {version}")
            return compile_plan(snapshot.spec, self.registry, workflow_id=workflow_id, version=version)

        return self.plans.get((workflow_id, version), compile_)

    # -- running ----------------------------------------------------------------------

    def run(self, execution_id: str, *, observer=None, trace_parent=None) -> Execution:
        """Run a started execution to its end; a failing workflow gives a failed execution.

        ``trace_parent``: the trace context the run continues (``tracing.extract`` of the
        request that started it); None: the current one, else a new trace."""
        with bound_to(self.database), connection():
            execution = EXECUTION_BY_ID.first(model_database(Execution), (execution_id,))
            if execution is None:
                raise NotFound(f"execution {execution_id} not found", code=ErrorCode.EXECUTION_NOT_FOUND)
            return self._run_loaded(execution, observer, trace_parent)

    def run_started(self, started: Execution, *, observer=None, trace_parent=None) -> Execution:
        """Run an execution this service's :meth:`start` just created (its row as returned),
        without reading it back first."""
        with bound_to(self.database), connection():
            return self._run_loaded(started, observer, trace_parent)

    def run_claimed(self, execution: Execution, *, observer=None) -> Execution:
        """Run a queued execution a worker just claimed for this service's owner
        (flowker.queue.claim: running, our lease, EXECUTION_STARTED written), continuing
        the trace of the request that queued it."""
        trace_parent = None
        if execution.trace_parent:
            carrier = {"traceparent": execution.trace_parent}
            trace_parent = self.tracing.extract(carrier.get)
        with bound_to(self.database), connection():
            return self._run_loaded(execution, observer, trace_parent)

    def _run_loaded(self, execution: Execution, observer, trace_parent=None) -> Execution:
        if execution.status != "running" or not self._claim(execution):
            return execution  # finished already, or another live process runs it
        self.heartbeat.track(execution.id)
        self.wal_checkpoints.poke()
        recorder = ExecutionRecorder(
            execution,
            owner=self.owner,
            lease_seconds=self.lease_seconds,
            redactor=self.redactor,
            observer=observer,
            flush_interval=self.flush_interval,
            audit_log=self.audit_log,
            telemetry=RunTelemetry(self.metrics, execution.id, self._workflow_name(execution)),
            timers=self.progress_timers,
        )
        try:
            with self.tracing.execution(execution.id, trace_parent) as span:
                try:
                    outcome = self._walk(execution, recorder, span)
                except LeaseLost:
                    # Put back in the queue while this process stalled: the worker that
                    # resumes it writes the rest (finish below writes nothing).
                    logger.warning("execution %s: lease lost to another worker; stopped", execution.id)
                    recorder.discard_pending()
                    outcome = RunOutcome(status=FAILED, error_message="lease lost")
                except Exception as exc:  # noqa: BLE001 - e.g. a step row failed to commit
                    logger.exception("execution %s stopped by an internal error", execution.id)
                    recorder.discard_pending()
                    outcome = RunOutcome(status=FAILED, error_message=f"internal error: {type(exc).__name__}")
                execution.trace_id = span.trace_id  # written with the end
                settled = recorder.finish(outcome)
                traced_outcome(span, outcome)
        finally:
            self.heartbeat.untrack(execution.id)
        if settled:
            return execution  # updated in memory as written
        return EXECUTION_BY_ID.first(model_database(Execution), (execution.id,))

    def _workflow_name(self, execution: Execution) -> str:
        """The name metrics and log lines show (the plan is cached; a missing one fails the
        run in _walk, with "unknown" here: labels never hold ids)."""
        try:
            return self.plan(execution.workflow_id, execution.workflow_version).name
        except FlowkerError:
            return "unknown"

    def _claim(self, execution: Execution) -> bool:
        """Take the lease: ours already, or expired (its process died)."""
        now = utcnow()
        if (
            execution.owner == self.owner
            and execution.lease_expires_at is not None
            and execution.lease_expires_at > now + _seconds(self.lease_seconds / 2)
        ):
            return True  # just started by this service: the lease is fresh, no write needed
        claimed = (
            Execution.update(owner=self.owner, lease_expires_at=now + _seconds(self.lease_seconds))
            .where(
                (Execution.id == execution.id)
                & (Execution.status == "running")
                & (
                    (Execution.owner == self.owner)
                    | Execution.owner.is_null()
                    | Execution.lease_expires_at.is_null()
                    | (Execution.lease_expires_at < now)
                )
            )
            .execute()
        )
        if claimed:
            execution.owner = self.owner
        return bool(claimed)

    def _walk(self, execution: Execution, recorder: ExecutionRecorder, span=None) -> RunOutcome:
        try:
            plan = self.plan(execution.workflow_id, execution.workflow_version)
        except FlowkerError as exc:
            return RunOutcome(status=FAILED, error_message=f"the workflow cannot run: {exc.message}")
        if span is not None:
            span.set("flowker.workflow.name", plan.name)
        seed = None
        if execution.current_step > 0 or _continues(execution):
            try:
                seed = recorded_steps(execution.id, plan)
            except FlowkerError as exc:
                return RunOutcome(status=FAILED, error_message=f"the execution cannot resume: {exc.message}")
        timeout = self.settings.execution_timeout_seconds
        if seed is None:
            elapsed = (utcnow() - execution.started_at).total_seconds()
        else:
            # A resumed or retried run's deadline counts the time its recorded steps ran,
            # not the time it spent dead or waiting in the queue (docs/running.md).
            elapsed = sum(step.duration_ms for step in seed.values()) / 1000.0
        engine = Engine(
            plan,
            execution_id=execution.id,
            input_data=execution.input_data,
            deadline=time.monotonic() + max(0.0, timeout - elapsed),
            timeout_seconds=timeout,
            resolve_executor=self.executors.resolve,
            sink=recorder,
            scrub_text=self.redactor.scrub_text,
            expression_cpu_seconds=self.settings.expression_cpu_seconds,
            max_output_bytes=self.settings.max_output_bytes,
            expression_sandbox=self.expression_sandbox,
            tracing=self.tracing,
            seed=seed,
        )
        return engine.run()

    def execute(
        self,
        workflow_id: str,
        input_data: Any,
        *,
        actor,
        idempotency_key: str | None = None,
        observer=None,
        trace_parent=None,
    ) -> StartResult:
        """Start and, when this call created the execution, run it to the end."""
        started = self.start(workflow_id, input_data, actor=actor, idempotency_key=idempotency_key)
        if not started.created:
            return started
        return StartResult(self.run_started(started.execution, observer=observer, trace_parent=trace_parent), True)

    # -- upkeep -----------------------------------------------------------------------

    def recover_interrupted(self) -> Recovered:
        """Resume (queue again) or, by the workflow's onInterrupt, fail executions whose
        lease expired (their process died); audit each."""
        recovered = recover_interrupted(audit_log=self.audit_log, database=self.database)
        if recovered:
            logger.warning("interrupted execution(s): %s", recovered.describe())
        return recovered

    def start_sweeping(self) -> None:
        """Settle, from now on and every half lease, runs whose process died (server workers)."""
        self.sweeper.start()

    def close(self) -> None:
        self.sweeper.stop()
        self.heartbeat.stop()
        self.wal_checkpoints.stop()
        self.progress_timers.stop()
        self.executors.close()
        self.expression_sandbox.close()
        self._uninstall_log_redaction()


def _continues(execution: Execution) -> bool:
    """A resumed run, or a retry: its deadline counts from its recorded steps."""
    return bool(execution.resumes) or execution.retry_of is not None


def _creation_entry(
    event_type: str, execution_id: str, workflow, plan, actor, digest: str, idempotency_key, extra=None
):
    """The prepared audit entry of an execution's creation (started at once, or queued)."""
    metadata = {
        "workflowName": workflow.name,
        "totalSteps": plan.total_steps,
        "idempotencyKey": bool(idempotency_key),
        "inputHash": digest,
        **(extra or {}),
    }
    context = {"workflowId": workflow.id, "workflowVersion": workflow.version}
    (entry,) = prepare_audit(
        [audit_item(event_type, "SUCCESS", execution_id, actor=actor, context=context, metadata=metadata)]
    )
    return entry


def traced_outcome(span, outcome: RunOutcome) -> None:
    """The run's end on its span: its status, and for a failure the failed step's error code."""
    span.set("flowker.execution.status", outcome.status)
    if outcome.status == FAILED:
        failed = next((step for step in outcome.steps if step.status == FAILED), None)
        span.failed((failed.error_code if failed is not None else None) or "execution_failed")


def _seconds(value: float):
    import datetime as dt

    return dt.timedelta(seconds=value)

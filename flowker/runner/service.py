"""The execution service: what the REST API, webhooks and ``flowker run`` call.

::

    service = ExecutionService(settings, registry)          # opens no connection
    started = service.start(workflow_id, input_data, actor=actor, idempotency_key=key)
    execution = service.run(started.execution.id)            # synchronous, never raises for a failed run
    started = service.execute(workflow_id, input_data, actor=actor)   # start + run
    service.recover_interrupted()                            # at start-up

The service owns everything that lives per process: the compiled plans (LRU keyed by
(workflow id, version)), the circuit breakers (by executor id), the executor clients and
their sessions, the OIDC token cache, the redactor and the lease heartbeat.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

import peewee
import rfc8785

from flowker.errors import BadRequest, FlowkerError, InputValidationError, NotFound, UnprocessableEntity
from flowker.expression_sandbox import ExpressionSandbox
from flowker.runner.breakers import BreakerBoard
from flowker.runner.engine import FAILED, Engine, RunOutcome
from flowker.runner.executors import ExecutorPool
from flowker.runner.graph import WorkflowPlan, compile_plan
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
from flowker.runner.recovery import LeaseHeartbeat, LeaseSweeper, recover_interrupted
from flowker.runner.wal_checkpoints import WalCheckpointer
from flowker.storage.database import bound_to, connection, write_transaction
from flowker.storage.lookups import WorkflowHead, workflow_head
from flowker.storage.models import Execution, WorkflowVersion, new_id, utcnow
from flowker.storage.statements import CompiledInsert, CompiledSelect, model_database, model_from_values
from flowker.tracing import NO_TRACING
from flowker.error_codes import ErrorCode

logger = logging.getLogger(__name__)

DEFAULT_LEASE_SECONDS = 60.0
PLAN_CACHE_SIZE = 256
MAX_IDEMPOTENCY_KEY = 255

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
EXECUTION_BY_ID = CompiledSelect(Execution, '"id" = {p}')


__all__ = ["ExecutionService", "StartResult", "request_hash"]


@dataclass(frozen=True)
class StartResult:
    execution: Execution
    created: bool


def request_hash(input_data: Any) -> str:
    """sha256 of the RFC 8785 canonical input: the same key must come with the same input.

    Inputs RFC 8785 cannot express (integers beyond 2**53, NaN) fall back to sorted
    compact JSON, which is just as deterministic for this comparison.
    """
    value = input_data if input_data is not None else {}
    try:
        canonical = rfc8785.dumps(value)
    except Exception:  # noqa: BLE001 - rfc8785's domain errors
        canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return hashlib.sha256(canonical).hexdigest()


class PlanCache:
    """Compiled plans by (workflow id, version); bounded, least recently used first out."""

    def __init__(self, size: int = PLAN_CACHE_SIZE):
        self.size = size
        self._lock = threading.Lock()
        self._plans: OrderedDict[tuple[str, int], WorkflowPlan] = OrderedDict()
        self.compiled = 0  # how many compilations happened (tests and metrics)

    def get(self, key: tuple[str, int], compile_: Callable[[], WorkflowPlan]) -> WorkflowPlan:
        with self._lock:
            plan = self._plans.get(key)
            if plan is not None:
                self._plans.move_to_end(key)
                return plan
        plan = compile_()  # outside the lock: a slow compile does not stall other workflows
        with self._lock:
            self.compiled += 1
            self._plans[key] = plan
            self._plans.move_to_end(key)
            while len(self._plans) > self.size:
                self._plans.popitem(last=False)
        return plan


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
        # Started by server workers (start_sweeping): a dead peer's runs fail within about
        # one and a half leases, without waiting for it to restart.
        self.sweeper = LeaseSweeper(lease_seconds / 2.0, audit_log=audit_log, database=database)
        # SQLite: the log is copied back by a thread of its own, not by a step's commit.
        self.wal_checkpoints = WalCheckpointer(database=database)
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
        if idempotency_key is not None and not (0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY):
            raise BadRequest(
                f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters", code=ErrorCode.INVALID_IDEMPOTENCY_KEY
            )
        input_data = input_data if input_data is not None else {}
        digest = request_digest or request_hash(input_data)
        with bound_to(self.database), connection():
            workflow = workflow_head(workflow_id)
            if workflow is None:
                raise NotFound(f"workflow {workflow_id} not found", code=ErrorCode.WORKFLOW_NOT_FOUND)
            if idempotency_key is not None:
                existing = self._keyed(workflow_id, idempotency_key)
                if existing is not None:
                    return self._replay(existing, digest)
            if workflow.status != "active":
                raise UnprocessableEntity(
                    f"workflow {workflow.name} is not active (it is {workflow.status})",
                    code=ErrorCode.WORKFLOW_NOT_ACTIVE,
                )
            plan = self.plan(workflow.id, workflow.version)
            if plan.input_validator is not None:
                problems = plan.input_validator.problems(input_data if checked_input is None else checked_input)
                if problems:
                    raise InputValidationError(problems)
            execution_id = new_id()
            # Serialized before the transaction: the write lock is held for the statements only.
            (started_entry,) = prepare_audit(
                [
                    audit_item(
                        "EXECUTION_STARTED",
                        "SUCCESS",
                        execution_id,
                        actor=actor,
                        context={"workflowId": workflow.id, "workflowVersion": workflow.version},
                        metadata={
                            "workflowName": workflow.name,
                            "totalSteps": plan.total_steps,
                            "idempotencyKey": bool(idempotency_key),
                            "inputHash": digest,
                        },
                    )
                ]
            )
            try:
                with write_transaction():
                    if idempotency_key is not None:
                        # On SQLite the write lock is held here, so this check is the serial one.
                        existing = self._keyed(workflow_id, idempotency_key)
                        if existing is not None:
                            return self._replay(existing, digest)
                    execution = self._create(execution_id, workflow, plan, input_data, digest, idempotency_key)
                    audit_batch([started_entry], self.audit_log)
            except peewee.IntegrityError:
                # Another request with the same key committed first (PostgreSQL): return the winner.
                existing = self._keyed(workflow_id, idempotency_key) if idempotency_key is not None else None
                if existing is None:
                    raise
                return self._replay(existing, digest)
        return StartResult(execution, True)

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

    @staticmethod
    def _keyed(workflow_id: str, key: str) -> Execution | None:
        return Execution.get_or_none((Execution.workflow_id == workflow_id) & (Execution.idempotency_key == key))

    @staticmethod
    def _replay(existing: Execution, digest: str) -> StartResult:
        if existing.request_hash != digest:
            raise UnprocessableEntity(
                "this Idempotency-Key was already used with a different request body",
                code=ErrorCode.IDEMPOTENCY_KEY_REUSED,
            )
        return StartResult(existing, False)

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

    def recover_interrupted(self) -> list[str]:
        """Fail executions whose lease expired (their process died); audit each."""
        recovered = recover_interrupted(audit_log=self.audit_log, database=self.database)
        if recovered:
            logger.warning("marked %d interrupted execution(s) as failed", len(recovered))
        return recovered

    def start_sweeping(self) -> None:
        """Fail, from now on and every half lease, runs whose process died (server workers)."""
        self.sweeper.start()

    def close(self) -> None:
        self.sweeper.stop()
        self.heartbeat.stop()
        self.wal_checkpoints.stop()
        self.executors.close()
        self.expression_sandbox.close()
        self._uninstall_log_redaction()


def _continues(execution: Execution) -> bool:
    """A resumed run, or a retry: its deadline counts from its recorded steps."""
    return bool(getattr(execution, "resumes", 0)) or getattr(execution, "retry_of", None) is not None


def traced_outcome(span, outcome: RunOutcome) -> None:
    """The run's end on its span: its status, and for a failure the failed step's error code."""
    span.set("flowker.execution.status", outcome.status)
    if outcome.status == FAILED:
        failed = next((step for step in outcome.steps if step.status == FAILED), None)
        span.failed((failed.error_code if failed is not None else None) or "execution_failed")


def _seconds(value: float):
    import datetime as dt

    return dt.timedelta(seconds=value)

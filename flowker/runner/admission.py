"""What is checked before an execution is created, run at once or queued.

:func:`admit` refuses a bad Idempotency-Key, an unknown or inactive workflow and an
input the trigger's ``inputSchema`` refuses, and finds the replay of a known key;
:func:`created_once` writes the new execution unless a request with the same key won.
:class:`PlanCache` keeps the compiled plans; :func:`request_hash` is the digest a
repeated key must match.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

import peewee
import rfc8785

from flowker.error_codes import ErrorCode
from flowker.errors import BadRequest, InputValidationError, NotFound, UnprocessableEntity
from flowker.runner.graph import WorkflowPlan
from flowker.storage.database import write_transaction
from flowker.storage.lookups import WorkflowHead, workflow_head
from flowker.storage.models import Execution

PLAN_CACHE_SIZE = 256
MAX_IDEMPOTENCY_KEY = 255


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


def admit(
    plan_of: Callable[[str, int], WorkflowPlan],
    workflow_id: str,
    input_data: Any,
    idempotency_key: str | None,
    request_digest: str | None,
    checked_input: Any,
    workflow_version: int | None = None,
) -> StartResult | tuple[WorkflowHead, WorkflowPlan, str]:
    """The replay of a known key, or the workflow (at ``workflow_version``, active or
    not; default its current version, which must be active), its plan (``plan_of``) and
    the request digest. Runs on the bound database, inside the caller's connection."""
    if idempotency_key is not None and not (0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY):
        raise BadRequest(
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters", code=ErrorCode.INVALID_IDEMPOTENCY_KEY
        )
    digest = request_digest or request_hash(input_data)
    workflow = workflow_head(workflow_id)
    if workflow is None:
        raise NotFound(f"workflow {workflow_id} not found", code=ErrorCode.WORKFLOW_NOT_FOUND)
    if idempotency_key is not None:
        existing = keyed_execution(workflow_id, idempotency_key)
        if existing is not None:
            return replay(existing, digest)
    if workflow_version is not None:
        workflow = WorkflowHead(workflow.id, workflow.name, workflow.status, workflow_version)
    elif workflow.status != "active":
        raise UnprocessableEntity(
            f"workflow {workflow.name} is not active (it is {workflow.status})",
            code=ErrorCode.WORKFLOW_NOT_ACTIVE,
        )
    plan = plan_of(workflow.id, workflow.version)
    if plan.input_validator is not None:
        problems = plan.input_validator.problems(input_data if checked_input is None else checked_input)
        if problems:
            raise InputValidationError(problems)
    return workflow, plan, digest


def created_once(
    workflow_id: str, idempotency_key: str | None, digest: str, create: Callable[[], Execution]
) -> StartResult:
    """``create()`` in a write transaction, unless a request with the same key won."""
    try:
        with write_transaction():
            if idempotency_key is not None:
                # On SQLite the write lock is held here, so this check is the serial one.
                existing = keyed_execution(workflow_id, idempotency_key)
                if existing is not None:
                    return replay(existing, digest)
            execution = create()
    except peewee.IntegrityError:
        # Another request with the same key committed first (PostgreSQL): return the winner.
        existing = keyed_execution(workflow_id, idempotency_key) if idempotency_key is not None else None
        if existing is None:
            raise
        return replay(existing, digest)
    return StartResult(execution, True)


def keyed_execution(workflow_id: str, key: str) -> Execution | None:
    return Execution.get_or_none((Execution.workflow_id == workflow_id) & (Execution.idempotency_key == key))


def replay(existing: Execution, digest: str) -> StartResult:
    if existing.request_hash != digest:
        raise UnprocessableEntity(
            "this Idempotency-Key was already used with a different request body",
            code=ErrorCode.IDEMPOTENCY_KEY_REUSED,
        )
    return StartResult(existing, False)

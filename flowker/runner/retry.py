"""Retry a failed execution (``POST /v1/executions/{id}/retry``, DESIGN 16).

The retry is a new ``queued`` execution (``retry_of`` the original) of the same workflow
version and input. Its first steps are copies of the original's leading completed (and
skipped) steps (:func:`flowker.runner.resume.reusable_step_rows`), so the worker that
claims it takes them from the record and runs again from the step that failed (or, for
an interrupted run, the first step never recorded). Its calls carry its own
Idempotency-Keys (``<retry id>:<node id>``): the failed attempt's key may be remembered
by the service with its failure.

One transaction creates the retry, its EXECUTION_QUEUED entry (metadata ``retryOf``,
``reusedSteps``), the copied step rows and the original's EXECUTION_RETRIED entry
(``retriedBy``). A failed execution has at most one retry (a unique index on
``retry_of``): a failed retry is retried in turn, so the attempts form a chain.
"""

from __future__ import annotations

import peewee

from flowker.errors import Conflict, NotFound, UnprocessableEntity
from flowker.error_codes import ErrorCode
from flowker.runner.admission import StartResult, keyed_execution, replay, request_hash
from flowker.runner.records import audit_batch, audit_item, prepare_audit
from flowker.runner.resume import copy_reusable_steps, reusable_step_rows
from flowker.storage.database import bound_to, connection, write_transaction
from flowker.storage.models import Execution
from flowker.validation.input_reads import WEBHOOK_INPUT

__all__ = ["retried_by", "retry_execution"]


def retried_by(execution_id: str) -> str | None:
    """The id of the execution that retries this one, if any (the unique index serves it)."""
    row = Execution.select(Execution.id).where(Execution.retry_of == execution_id).first()
    return row.id if row is not None else None


def retry_execution(service, execution_id: str, *, actor, idempotency_key: str | None = None) -> StartResult:
    """Queue a retry of the failed execution ``execution_id`` (``created``), or answer the
    retry an earlier request with the same Idempotency-Key made (not ``created``)."""
    with bound_to(service.database), connection():
        original = Execution.get_or_none(Execution.id == execution_id)
        if original is None:
            raise NotFound(f"execution {execution_id} not found", code=ErrorCode.EXECUTION_NOT_FOUND)
        # The same key for a retry of the same execution answers that retry.
        digest = request_hash({"retryOf": original.id})
        if idempotency_key is not None:
            existing = keyed_execution(original.workflow_id, idempotency_key)
            if existing is not None:
                return replay(existing, digest)
        if original.status != "failed":
            raise UnprocessableEntity(
                f"execution {original.id} is {original.status}: only a failed execution can be retried",
                code=ErrorCode.EXECUTION_NOT_RETRYABLE,
            )
        _refuse_second_retry(original.id)
        rows = reusable_step_rows(original.id)
        reused = rows[-1].step_number if rows else 0
        input_data = original.input_data or {}
        try:
            with write_transaction():
                started = service.enqueue(
                    original.workflow_id,
                    input_data,
                    actor=actor,
                    idempotency_key=idempotency_key,
                    request_digest=digest,
                    checked_input={k: v for k, v in input_data.items() if k != WEBHOOK_INPUT},
                    retry_of=original.id,
                    workflow_version=original.workflow_version,
                    audit_metadata={"reusedSteps": reused},
                )
                if not started.created:
                    return started  # a request with the same key won the race
                retry = started.execution
                if copy_reusable_steps(rows, retry.id):
                    Execution.update(current_step=reused).where(Execution.id == retry.id).execute()
                    retry.current_step = reused
                context = {"workflowId": original.workflow_id, "workflowVersion": original.workflow_version}
                audit_batch(
                    prepare_audit(
                        [
                            audit_item(
                                "EXECUTION_RETRIED",
                                "SUCCESS",
                                original.id,
                                actor=actor,
                                context=context,
                                metadata={"retriedBy": retry.id, "reusedSteps": reused, "fromStep": reused + 1},
                            )
                        ]
                    ),
                    service.audit_log,
                )
        except peewee.IntegrityError:
            _refuse_second_retry(original.id)  # another request's retry committed first
            raise
        return started


def _refuse_second_retry(execution_id: str) -> None:
    existing = retried_by(execution_id)
    if existing is not None:
        raise Conflict(
            f"execution {execution_id} was already retried by execution {existing}: retry that one instead",
            code=ErrorCode.EXECUTION_ALREADY_RETRIED,
        )

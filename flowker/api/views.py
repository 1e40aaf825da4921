"""Response shapes shared by several resources, and RFC 3339 times in and out."""

from __future__ import annotations

import datetime as _dt
import re

from flowker.api.errors import bad_query
from flowker.error_codes import ErrorCode
from flowker.storage.models import Execution, StepResult

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")


def iso(value: _dt.datetime | None) -> str | None:
    """Naive-UTC datetimes as RFC 3339 with milliseconds and ``Z`` (as the runner writes them)."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(_dt.timezone.utc).replace(tzinfo=None)
    return value.isoformat(timespec="milliseconds") + "Z"


def parse_time(name: str, raw: str | None, code: ErrorCode = ErrorCode.INVALID_DATE) -> _dt.datetime | None:
    """An RFC 3339 query parameter as a naive UTC datetime (400 when malformed)."""
    if raw is None:
        return None
    if not _RFC3339.match(raw):
        raise bad_query(f"{name} must be an RFC 3339 time such as 2026-01-31T23:59:59Z", code)
    text = raw.replace("t", "T").replace("z", "Z").replace(" ", "T")
    fraction = re.search(r"\.(\d+)", text)
    if fraction and len(fraction.group(1)) > 6:  # Python reads at most microseconds
        text = text.replace(fraction.group(0), "." + fraction.group(1)[:6])
    try:
        value = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise bad_query(f"{name} is not a valid date and time", code) from None
    return value.astimezone(_dt.timezone.utc).replace(tzinfo=None)


def workflow_view(workflow, spec: dict) -> dict:
    """A workflow as GET returns it; ``spec`` is the stored spec with secrets masked."""
    view = {
        "id": workflow.id,
        "name": workflow.name,
        "status": workflow.status,
        "version": workflow.version,
        "nodes": spec.get("nodes", []),
        "edges": spec.get("edges", []),
        "createdAt": iso(workflow.created_at),
        "updatedAt": iso(workflow.updated_at),
    }
    if spec.get("description") is not None:
        view["description"] = spec["description"]
    if spec.get("metadata") is not None:
        view["metadata"] = spec["metadata"]
    return view


def workflow_created(workflow) -> dict:
    return {
        "workflowId": workflow.id,
        "version": workflow.version,
        "status": workflow.status,
        "createdAt": iso(workflow.created_at),
    }


def executor_view(executor, spec: dict) -> dict:
    """An executor as GET returns it; ``spec`` has its secrets masked."""
    view = {
        "id": executor.id,
        "name": executor.name,
        "baseUrl": spec.get("baseUrl"),
        "endpoints": spec.get("endpoints", []),
        "authentication": spec.get("authentication", {}),
        "status": executor.status,
        "version": executor.version,
        "createdAt": iso(executor.created_at),
        "updatedAt": iso(executor.updated_at),
    }
    if spec.get("description") is not None:
        view["description"] = spec["description"]
    if spec.get("metadata") is not None:
        view["metadata"] = spec["metadata"]
    if executor.last_tested_at is not None:
        view["lastTestedAt"] = iso(executor.last_tested_at)
    return view


def executor_created(executor) -> dict:
    return {"id": executor.id, "name": executor.name, "status": executor.status, "createdAt": iso(executor.created_at)}


# \Z, not $: "$" also matches before a trailing newline, and "<uuid>\n" is not an id.
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")


def checked_id(value: str, what: str) -> str:
    """A path id must be a UUID (400 FLK-0002 otherwise); returned lower-cased."""
    from flowker.errors import BadRequest

    if not isinstance(value, str) or not _UUID.match(value):
        raise BadRequest(f"invalid {what} ID: expected a UUID", code=ErrorCode.INVALID_ID)
    return value.lower()


# -- executions (the rows flowker.runner.records writes) ----------------------------


def execution_summary(execution: Execution) -> dict:
    """``{executionId, workflowId, status, currentStepNumber, totalSteps, startedAt, completedAt?, queuedAt?,
    errorMessage?, traceId?}`` (a queued run's startedAt is when it was queued until a worker claims it)."""
    summary = {
        "executionId": execution.id,
        "workflowId": execution.workflow_id,
        "status": execution.status,
        "currentStepNumber": execution.current_step,
        "totalSteps": execution.total_steps,
        "startedAt": iso(execution.started_at),
    }
    if execution.completed_at is not None:
        summary["completedAt"] = iso(execution.completed_at)
    if execution.queued_at is not None:
        summary["queuedAt"] = iso(execution.queued_at)
    if execution.error_message:
        summary["errorMessage"] = execution.error_message
    if execution.trace_id:
        summary["traceId"] = execution.trace_id
    return summary


def step_result_dict(step: StepResult) -> dict:
    item = {
        "stepNumber": step.step_number,
        "stepName": step.node_name,
        "nodeId": step.node_id,
        "nodeType": step.node_type,
        "status": step.status,
        "attempts": step.attempts,
        "durationMs": step.duration_ms,
        "executedAt": iso(step.started_at),
        "completedAt": iso(step.completed_at),
    }
    if step.input_data is not None:
        item["input"] = step.input_data
    if step.output is not None:
        item["output"] = step.output
    if step.error_message:
        item["errorMessage"] = step.error_message
    if step.call_details is not None:
        item["callDetails"] = step.call_details
    return item


def execution_results(execution: Execution) -> dict:
    """``{executionId, workflowId, status, stepResults, finalOutput, startedAt, completedAt}``."""
    steps = StepResult.select().where(StepResult.execution == execution.id).order_by(StepResult.step_number)
    return {
        "executionId": execution.id,
        "workflowId": execution.workflow_id,
        "status": execution.status,
        "stepResults": [step_result_dict(step) for step in steps],
        "finalOutput": execution.final_output,
        "startedAt": iso(execution.started_at),
        "completedAt": iso(execution.completed_at),
        **({"errorMessage": execution.error_message} if execution.error_message else {}),
        **({"traceId": execution.trace_id} if execution.trace_id else {}),
    }

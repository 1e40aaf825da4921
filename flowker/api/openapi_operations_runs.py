"""The runs' operations for ``/openapi.json``: executions (start, list, get, results,
steps, retry) and webhooks (part of :data:`flowker.api.openapi_operations.OPERATIONS`)."""

from __future__ import annotations

from flowker.api.openapi_operation_parts import (
    LIMIT,
    LIST,
    LIST_REFUSALS,
    RUN_REFUSALS,
    IDEMPOTENCY,
    PREFER,
    WEBHOOK_TOKEN,
    LOCATION,
    WEBHOOK_PATH_NOTE,
    WEBHOOK_REFUSALS,
    EXECUTION_HEADERS,
    WEBHOOK_HEADERS,
    Operation,
    query_param,
)
from flowker.error_codes import ErrorCode


def execution_ops() -> list[Operation]:
    started = {
        200: ("Idempotent replay: the first execution", "ExecutionSummary"),
        201: ("Finished (synchronous run)", "ExecutionSummary"),
        202: ("Accepted (Prefer: respond-async): queued for a worker", "ExecutionSummary"),
    }
    return [
        Operation(
            "POST",
            "/v1/workflows/{workflow_id}/executions",
            "executeWorkflow",
            "executions",
            "Run an active workflow",
            started,
            (400, 404, 413, 415, 422, 503),
            (IDEMPOTENCY, PREFER),
            body="ExecuteRequest",
            headers=EXECUTION_HEADERS,
            refusals=RUN_REFUSALS,
        ),
        Operation(
            "GET",
            "/v1/executions",
            "listExecutions",
            "executions",
            "List executions",
            {200: ("A page of executions", "ExecutionList")},
            (400,),
            (
                query_param("workflowId", {"type": "string", "format": "uuid"}),
                query_param("status", {"enum": ["queued", "running", "completed", "failed"]}),
                query_param("dateFrom", {"type": "string", "format": "date-time"}, "Started at or after (RFC 3339)"),
                query_param("dateTo", {"type": "string", "format": "date-time"}, "Started at or before (RFC 3339)"),
                query_param("sortBy", {"enum": ["startedAt"]}),
                *LIST,
            ),
            refusals={400: (*LIST_REFUSALS[400], ErrorCode.INVALID_DATE, ErrorCode.INVALID_DATE_RANGE)},
        ),
        Operation(
            "GET",
            "/v1/executions/{execution_id}",
            "getExecution",
            "executions",
            "Get an execution",
            {200: ("The execution", "ExecutionSummary")},
            (400, 404),
        ),
        Operation(
            "GET",
            "/v1/executions/{execution_id}/results",
            "getExecutionResults",
            "executions",
            "Step results and final output (once finished)",
            {200: ("The results", "ExecutionResults")},
            (400, 404, 422),
            refusals={422: (ErrorCode.RESULTS_NOT_READY,)},
        ),
        Operation(
            "GET",
            "/v1/executions/{execution_id}/steps",
            "listExecutionSteps",
            "executions",
            "The steps recorded so far, also while the execution runs, and the step in flight",
            {200: ("Recorded steps after `after`, in step order", "ExecutionSteps")},
            (400, 404),
            (
                query_param(
                    "after", {"type": "integer", "minimum": 0}, "Only steps numbered above this (the last one you have)"
                ),
                LIMIT,
            ),
            refusals={400: (ErrorCode.INVALID_QUERY, ErrorCode.INVALID_LIMIT)},
        ),
        Operation(
            "POST",
            "/v1/executions/{execution_id}/retry",
            "retryExecution",
            "executions",
            "Queue a retry of a failed execution: its completed steps are reused, the failed one runs again",
            {
                200: ("Idempotent replay: the retry this key made", "ExecutionSummary"),
                202: ("Queued: the retry (retryOf set)", "ExecutionSummary"),
            },
            (400, 404, 409, 422),
            (IDEMPOTENCY,),
            headers=LOCATION,
            refusals={
                409: (ErrorCode.EXECUTION_ALREADY_RETRIED,),
                422: (ErrorCode.EXECUTION_NOT_RETRYABLE, ErrorCode.IDEMPOTENCY_KEY_REUSED),
            },
        ),
    ]


def webhook_ops() -> list[Operation]:
    started = {
        200: ("Idempotent replay: the first execution", "ExecutionSummary"),
        201: ("Finished (synchronous run)", "ExecutionSummary"),
        202: ("Accepted (Prefer: respond-async, or an async webhook trigger): queued", "ExecutionSummary"),
    }
    return [
        Operation(
            method,
            "/v1/webhooks/{path:path}",
            f"webhook{method.capitalize()}",
            "webhooks",
            "Run the active workflow whose webhook trigger owns this method and path",
            started,
            (400, 404, 409, 413, 422, 503),
            (IDEMPOTENCY, PREFER, WEBHOOK_TOKEN),
            body=None if method in ("GET", "DELETE") else "WebhookBody",
            headers=WEBHOOK_HEADERS,
            open_query=True,
            refusals=WEBHOOK_REFUSALS,
            description=WEBHOOK_PATH_NOTE,
        )
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE")
    ]

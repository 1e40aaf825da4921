"""Every route and method of the REST API, with every status it can answer: the table
:mod:`flowker.api.openapi` builds ``/openapi.json`` from (its shared parts:
:mod:`flowker.api.openapi_operation_parts`; the runs' operations, executions and
webhooks: :mod:`flowker.api.openapi_operations_runs`)."""

from __future__ import annotations

from flowker.api.openapi_operation_parts import (
    TEXT_PLAIN,
    Operation,
    query_param,
    LIMIT,
    CURSOR,
    LIST,
    LIST_REFUSALS,
    SPEC_REFUSALS,
    WORKFLOW_WRITE,
    EXECUTOR_WRITE,
    LOCATION,
)
from flowker.api.openapi_operations_runs import execution_ops, webhook_ops
from flowker.error_codes import ErrorCode


def _workflow_ops() -> list[Operation]:
    wid = "/v1/workflows/{workflow_id}"
    ops = [
        Operation(
            "POST",
            "/v1/workflows",
            "createWorkflow",
            "workflows",
            "Create a draft workflow (JSON or YAML)",
            {201: ("Created", "WorkflowCreated")},
            (400, 409, 413, 415, 422),
            body="spec:Workflow",
            headers=LOCATION,
            refusals=WORKFLOW_WRITE,
        ),
        Operation(
            "GET",
            "/v1/workflows",
            "listWorkflows",
            "workflows",
            "List workflows",
            {200: ("A page of workflows", "WorkflowList")},
            (400,),
            (
                query_param("status", {"enum": ["draft", "active", "inactive"]}),
                query_param("sortBy", {"enum": ["createdAt", "updatedAt", "name"]}),
                *LIST,
            ),
            refusals=LIST_REFUSALS,
        ),
        Operation(
            "GET", wid, "getWorkflow", "workflows", "Get a workflow", {200: ("The workflow", "Workflow")}, (400, 404)
        ),
        Operation(
            "PUT",
            wid,
            "replaceWorkflow",
            "workflows",
            "Replace a draft's spec",
            {200: ("The workflow", "Workflow")},
            (400, 404, 409, 413, 415, 422),
            body="spec:Workflow",
            refusals=WORKFLOW_WRITE,
        ),
        Operation(
            "DELETE",
            wid,
            "deleteWorkflow",
            "workflows",
            "Delete a workflow that is not active",
            {204: ("Deleted", None)},
            (400, 404, 409, 422),
            refusals={422: (ErrorCode.WORKFLOW_NOT_DRAFT,)},
        ),
        Operation(
            "POST",
            wid + "/clone",
            "cloneWorkflow",
            "workflows",
            "Copy a workflow into a new draft",
            {201: ("Created", "WorkflowCreated")},
            (400, 404, 409, 413, 415, 422),
            body="CloneRequest",
            headers=LOCATION,
            refusals=WORKFLOW_WRITE,
        ),
    ]
    ops += [
        Operation(
            "GET",
            wid + "/versions",
            "listWorkflowVersions",
            "workflows",
            "List a workflow's saved versions, newest first",
            {200: ("A page of versions", "WorkflowVersionList")},
            (400, 404),
            LIST,
            refusals=LIST_REFUSALS,
        ),
        Operation(
            "GET",
            wid + "/versions/{version}",
            "getWorkflowVersion",
            "workflows",
            "Get one saved version's spec",
            {200: ("The version", "WorkflowVersion")},
            (400, 404),
        ),
    ]
    for verb, summary in (
        ("activate", "draft -> active (runs every check)"),
        ("deactivate", "active -> inactive"),
        ("draft", "inactive -> draft"),
    ):
        ops.append(
            Operation(
                "POST",
                f"{wid}/{verb}",
                f"{verb}Workflow",
                "workflows",
                summary,
                {200: ("The workflow", "Workflow")},
                (400, 404, 409, 422),
                refusals={422: (ErrorCode.WORKFLOW_TRANSITION_REFUSED, *SPEC_REFUSALS)},
            )
        )
    return ops


# Executor writes check URLs (FLK-0341) and where secret references point (FLK-0007), and
# may decrypt stored secrets (FLK-0006).
_EXECUTOR_WRITE_CODES = (
    ErrorCode.ADDRESS_NOT_ALLOWED,
    ErrorCode.SECRET_REFERENCE_REFUSED,
    ErrorCode.SECRET_KEY_UNUSABLE,
)
_EXECUTOR_TEST_CODES = (ErrorCode.ADDRESS_NOT_ALLOWED, ErrorCode.SECRET_KEY_UNUSABLE)


def _executor_ops() -> list[Operation]:
    eid = "/v1/executors/{executor_id}"
    ops = [
        Operation(
            "POST",
            "/v1/executors",
            "createExecutor",
            "executors",
            "Create an executor (JSON or YAML)",
            {201: ("Created", "ExecutorCreated")},
            (400, 409, 413, 415, 422),
            body="spec:Executor",
            headers=LOCATION,
            security_codes=_EXECUTOR_WRITE_CODES,
            refusals=EXECUTOR_WRITE,
        ),
        Operation(
            "GET",
            "/v1/executors",
            "listExecutors",
            "executors",
            "List executors (secrets masked)",
            {200: ("A page of executors", "ExecutorList")},
            (400,),
            (
                query_param("status", {"enum": ["active", "disabled"]}),
                query_param("sortBy", {"enum": ["createdAt", "updatedAt", "name"]}),
                *LIST,
            ),
            refusals=LIST_REFUSALS,
        ),
        Operation(
            "GET",
            eid,
            "getExecutor",
            "executors",
            "Get an executor (secrets masked)",
            {200: ("The executor", "Executor")},
            (400, 404),
        ),
        Operation(
            "PUT",
            eid,
            "replaceExecutor",
            "executors",
            "Replace an executor's spec",
            {200: ("The executor", "Executor")},
            (400, 404, 409, 413, 415, 422),
            body="spec:Executor",
            security_codes=_EXECUTOR_WRITE_CODES,
            refusals=EXECUTOR_WRITE,
        ),
        Operation(
            "PATCH",
            eid,
            "patchExecutor",
            "executors",
            "JSON Merge Patch (RFC 7386) an executor",
            {200: ("The executor", "Executor")},
            (400, 404, 409, 413, 415, 422),
            body="ExecutorPatch",
            security_codes=_EXECUTOR_WRITE_CODES,
            refusals=EXECUTOR_WRITE,
        ),
        Operation(
            "DELETE",
            eid,
            "deleteExecutor",
            "executors",
            "Delete an executor no active workflow uses",
            {204: ("Deleted", None)},
            (400, 404, 409),
        ),
        Operation(
            "POST",
            eid + "/test",
            "testExecutor",
            "executors",
            "Probe the executor through the SSRF guard",
            {200: ("The probe report", "ExecutorTestReport")},
            (400, 404, 422, 502),
            security_codes=_EXECUTOR_TEST_CODES,
            refusals={422: (ErrorCode.ADDRESS_NOT_ALLOWED, ErrorCode.SECRET_KEY_UNUSABLE)},
        ),
    ]
    for verb in ("enable", "disable"):
        ops.append(
            Operation(
                "POST",
                f"{eid}/{verb}",
                f"{verb}Executor",
                "executors",
                f"{verb.capitalize()} an executor",
                {200: ("The executor", "Executor")},
                (400, 404, 409, 422),
                refusals={422: (ErrorCode.EXECUTOR_TRANSITION_REFUSED,)},
            )
        )
    return ops


def _other_ops() -> list[Operation]:
    date = {"type": "string", "format": "date-time"}
    return [
        Operation(
            "GET",
            "/health",
            "health",
            "health",
            "Health with a database check",
            {200: ("Healthy", "Health"), 503: ("Unhealthy", "Health")},
            public=True,
        ),
        Operation("GET", "/health/live", "live", "health", "Liveness", {200: ("Alive", "Live")}, public=True),
        Operation(
            "GET",
            "/health/ready",
            "ready",
            "health",
            "Readiness: database reachable and not draining",
            {200: ("Ready", "Ready"), 503: ("Not ready or draining", "Ready")},
            public=True,
        ),
        Operation("GET", "/version", "version", "health", "Version", {200: ("The version", "Version")}),
        Operation("GET", "/openapi.json", "openapi", "health", "This document", {200: ("OpenAPI 3.1", "OpenApi")}),
        Operation(
            "GET",
            "/v1/me",
            "getPrincipal",
            "access",
            "Who is calling: name, roles, workflows",
            {200: ("The caller", "Principal")},
        ),
        Operation(
            "GET",
            "/metrics",
            "metrics",
            "health",
            "Prometheus metrics of every worker (text exposition format)",
            {200: ("The metrics, as Prometheus text", TEXT_PLAIN)},
            description="Any authenticated principal. `flowker serve --metrics-bind HOST:PORT` serves the same "
            "text without a key for scrapers on a private interface.",
        ),
        Operation(
            "GET",
            "/v1/audit-events",
            "listAuditEvents",
            "audit",
            "List audit events",
            {200: ("A page of audit events", "AuditEventList")},
            (400,),
            (
                query_param("eventType", {"type": "string", "pattern": "^[A-Z][A-Z0-9_]{0,63}$"}),
                query_param("action", {"type": "string", "pattern": "^[A-Z][A-Z0-9_]{0,63}$"}),
                query_param("result", {"enum": ["SUCCESS", "FAILED"]}),
                query_param("resourceType", {"type": "string", "pattern": "^[a-z][a-z0-9_.-]{0,31}$"}),
                query_param("resourceId", {"type": "string", "minLength": 1, "maxLength": 255}),
                query_param(
                    "actor",
                    {"type": "string", "minLength": 1, "maxLength": 255},
                    "Who did it: the actor id, a key's name, or issuer and sub for a person",
                ),
                query_param("dateFrom", date),
                query_param("dateTo", date),
                *LIST,
            ),
            refusals={400: (*LIST_REFUSALS[400], ErrorCode.INVALID_DATE_RANGE)},
        ),
        Operation(
            "GET",
            "/v1/audit-events/{event_id}",
            "getAuditEvent",
            "audit",
            "Get an audit event",
            {200: ("The event", "AuditEvent")},
            (400, 404),
        ),
        Operation(
            "GET",
            "/v1/audit-events/{event_id}/verify",
            "verifyAuditChain",
            "audit",
            "Recompute every hash and link up to this event (every check of `flowker audit verify`)",
            {200: ("The verification", "ChainVerification")},
            (400, 404, 429, 503),
        ),
        Operation(
            "GET",
            "/v1/catalog/auth-types",
            "listAuthTypes",
            "catalog",
            "Registered auth types, by name",
            {200: ("Auth types", "CatalogTypeList")},
            (400,),
            (LIMIT, CURSOR),
            refusals={400: (ErrorCode.INVALID_CURSOR,)},
        ),
        Operation(
            "GET",
            "/v1/catalog/auth-types/{type_name}",
            "getAuthType",
            "catalog",
            "One auth type",
            {200: ("The auth type", "CatalogType")},
            (404,),
        ),
        Operation(
            "GET",
            "/v1/catalog/action-types",
            "listActionTypes",
            "catalog",
            "Registered action types, by name",
            {200: ("Action types", "CatalogTypeList")},
            (400,),
            (LIMIT, CURSOR),
            refusals={400: (ErrorCode.INVALID_CURSOR,)},
        ),
        Operation(
            "GET",
            "/v1/dashboards/workflows/summary",
            "workflowDashboard",
            "dashboards",
            "Workflows by status",
            {200: ("Counts", "WorkflowDashboard")},
        ),
        Operation(
            "GET",
            "/v1/dashboards/executions",
            "executionDashboard",
            "dashboards",
            "Execution counts (startedAt window, inclusive)",
            {200: ("Counts", "ExecutionDashboard")},
            (400,),
            (
                query_param(
                    "startTime", date, f"Inclusive; after endTime: 400 {ErrorCode.INVALID_DASHBOARD_FILTER.value}"
                ),
                query_param("endTime", date),
                query_param("status", {"enum": ["queued", "running", "completed", "failed"]}),
            ),
            refusals={400: (ErrorCode.INVALID_DASHBOARD_FILTER,)},
        ),
    ]


def _api_key_ops() -> list[Operation]:
    return [
        Operation(
            "POST",
            "/v1/api-keys",
            "createApiKey",
            "access",
            "Create an API key (the key is in this answer only)",
            {201: ("Created: the key, shown this once", "ApiKeyCreated")},
            (400, 409, 413, 415, 422),
            body="ApiKeyRequest",
            refusals={422: (ErrorCode.INVALID_API_KEY_REQUEST,), 409: (ErrorCode.API_KEY_NAME_TAKEN,)},
        ),
        Operation(
            "GET",
            "/v1/api-keys",
            "listApiKeys",
            "access",
            "List the API keys stored in the database (never the keys)",
            {200: ("The keys", "ApiKeyList")},
        ),
        Operation(
            "PATCH",
            "/v1/api-keys/{name}",
            "changeApiKey",
            "access",
            "Change a key's role, workflows or expiry (the key stays the same)",
            {200: ("The key (never the key text)", "ApiKey")},
            (400, 404, 413, 415, 422),
            body="ApiKeyChange",
            refusals={422: (ErrorCode.INVALID_API_KEY_REQUEST,), 404: (ErrorCode.API_KEY_NOT_FOUND,)},
        ),
        Operation(
            "DELETE",
            "/v1/api-keys/{name}",
            "revokeApiKey",
            "access",
            "Revoke an API key: refused from the next request on, on every server",
            {204: ("Revoked", None)},
            (404,),
            refusals={404: (ErrorCode.API_KEY_NOT_FOUND,)},
        ),
    ]


OPERATIONS: tuple[Operation, ...] = tuple(
    _workflow_ops() + _executor_ops() + execution_ops() + webhook_ops() + _other_ops() + _api_key_ops()
)

"""Every route and method of the REST API, with every status it can answer: the table
:mod:`flowker.api.openapi` builds ``/openapi.json`` from."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from flowker.error_codes import ErrorCode


# A success "schema" meaning a text/plain body (the metrics), not a JSON component.
TEXT_PLAIN = "text/plain"

ERROR_DESCRIPTIONS = {
    400: "Bad request: malformed body, id or query parameter",
    401: "Credential missing or invalid: API key, bearer token (or a webhook token)",
    403: (
        f"Forbidden ({ErrorCode.FORBIDDEN.value}): the caller's role or workflow scope does not allow this "
        "operation (see x-flowker-roles), or plain HTTP in production"
    ),
    404: "Not found",
    409: "Conflict",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Unprocessable: invalid spec, lifecycle rule or state",
    429: "Busy: another request of this kind is running in this process (see Retry-After)",
    500: "Internal error (no details)",
    502: "Upstream failure",
    503: (
        "Unavailable: draining, the run queue is full, or a bearer token cannot be checked "
        f"because the OpenID provider cannot be reached ({ErrorCode.IDENTITY_PROVIDER_UNAVAILABLE.value})"
    ),
}


@dataclass(frozen=True)
class Operation:
    method: str
    path: str  # falcon template; converters such as {path:path} are dropped in the document
    operation_id: str
    tag: str
    summary: str
    success: dict  # status -> (description, schema name or None)
    errors: tuple = ()
    parameters: tuple = ()
    body: str | None = None  # "spec:Workflow", "spec:Executor" or a component name
    public: bool = False
    headers: dict = field(default_factory=dict)  # success response headers: name -> description
    description: str = ""
    open_query: bool = False  # any query parameter is accepted (webhooks pass them to the run)
    security_codes: tuple = ()  # FLK codes of flowker.errors.SECURITY_ERRORS this operation answers with
    # status -> FLK codes that can refuse a request its schemas admit (rules across fields or
    # against stored state, which no JSON Schema states); the document lists them as x-flowker-codes.
    refusals: dict = field(default_factory=dict)

    @property
    def document_path(self) -> str:
        return re.sub(r"\{(\w+):\w+\}", r"{\1}", self.path)


def _q(name: str, schema: dict, description: str = "") -> dict:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


LIMIT = _q("limit", {"type": "integer", "minimum": 1, "maximum": 100}, "Page size, 1 to 100")
CURSOR = _q(
    "cursor",
    {"type": "string", "maxLength": 2048, "pattern": "^[A-Za-z0-9_-]*$"},
    "nextCursor of the previous page of this list, unchanged (any other value: 400 "
    f"{ErrorCode.INVALID_CURSOR.value}; with a sortBy or sortOrder other than its own: 400 "
    f"{ErrorCode.INVALID_QUERY.value})",
)
SORT_ORDER = _q("sortOrder", {"enum": ["ASC", "DESC"]}, "Default DESC; lower case (asc, desc) is accepted too")
LIST = (LIMIT, CURSOR, SORT_ORDER)
# A cursor is opaque: one of the right shape may still not come from this list.
LIST_REFUSALS = {400: (ErrorCode.INVALID_CURSOR, ErrorCode.INVALID_QUERY)}
# Spec bodies: rules across fields and against other specs (graph, references, secrets, URLs).
SPEC_REFUSALS = (ErrorCode.INVALID_SPEC, ErrorCode.LITERAL_SECRET_WITHOUT_KEY)
WORKFLOW_WRITE = {422: (*SPEC_REFUSALS, ErrorCode.WORKFLOW_NOT_DRAFT)}
# Executors: also the auth config against its auth type's own schema (GET /v1/catalog/auth-types/{type}),
# the SSRF guard and stored secrets.
EXECUTOR_WRITE = {422: (*SPEC_REFUSALS, ErrorCode.ADDRESS_NOT_ALLOWED, ErrorCode.SECRET_KEY_UNUSABLE)}
# Runs: the workflow must be active; an Idempotency-Key reused with another body; the input
# must match the trigger's inputSchema (FLK-0511, every problem in `details` as {path, message}).
RUN_REFUSALS = {
    422: (
        ErrorCode.WORKFLOW_NOT_ACTIVE,
        ErrorCode.IDEMPOTENCY_KEY_REUSED,
        ErrorCode.INVALID_SPEC,
        ErrorCode.INPUT_INVALID,
    )
}
IDEMPOTENCY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "pattern": "^[!-~]{1,255}$"},
    "description": "Replays return the first execution (200)",
}
PREFER = {
    "name": "Prefer",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": "respond-async: answer 202 at once and run in the background",
}
WEBHOOK_TOKEN = {
    "name": "X-Webhook-Token",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": "Required when the trigger has a verify_token",
}
LOCATION = {"Location": "URL of the created or found resource"}
# OpenAPI path templates match one segment per parameter, so the document cannot state the
# route for a multi-segment webhook path; the server serves it all the same.
WEBHOOK_PATH_NOTE = (
    "`path` is the trigger's webhook path without its leading slash. This template matches "
    "one path segment only: a multi-segment webhook path (such as `orders/created`) is "
    "served at `/v1/webhooks/orders/created` as well, but OpenAPI tools cannot match it "
    "to this operation; call its URL directly.\n\n"
    "A call needs X-API-Key (or a bearer token) unless the trigger declares "
    "`auth: {type: signature, scheme: standard-webhooks | github | hmac-sha256, secret}`: "
    "then a valid signature over the raw body is enough (standard-webhooks: webhook-id, "
    "webhook-timestamp, webhook-signature; github: X-Hub-Signature-256, X-GitHub-Delivery; "
    "hmac-sha256: X-Signature or the trigger's header), and a replayed message is refused."
)
# A signed call: a signature or timestamp refused (401), a message accepted before (409).
WEBHOOK_REFUSALS = {
    **RUN_REFUSALS,
    401: (ErrorCode.WEBHOOK_SIGNATURE_INVALID, ErrorCode.WEBHOOK_TIMESTAMP_REFUSED, ErrorCode.WEBHOOK_TOKEN_INVALID),
    409: (ErrorCode.WEBHOOK_REPLAYED,),
}
# Answered on every response; documented on each one so generated clients expose it.
REQUEST_ID = {"X-Request-ID": "The request id: the one sent in X-Request-ID, else a new one (also in logs)"}
YAML_NOTE = (
    " Also accepted as YAML (`Content-Type: application/yaml`, at most 256 KiB) with the same "
    "schema; the document lists JSON only so generated clients stay JSON."
)
EXECUTION_HEADERS = {
    "Location": "URL of the execution",
    "Preference-Applied": "respond-async when the Prefer header was honoured (202)",
}
WEBHOOK_HEADERS = {
    **EXECUTION_HEADERS,
    "X-Webhook-Workflow-ID": "The workflow run",
    "X-Webhook-Execution-ID": "The execution",
}


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
                _q("status", {"enum": ["draft", "active", "inactive"]}),
                _q("sortBy", {"enum": ["createdAt", "updatedAt", "name"]}),
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
                _q("status", {"enum": ["active", "disabled"]}),
                _q("sortBy", {"enum": ["createdAt", "updatedAt", "name"]}),
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


def _execution_ops() -> list[Operation]:
    started = {
        200: ("Idempotent replay: the first execution", "ExecutionSummary"),
        201: ("Finished (synchronous run)", "ExecutionSummary"),
        202: ("Accepted (Prefer: respond-async), running", "ExecutionSummary"),
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
                _q("workflowId", {"type": "string", "format": "uuid"}),
                _q("status", {"enum": ["running", "completed", "failed"]}),
                _q("sortBy", {"enum": ["startedAt"]}),
                *LIST,
            ),
            refusals=LIST_REFUSALS,
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
    ]


def _webhook_ops() -> list[Operation]:
    started = {
        200: ("Idempotent replay: the first execution", "ExecutionSummary"),
        201: ("Finished (synchronous run)", "ExecutionSummary"),
        202: ("Accepted (Prefer: respond-async), running", "ExecutionSummary"),
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
                _q("eventType", {"type": "string", "pattern": "^[A-Z][A-Z0-9_]{0,63}$"}),
                _q("action", {"type": "string", "pattern": "^[A-Z][A-Z0-9_]{0,63}$"}),
                _q("result", {"enum": ["SUCCESS", "FAILED"]}),
                _q("resourceType", {"type": "string", "pattern": "^[a-z][a-z0-9_.-]{0,31}$"}),
                _q("resourceId", {"type": "string", "minLength": 1, "maxLength": 255}),
                _q(
                    "actor",
                    {"type": "string", "minLength": 1, "maxLength": 255},
                    "Who did it: the actor id, a key's name, or issuer and sub for a person",
                ),
                _q("dateFrom", date),
                _q("dateTo", date),
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
                _q("startTime", date, f"Inclusive; after endTime: 400 {ErrorCode.INVALID_DASHBOARD_FILTER.value}"),
                _q("endTime", date),
                _q("status", {"enum": ["running", "completed", "failed"]}),
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
    _workflow_ops() + _executor_ops() + _execution_ops() + _webhook_ops() + _other_ops() + _api_key_ops()
)

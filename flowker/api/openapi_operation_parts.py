"""The building blocks of the REST API's operations table
(:mod:`flowker.api.openapi_operations`): the :class:`Operation` record, the query
parameters, headers and refusal lists several operations share."""

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


def query_param(name: str, schema: dict, description: str = "") -> dict:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


LIMIT = query_param("limit", {"type": "integer", "minimum": 1, "maximum": 100}, "Page size, 1 to 100")
CURSOR = query_param(
    "cursor",
    {"type": "string", "maxLength": 2048, "pattern": "^[A-Za-z0-9_-]*$"},
    "nextCursor of the previous page of this list, unchanged (any other value: 400 "
    f"{ErrorCode.INVALID_CURSOR.value}; with a sortBy or sortOrder other than its own: 400 "
    f"{ErrorCode.INVALID_QUERY.value})",
)
SORT_ORDER = query_param("sortOrder", {"enum": ["ASC", "DESC"]}, "Default DESC; lower case (asc, desc) is accepted too")
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
    "description": "respond-async: queue the run and answer 202 (status queued) at once; a queue worker runs it",
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

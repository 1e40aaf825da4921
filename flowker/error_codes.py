"""The catalog of FLK error codes: each code once, with its HTTP status, title and meaning.

Every error body, step record and exit is ``{code, title, message}`` with a code from
here. A member is a ``str`` (its value is the code, e.g. ``"FLK-0100"``), so it goes into
JSON, the database and comparisons as the plain code. Names say what went wrong in the
domain; the status is the one the REST API answers with. The OpenAPI document, the test
of the catalog (no duplicate, no unused code, no ``FLK-`` literal elsewhere in the
package) and ``docs/error-codes.md`` (``python -m flowker.error_codes``) enumerate it.
Codes shared with the Go Flowker API keep its numbers.
"""

from __future__ import annotations

from enum import StrEnum, unique


@unique
class ErrorCode(StrEnum):
    """One FLK code. ``status``, ``title`` and ``meaning`` come with every member."""

    status: int
    error_title: str  # the body's "title" (``str.title`` is taken)
    meaning: str

    def __new__(cls, code: str, status: int, title: str, meaning: str) -> ErrorCode:
        member = str.__new__(cls, code)
        member._value_ = code
        member.status = status
        member.error_title = title
        member.meaning = meaning
        return member

    # -- requests and configuration -------------------------------------------------
    INVALID_BODY = (
        "FLK-0001",
        400,
        "Bad Request",
        "The request body (or URL) cannot be read: not JSON or YAML, a NUL character, a "
        "repeated key, a non-finite number, a bad Content-Length, or the wrong shape.",
    )
    INVALID_ID = ("FLK-0002", 400, "Bad Request", "A path id is not a UUID.")
    CONFIGURATION = (
        "FLK-0003",
        500,
        "Configuration Error",
        "Settings or command-line usage are wrong; nothing was attempted (exit 2).",
    )
    PLUGIN_FAILED = ("FLK-0004", 500, "Plugin Error", "A plugin could not be loaded or clashes with another one.")
    SECRET_UNAVAILABLE = (
        "FLK-0005",
        500,
        "Secret Unavailable",
        "A secret reference could not be resolved (variable unset, file unreadable). "
        "422 when the secrets of an executor a request uses cannot be resolved.",
    )
    SECRET_KEY_UNUSABLE = (
        "FLK-0006",
        500,
        "Secret Key Error",
        "No usable FLOWKER_SECRET_KEY: a stored secret cannot be decrypted. 422 when "
        "the executor a request uses holds such a secret.",
    )
    SECRET_REFERENCE_REFUSED = (
        "FLK-0007",
        422,
        "Secret Reference Refused",
        "A $file/$env reference points where references may not (outside "
        "FLOWKER_SECRET_FILE_DIRS, a variable not allowed, Flowker's own files); "
        "nothing was read or sent.",
    )
    # -- workflows and expressions ----------------------------------------------------
    WORKFLOW_NOT_FOUND = ("FLK-0100", 404, "Not Found", "No workflow has this id.")
    WORKFLOW_NAME_TAKEN = ("FLK-0101", 409, "Conflict", "Another workflow already has this name.")
    WORKFLOW_TRANSITION_REFUSED = (
        "FLK-0102",
        422,
        "Unprocessable Entity",
        "The workflow is not in the status this transition starts from (draft -> active -> inactive -> draft).",
    )
    WORKFLOW_NOT_DRAFT = (
        "FLK-0103",
        422,
        "Unprocessable Entity",
        "Only a draft can be replaced, and an active workflow cannot be deleted.",
    )
    EXECUTOR_REFERENCE_UNKNOWN = (
        "FLK-0104",
        422,
        "Unprocessable Entity",
        "A workflow node names an executor that does not exist.",
    )
    INVALID_EXPRESSION = (
        "FLK-0105",
        422,
        "Invalid Expression",
        "An expression failed to compile or to evaluate (or a condition gave no boolean).",
    )
    EXPRESSION_BUDGET_EXCEEDED = (
        "FLK-0106",
        422,
        "Expression Budget Exceeded",
        "The execution's expressions used up their CPU budget.",
    )
    EXPRESSION_MEMORY_EXCEEDED = (
        "FLK-0107",
        422,
        "Expression Memory Exceeded",
        "An evaluation needed more memory than an evaluator process may use.",
    )
    EXPRESSION_EVALUATOR_UNAVAILABLE = (
        "FLK-0108",
        422,
        "Expression Evaluator Unavailable",
        "No expression evaluator process could be started or reached.",
    )
    WORKFLOW_VERSION_NOT_FOUND = ("FLK-0109", 404, "Not Found", "The workflow has no saved version of this number.")
    INVALID_WORKFLOW_VERSION = (
        "FLK-0110",
        400,
        "Bad Request",
        "A workflow version in the path is not an integer from 1 to 2147483647.",
    )
    INVALID_SPEC = (
        "FLK-0120",
        422,
        "Invalid Specification",
        "A spec (YAML file or REST body) is invalid; `details` lists every problem.",
    )
    LITERAL_SECRET_WITHOUT_KEY = (
        "FLK-0121",
        422,
        "Unprocessable Entity",
        "A literal secret cannot be stored: no FLOWKER_SECRET_KEY is configured.",
    )
    # -- catalog and executors --------------------------------------------------------
    AUTH_TYPE_NOT_FOUND = ("FLK-0200", 404, "Not Found", "No auth type of this name is registered.")
    EXECUTOR_NOT_FOUND = ("FLK-0250", 404, "Not Found", "No executor has this id.")
    EXECUTOR_NAME_TAKEN = ("FLK-0251", 409, "Conflict", "Another executor already has this name.")
    EXECUTOR_TRANSITION_REFUSED = (
        "FLK-0252",
        422,
        "Unprocessable Entity",
        "The executor is already in the status asked for.",
    )
    EXECUTOR_IN_USE = (
        "FLK-0253",
        409,
        "Conflict",
        "An active workflow uses this executor: it cannot be deleted, disabled or renamed.",
    )
    # -- query parameters -------------------------------------------------------------
    INVALID_DASHBOARD_FILTER = ("FLK-0302", 400, "Bad Request", "A dashboard filter is not valid.")
    INVALID_QUERY = (
        "FLK-0304",
        400,
        "Bad Request",
        "A query parameter is unknown, repeated or not valid, or a cursor comes with another sort.",
    )
    INVALID_DATE = ("FLK-0305", 400, "Invalid Date", "A date parameter is not an RFC 3339 time.")
    INVALID_DATE_RANGE = ("FLK-0308", 400, "Invalid Date Range", "dateFrom is after dateTo.")
    INVALID_LIMIT = ("FLK-0309", 400, "Invalid Limit", "limit is not an integer from 1 to 100.")
    INVALID_SORT_ORDER = ("FLK-0310", 400, "Invalid Sort Order", "sortOrder is not ASC or DESC.")
    INVALID_CURSOR = ("FLK-0311", 400, "Invalid Cursor", "cursor is not the nextCursor of a page of this list.")
    # -- network guard ----------------------------------------------------------------
    ADDRESS_NOT_ALLOWED = (
        "FLK-0341",
        422,
        "Address Not Allowed",
        "The SSRF guard refuses this URL or address (private, loopback, metadata...).",
    )
    HOST_NOT_RESOLVED = ("FLK-0342", 502, "Host Not Resolved", "A host name did not resolve.")
    UPSTREAM_RESPONSE_TOO_LARGE = (
        "FLK-0343",
        502,
        "Response Too Large",
        "An upstream response body is larger than the configured cap.",
    )
    CONCURRENT_CHANGE = (
        "FLK-0350",
        409,
        "Conflict",
        "Another request changed this workflow or executor first: read it again and retry.",
    )
    # -- webhooks ---------------------------------------------------------------------
    WEBHOOK_ROUTE_TAKEN = ("FLK-0360", 409, "Conflict", "Another workflow's trigger owns this webhook method and path.")
    WEBHOOK_ROUTE_NOT_FOUND = (
        "FLK-0361",
        404,
        "Not Found",
        "No active workflow has a webhook for this method and path.",
    )
    WEBHOOK_TOKEN_INVALID = ("FLK-0362", 401, "Unauthorized", "X-Webhook-Token is missing or does not match.")
    WEBHOOK_BODY_TOO_LARGE = ("FLK-0363", 413, "Payload Too Large", "A webhook body is larger than the limit.")
    WEBHOOK_SIGNATURE_INVALID = (
        "FLK-0364",
        401,
        "Unauthorized",
        "A signed webhook's signature is missing or does not match the raw body (or its "
        "message id header is missing); nothing ran.",
    )
    WEBHOOK_TIMESTAMP_REFUSED = (
        "FLK-0365",
        401,
        "Unauthorized",
        "A signed webhook's timestamp is more than 5 minutes from the server's clock; nothing ran.",
    )
    WEBHOOK_REPLAYED = (
        "FLK-0366",
        409,
        "Conflict",
        "This signed webhook message (its id) was already accepted, by this server or another "
        "sharing the database; nothing ran again.",
    )
    # -- HTTP layer -------------------------------------------------------------------
    UNAUTHENTICATED = ("FLK-0401", 401, "Unauthorized", "The API key (or bearer token) is missing or not valid.")
    FORBIDDEN = (
        "FLK-0403",
        403,
        "Forbidden",
        "The request is refused as sent: the caller's role (or workflow scope) does not allow "
        "this operation, plain HTTP where production requires HTTPS, or a CORS origin that "
        "is not allowed.",
    )
    ROUTE_NOT_FOUND = ("FLK-0404", 404, "Not Found", "No route has this path.")
    METHOD_NOT_ALLOWED = ("FLK-0405", 405, "Method Not Allowed", "The route does not take this method.")
    CONFLICT = ("FLK-0409", 409, "Conflict", "A conflict no more specific code names (plugins).")
    PAYLOAD_TOO_LARGE = ("FLK-0413", 413, "Payload Too Large", "A body too large, where no more specific code applies.")
    UNSUPPORTED_MEDIA_TYPE = (
        "FLK-0415",
        415,
        "Unsupported Media Type",
        "The Content-Type is not one this route accepts.",
    )
    UNPROCESSABLE = ("FLK-0422", 422, "Unprocessable Entity", "A refusal no more specific code names (plugins).")
    # -- access control ---------------------------------------------------------------
    API_KEY_NOT_FOUND = ("FLK-0700", 404, "Not Found", "No API key stored in the database has this name.")
    API_KEY_NAME_TAKEN = (
        "FLK-0701",
        409,
        "Conflict",
        "An API key (stored, or in FLOWKER_API_KEYS) already has this name; revoke it first.",
    )
    INVALID_API_KEY_REQUEST = (
        "FLK-0702",
        422,
        "Unprocessable Entity",
        "An API key request names an unknown role, a bad expiry or workflow list, or limits an admin key to workflows.",
    )
    IDENTITY_PROVIDER_UNAVAILABLE = (
        "FLK-0710",
        503,
        "Service Unavailable",
        "A bearer token could not be checked: the OpenID provider's discovery document or "
        "keys (JWKS) could not be fetched. Retry later; API keys keep working.",
    )
    # -- executions -------------------------------------------------------------------
    EXECUTION_NOT_FOUND = ("FLK-0500", 404, "Not Found", "No execution has this id.")
    WORKFLOW_NOT_ACTIVE = ("FLK-0501", 422, "Unprocessable Entity", "Only an active workflow runs.")
    RESULTS_NOT_READY = (
        "FLK-0502",
        422,
        "Unprocessable Entity",
        "The execution is still running: results are ready once it completed or failed.",
    )
    EXECUTOR_CALL_FAILED = (
        "FLK-0503",
        502,
        "Executor Call Failed",
        "An executor call failed for good (after retries, or at once); in step records.",
    )
    EXECUTION_DEADLINE_EXCEEDED = (
        "FLK-0504",
        504,
        "Execution Deadline Exceeded",
        "The execution's deadline passed; in step records.",
    )
    BODY_TOO_LARGE = ("FLK-0506", 413, "Payload Too Large", "The request body is larger than FLOWKER_MAX_BODY_BYTES.")
    CIRCUIT_OPEN = (
        "FLK-0507",
        503,
        "Circuit Open",
        "The executor's circuit breaker is open: the step failed without a network call.",
    )
    IDEMPOTENCY_KEY_REUSED = (
        "FLK-0508",
        422,
        "Idempotency Key Reused",
        "This Idempotency-Key was already used with a different request body.",
    )
    INVALID_IDEMPOTENCY_KEY = (
        "FLK-0509",
        400,
        "Bad Request",
        "Idempotency-Key is not 1 to 255 visible ASCII characters.",
    )
    INVALID_EXECUTION_REQUEST = (
        "FLK-0510",
        422,
        "Unprocessable Entity",
        'The execution request body is not {"inputData": {...}} (an unknown field, or inputData is not an object).',
    )
    INPUT_INVALID = (
        "FLK-0511",
        422,
        "Input Invalid",
        "The run's input does not match the trigger's inputSchema: nothing was stored; "
        "`details` lists every problem as {path, message} (path a JSON pointer).",
    )
    OUTPUT_TOO_LARGE = (
        "FLK-0512",
        422,
        "Output Too Large",
        "A step's output, an executor request or the final output is larger than FLOWKER_MAX_OUTPUT_BYTES.",
    )
    FAILED_BY_ACTION = (
        "FLK-0513",
        422,
        "Failed By Workflow",
        "A `fail` action ended the run as failed with its message; in step records.",
    )
    EXECUTOR_DISABLED = ("FLK-0514", 422, "Unprocessable Entity", "A step's executor is disabled.")
    AUTH_FAILED = (
        "FLK-0520",
        502,
        "Authentication Failed",
        "An auth type failed to produce credentials (token endpoint down, secret refused...).",
    )
    RESOLVED_AUTH_CONFIG_INVALID = (
        "FLK-0521",
        422,
        "Resolved Auth Config Invalid",
        "An auth config's secrets, once resolved, do not fit the auth type's schema.",
    )
    EXECUTION_NOT_RETRYABLE = (
        "FLK-0530",
        422,
        "Unprocessable Entity",
        "Only a failed execution can be retried (POST /v1/executions/{id}/retry); this one is "
        "queued, running or completed. Nothing was created.",
    )
    EXECUTION_ALREADY_RETRIED = (
        "FLK-0531",
        409,
        "Conflict",
        "This failed execution already has a retry (its retriedBy): retry that one if it failed too. "
        "Nothing was created.",
    )
    # -- audit ------------------------------------------------------------------------
    AUDIT_EVENT_NOT_FOUND = ("FLK-0600", 404, "Not Found", "No audit event has this id.")
    AUDIT_CHAIN_BROKEN = (
        "FLK-0610",
        500,
        "Audit Chain Error",
        "The audit chain failed verification or could not be appended to.",
    )
    AUDIT_WITNESS_UNAVAILABLE = (
        "FLK-0611",
        503,
        "Audit Witness Unavailable",
        "The audit witness (FLOWKER_AUDIT_WITNESS) could not be reached or answered "
        "nonsense: the append that completes a checkpoint is refused and rolled back.",
    )
    AUDIT_WITNESS_REFUSED = (
        "FLK-0612",
        409,
        "Audit Witness Refused",
        "The witness holds a checkpoint this one does not extend (the chain was cut or "
        "forked): the append is refused and rolled back.",
    )
    AUDIT_WITNESS_EMPTY = ("FLK-0613", 404, "Not Found", "The witness service holds no checkpoint yet.")
    AUDIT_VERIFY_BUSY = (
        "FLK-0614",
        429,
        "Verification Busy",
        "Another verify is running in this process; retry after Retry-After seconds.",
    )
    # -- availability -----------------------------------------------------------------
    TOO_MANY_REQUESTS = ("FLK-0429", 429, "Too Many Requests", "Refused for now: retry after Retry-After seconds.")
    DRAINING = (
        "FLK-0801",
        503,
        "Service Unavailable",
        "The server is shutting down and takes no new work (Retry-After says when to retry).",
    )
    INTERNAL = (
        "FLK-9999",
        500,
        "Internal Server Error",
        "A bug or an outage; the response holds no internals, the log and request id do.",
    )


def catalog_entry(code: str | None) -> ErrorCode | None:
    """The catalog member of a code (a plain string read back from storage, say), or None."""
    return _BY_CODE.get(code) if code is not None else None


_BY_CODE: dict[str, ErrorCode] = {member.value: member for member in ErrorCode}


def markdown() -> str:
    """``docs/error-codes.md``: the catalog as a table (a test checks the file matches)."""
    lines = [
        "# Error codes",
        "",
        "Every error Flowker answers with, records in a step or ends a command with carries one",
        'of these codes: REST bodies are `{"code", "title", "message"}`, step results carry',
        "`errorCode`. Clients should branch on the code, not on the message. The OpenAPI",
        "document (`/openapi.json`) lists the same catalog under `x-flowker-error-codes`.",
        "",
        "Generated by `python -m flowker.error_codes > docs/error-codes.md` from",
        "`flowker/error_codes.py`; a test fails when the two differ.",
        "",
        "| Code | Status | Title | Name | Meaning |",
        "|---|---|---|---|---|",
    ]
    for member in ErrorCode:
        meaning = member.meaning.replace("|", "\\|")
        lines.append(f"| `{member.value}` | {member.status} | {member.error_title} | `{member.name}` | {meaning} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")

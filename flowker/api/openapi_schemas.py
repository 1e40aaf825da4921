"""JSON Schemas (2020-12, as OpenAPI 3.1 takes them) of the API's own request and
response shapes. The spec bodies' schemas come from ``flowker.specs`` instead."""

from __future__ import annotations

TIME = {"type": "string", "format": "date-time"}
OPTIONAL_TIME = {"type": ["string", "null"], "format": "date-time"}
UUID = {"type": "string", "format": "uuid"}
ANY: dict = {}
# The run's OpenTelemetry trace (32 hex digits), when it was traced (flowker.tracing, docs/tracing.md).
TRACE_ID = {
    "type": "string",
    "pattern": "^[0-9a-f]{32}$",
    "description": "The run's OpenTelemetry trace id, when traced",
}


def obj(required: dict, optional: dict | None = None) -> dict:
    properties = dict(required)
    properties.update(optional or {})
    return {"type": "object", "required": sorted(required), "properties": properties}


def page(item: str) -> dict:
    return obj(
        {
            "items": {"type": "array", "items": {"$ref": f"#/components/schemas/{item}"}},
            "nextCursor": {"type": "string"},
            "hasMore": {"type": "boolean"},
        }
    )


PROBLEM = obj(
    {"message": {"type": "string"}},
    {
        "source": {"type": "string"},
        "line": {"type": ["integer", "null"]},
        "column": {"type": ["integer", "null"]},
        "path": {"type": "string"},
    },
)

RESPONSE_SCHEMAS: dict[str, dict] = {
    "Error": obj(
        {
            "code": {"type": "string", "pattern": "^FLK-[0-9]{4}$"},
            "title": {"type": "string"},
            "message": {"type": "string"},
        },
        {"details": {"type": "array", "items": PROBLEM}},
    ),
    "WorkflowCreated": obj(
        {
            "workflowId": UUID,
            "version": {"type": "integer", "minimum": 1},
            "status": {"enum": ["draft", "active", "inactive"]},
            "createdAt": TIME,
        }
    ),
    "Workflow": obj(
        {
            "id": UUID,
            "name": {"type": "string"},
            "status": {"enum": ["draft", "active", "inactive"]},
            "version": {"type": "integer", "minimum": 1},
            "nodes": {"type": "array", "items": {"type": "object"}},
            "edges": {"type": "array", "items": {"type": "object"}},
            "createdAt": TIME,
            "updatedAt": TIME,
        },
        {"description": {"type": "string"}, "metadata": {"$ref": "#/components/schemas/WorkflowMetadata"}},
    ),
    "WorkflowList": page("Workflow"),
    "WorkflowVersionSummary": obj(
        {
            "version": {"type": "integer", "minimum": 1},
            "createdAt": TIME,
            "current": {"type": "boolean"},
            "specHash": {"type": "string", "pattern": "^sha256:[0-9a-f]{64}$"},
            "nodeCount": {"type": "integer", "minimum": 0},
        }
    ),
    "WorkflowVersionList": page("WorkflowVersionSummary"),
    "WorkflowVersion": obj(
        {
            "workflowId": UUID,
            "version": {"type": "integer", "minimum": 1},
            "current": {"type": "boolean"},
            "name": {"type": "string"},
            "nodes": {"type": "array", "items": {"type": "object"}},
            "edges": {"type": "array", "items": {"type": "object"}},
            "createdAt": TIME,
            "specHash": {"type": "string", "pattern": "^sha256:[0-9a-f]{64}$"},
        },
        {"description": {"type": "string"}, "metadata": {"$ref": "#/components/schemas/WorkflowMetadata"}},
    ),
    "CloneRequest": {
        "type": "object",
        "additionalProperties": False,
        "required": ["name"],
        "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 100, "pattern": "^\\S(.*\\S)?$"}},
    },
    "ExecutorCreated": obj(
        {
            "id": UUID,
            "name": {"type": "string"},
            "status": {"enum": ["active", "disabled"]},
            "createdAt": TIME,
        }
    ),
    "Executor": obj(
        {
            "id": UUID,
            "name": {"type": "string"},
            "baseUrl": {"type": "string"},
            "endpoints": {"type": "array", "items": {"type": "object"}},
            "authentication": {"type": "object"},
            "status": {"enum": ["active", "disabled"]},
            "version": {"type": "integer", "minimum": 1},
            "createdAt": TIME,
            "updatedAt": TIME,
        },
        {"description": {"type": "string"}, "metadata": {"type": "object"}, "lastTestedAt": TIME},
    ),
    "ExecutorList": page("Executor"),
    "ExecutorPatch": {
        "type": "object",
        "description": "JSON Merge Patch (RFC 7386) of an executor spec; the result must be a valid executor.",
    },
    "ExecutorTestReport": obj(
        {
            "executorId": UUID,
            "executorName": {"type": "string"},
            "overallStatus": {"enum": ["passed", "failed", "partial"]},
            "durationMs": {"type": "number"},
            "stages": {
                "type": "array",
                "items": obj(
                    {
                        "name": {"enum": ["connectivity", "authentication", "end_to_end"]},
                        "status": {"enum": ["passed", "failed", "skipped"]},
                        "durationMs": {"type": "number"},
                    },
                    {"message": {"type": "string"}, "details": {"type": "object"}, "error": {"type": "string"}},
                ),
            },
            "summary": {"type": "string"},
            "startedAt": TIME,
            "completedAt": TIME,
        }
    ),
    "ExecuteRequest": {
        "type": "object",
        "additionalProperties": False,
        "properties": {"inputData": {"type": "object", "description": "The trigger input (`workflow` in expressions)"}},
    },
    "WebhookBody": {"type": "object", "description": "The run's input (plus _webhook request metadata)"},
    "ExecutionSummary": obj(
        {
            "executionId": UUID,
            "workflowId": UUID,
            "status": {"enum": ["queued", "running", "completed", "failed"]},
            "currentStepNumber": {"type": "integer"},
            "totalSteps": {"type": "integer"},
            "startedAt": TIME,
        },
        {
            "completedAt": TIME,
            "errorMessage": {"type": "string"},
            "traceId": TRACE_ID,
            "queuedAt": TIME,
            "retryOf": {**UUID, "description": "The failed execution this one retries"},
            "retriedBy": {**UUID, "description": "The retry of this failed execution (single views only)"},
            "resumes": {"type": "integer", "description": "Times the run was resumed after its process died"},
        },
    ),
    "ExecutionList": page("ExecutionSummary"),
    "StepResult": obj(
        {
            "stepNumber": {"type": "integer"},
            "nodeId": {"type": "string"},
            "status": {"enum": ["completed", "failed", "skipped"]},
        },
        {
            "stepName": {"type": "string"},
            "nodeType": {"type": "string"},
            "attempts": {"type": "integer"},
            "durationMs": {"type": "number"},
            "executedAt": OPTIONAL_TIME,
            "completedAt": OPTIONAL_TIME,
            "input": ANY,
            "output": ANY,
            "errorMessage": {"type": "string"},
            "callDetails": ANY,
        },
    ),
    "ExecutionResults": obj(
        {
            "executionId": UUID,
            "workflowId": UUID,
            "status": {"enum": ["queued", "running", "completed", "failed"]},
            "stepResults": {"type": "array", "items": {"$ref": "#/components/schemas/StepResult"}},
            "finalOutput": ANY,
            "startedAt": TIME,
        },
        {
            "completedAt": OPTIONAL_TIME,
            "errorMessage": {"type": "string"},
            "traceId": TRACE_ID,
            "retryOf": UUID,
            "retriedBy": UUID,
        },
    ),
    "ExecutionSteps": obj(
        {
            "executionId": UUID,
            "workflowId": UUID,
            "status": {"enum": ["queued", "running", "completed", "failed"]},
            "currentStepNumber": {"type": "integer"},
            "totalSteps": {"type": "integer"},
            "startedAt": TIME,
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/StepResult"}},
            "hasMore": {"type": "boolean"},
        },
        {
            "completedAt": TIME,
            "queuedAt": TIME,
            "errorMessage": {"type": "string"},
            "traceId": TRACE_ID,
            "retryOf": UUID,
            "resumes": {"type": "integer"},
            "runningStep": {
                **obj(
                    {"stepNumber": {"type": "integer"}, "nodeId": {"type": "string"}},
                    {"stepName": {"type": "string"}, "nodeType": {"type": "string"}},
                ),
                "description": "While it runs: the first step not yet on record (the step in flight, "
                "or one that ended less than a second ago)",
            },
        },
    ),
    "AuditEvent": obj(
        {
            "eventId": UUID,
            "eventType": {"type": "string"},
            "action": {"type": "string"},
            "result": {"enum": ["SUCCESS", "FAILED"]},
            "resourceType": {"type": "string"},
            "resourceId": {"type": "string"},
            "actor": obj({"type": {"type": "string"}, "id": {"type": "string"}}, {"ipAddress": {"type": "string"}}),
            "timestamp": TIME,
            "hash": {"type": "string"},
        },
        {
            "sequence": {"type": "integer"},
            "context": {"type": "object"},
            "metadata": {"type": "object"},
            "previousHash": {"type": ["string", "null"]},
        },
    ),
    "AuditEventList": page("AuditEvent"),
    "ChainVerification": obj(
        {"isValid": {"type": "boolean"}, "totalChecked": {"type": "integer"}, "message": {"type": "string"}},
        {"firstInvalidId": {"type": ["string", "integer", "null"]}},
    ),
    "CatalogType": obj(
        {
            "name": {"type": "string"},
            "description": {"type": "string"},
            "configSchema": {"type": ["object", "boolean"]},
            "provider": {"type": ["string", "null"]},
        }
    ),
    "CatalogTypeList": page("CatalogType"),
    "WorkflowDashboard": obj(
        {
            "total": {"type": "integer"},
            "active": {"type": "integer"},
            "byStatus": {"type": "array", "items": obj({"status": {"type": "string"}, "count": {"type": "integer"}})},
        }
    ),
    "ExecutionDashboard": obj(
        {
            "total": {"type": "integer"},
            "queued": {"type": "integer"},
            "running": {"type": "integer"},
            "completed": {"type": "integer"},
            "failed": {"type": "integer"},
            "queue": obj({"depth": {"type": "integer"}, "oldestAgeSeconds": {"type": ["number", "null"]}}),
        }
    ),
    "Health": obj(
        {
            "status": {"enum": ["healthy", "unhealthy"]},
            "version": {"type": "string"},
            "timestamp": TIME,
            "checks": {"type": "object"},
        },
        {"uptimeSeconds": {"type": "number"}},
    ),
    "Live": obj({"status": {"const": "alive"}, "timestamp": TIME}),
    "Ready": obj(
        {"status": {"enum": ["ready", "not_ready", "draining"]}, "timestamp": TIME, "checks": {"type": "object"}},
        {"version": {"type": "string"}},
    ),
    "Version": obj({"version": {"type": "string"}, "requestDate": TIME}),
    "OpenApi": {"type": "object", "required": ["openapi", "paths"]},
    "Principal": obj(
        {
            "name": {"type": "string"},
            "kind": {"enum": ["api_key", "person", "webhook_signature"]},
            "roles": {"type": "array", "items": {"type": "string"}},
            "permissions": {"type": "array", "items": {"type": "string"}},
            "workflows": {"type": ["array", "null"], "items": {"type": "string"}},
        }
    ),
    "ApiKeyRequest": {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "role"],
        "properties": {
            "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"},
            "role": {"enum": ["viewer", "operator", "editor", "auditor", "admin", "webhook"]},
            "workflows": {
                "type": "array",
                "minItems": 1,
                "maxItems": 100,
                "items": {"type": "string", "minLength": 1, "maxLength": 100},
                "description": "Limit the key to these workflows (names); absent: every workflow",
            },
            "expires": {
                "type": "string",
                "description": "A duration from now (90d, 12h, 30m, 2w) or an ISO 8601 date-time; absent: never",
            },
        },
    },
    "ApiKeyChange": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "role": {"enum": ["viewer", "operator", "editor", "auditor", "admin", "webhook"]},
            "workflows": {
                "type": ["array", "null"],
                "minItems": 1,
                "maxItems": 100,
                "items": {"type": "string", "minLength": 1, "maxLength": 100},
                "description": "The workflows (names) the key is limited to; null: every workflow",
            },
            "expires": {
                "type": ["string", "null"],
                "description": "A duration from now (90d, 12h) or an ISO 8601 date-time; null: never",
            },
        },
    },
    "ApiKey": obj(
        {
            "name": {"type": "string"},
            "role": {"type": "string"},
            "workflows": {"type": ["array", "null"], "items": {"type": "string"}},
            "status": {"enum": ["active", "expired", "revoked"]},
            "createdAt": TIME,
            "createdBy": {"type": "string"},
            "expiresAt": OPTIONAL_TIME,
            "revokedAt": OPTIONAL_TIME,
            "lastUsedAt": OPTIONAL_TIME,
        }
    ),
    "ApiKeyCreated": obj(
        {
            "name": {"type": "string"},
            "role": {"type": "string"},
            "workflows": {"type": ["array", "null"], "items": {"type": "string"}},
            "key": {"type": "string", "description": "The key itself: shown this once, never again"},
            "createdAt": TIME,
            "expiresAt": OPTIONAL_TIME,
        }
    ),
    "ApiKeyList": obj({"items": {"type": "array", "items": {"$ref": "#/components/schemas/ApiKey"}}}),
}

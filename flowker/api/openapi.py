"""The OpenAPI 3.1 document served at ``/openapi.json``.

Generated from :data:`flowker.api.openapi_operations.OPERATIONS` (every route and method, with every status it can
answer) plus the spec JSON Schemas of ``flowker.specs`` (read once per app via
importlib.resources; their ``$defs`` become components). A test walks the falcon router
and fails when a route or method is missing here.
"""

from __future__ import annotations

import copy
import json
import re
from importlib import resources

from flowker import __version__
from flowker.access.routes import roles_for
from flowker.api import openapi_rules as rules
from flowker.api import openapi_schemas as schemas
from flowker.api.middleware import PLAIN_HTTP_PATHS
from flowker.errors import SECURITY_ERRORS
from flowker.error_codes import ErrorCode

from flowker.api.openapi_operations import OPERATIONS  # noqa: F401 - re-exported
from flowker.api.openapi_operation_parts import (
    ERROR_DESCRIPTIONS,
    REQUEST_ID,
    TEXT_PLAIN,
    YAML_NOTE,
    Operation,
)

SPEC_SCHEMA_FILES = {"WorkflowSpec": "workflow.schema.json", "ExecutorSpec": "executor.schema.json"}


def load_spec_schemas() -> dict[str, dict]:
    """The spec JSON Schemas as components: ``$defs`` hoisted, local refs rewritten."""
    components: dict[str, dict] = {}
    for name, filename in SPEC_SCHEMA_FILES.items():
        text = resources.files("flowker.specs").joinpath(filename).read_text(encoding="utf-8")
        schema = json.loads(text)
        prefix = name[: -len("Spec")]
        definitions = schema.pop("$defs", {})
        schema.pop("$schema", None)
        schema.pop("$id", None)
        for def_name, definition in definitions.items():
            components[prefix + def_name[:1].upper() + def_name[1:]] = _rewrite_refs(definition, prefix)
        components[name] = _rewrite_refs(schema, prefix)
    return components


def _rewrite_refs(value, prefix: str):
    if isinstance(value, dict):
        result = {}
        for key, item in value.items():
            if key == "$ref" and isinstance(item, str) and item.startswith("#/$defs/"):
                target = item[len("#/$defs/") :]
                result[key] = "#/components/schemas/" + prefix + target[:1].upper() + target[1:]
            else:
                result[key] = _rewrite_refs(item, prefix)
        return result
    if isinstance(value, list):
        return [_rewrite_refs(item, prefix) for item in value]
    return value


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _path_parameters(path: str) -> list[dict]:
    parameters = []
    for name in re.findall(r"\{(\w+)(?::\w+)?\}", path):
        schema: dict = (
            {"type": "string", "minLength": 1}
            if name in ("path", "type_name", "name")
            else {"type": "string", "format": "uuid"}
        )
        if name == "version":  # a workflow's saved version (flowker.api.workflow_versions)
            schema = {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}
        if name == "path":
            schema["pattern"] = "^[^/]+$"  # one segment: see WEBHOOK_PATH_NOTE
        parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
    return parameters


BODY_LIMIT = (
    "At most FLOWKER_MAX_BODY_BYTES (default 1 MiB; larger: 413). Strings and keys hold no NUL "
    "or lone surrogate, numbers are finite, no object repeats a key (400)."
)


def _request_body(body: str) -> dict:
    if body.startswith("spec:"):
        name = body[len("spec:") :] + "Spec"
        return {
            "required": True,
            "description": BODY_LIMIT + YAML_NOTE,
            "content": {"application/json": {"schema": _ref(name)}},
        }
    # One media type per body: the server also takes application/json for the patch.
    content_type = "application/merge-patch+json" if body == "ExecutorPatch" else "application/json"
    content = {content_type: {"schema": _ref(body)}}
    return {"required": body not in ("ExecuteRequest", "WebhookBody"), "description": BODY_LIMIT, "content": content}


def _headers(headers: dict[str, str]) -> dict:
    return {name: {"description": text, "schema": {"type": "string"}} for name, text in headers.items()}


def _operation(op: Operation) -> dict:
    responses = {}
    for status, (description, schema) in sorted(op.success.items()):
        response: dict = {"description": description}
        if schema == TEXT_PLAIN:
            response["content"] = {"text/plain": {"schema": {"type": "string"}}}
        elif schema:
            response["content"] = {"application/json": {"schema": _ref(schema)}}
        headers = {**(op.headers if status != 204 else {}), **REQUEST_ID}
        if status != 202:
            headers.pop("Preference-Applied", None)
        response["headers"] = _headers(headers)
        responses[str(status)] = response
    error_codes = set(op.errors) | set(op.refusals) | {500}
    if not op.public:
        # 503: a bearer token when the OpenID provider cannot be reached (FLK-0710).
        error_codes.update((401, 403, 503))
    if op.path not in PLAIN_HTTP_PATHS:
        error_codes.add(403)  # production refuses plain HTTP everywhere but the probes
    for status in sorted(error_codes):
        description = ERROR_DESCRIPTIONS[status]
        named = [error for error in SECURITY_ERRORS if error.http_status == status and error.code in op.security_codes]
        if named:
            description += "; " + ", ".join(f"{error.code} {error.title}" for error in named)
        refusals = op.refusals.get(status, ())
        if refusals:
            description += "; a request these schemas admit may still get " + ", ".join(refusals)
        responses[str(status)] = {
            "description": description,
            "headers": _headers(REQUEST_ID),
            "content": {"application/json": {"schema": _ref("Error")}},
        }
        if refusals:
            responses[str(status)]["x-flowker-codes"] = list(refusals)
    # Answered by gunicorn itself, before the app, for request lines over its limit.
    responses["414"] = {
        "description": "Request line too long (answered by the HTTP server, as HTML)",
        "content": {"text/html": {"schema": {"type": "string"}}},
    }
    document = {
        "operationId": op.operation_id,
        "tags": [op.tag],
        "summary": op.summary,
        **({"description": op.description} if op.description else {}),
        "parameters": [
            {**p, "schema": rules.forbid_nul(p["schema"])}
            for p in _path_parameters(op.path) + [dict(p) for p in op.parameters]
        ],
        "responses": responses,
    }
    if op.body:
        document["requestBody"] = _request_body(op.body)
    if op.public:
        document["security"] = []
    # Who may call it (flowker.access.routes): enforced by the authorization middleware.
    document["x-flowker-roles"] = roles_for(op.operation_id)
    return document


# Components only requests use: their strings and keys exclude NUL (flowker.api.openapi_rules).
REQUEST_COMPONENTS = ("CloneRequest", "ExecutorPatch", "ExecuteRequest", "WebhookBody", "ApiKeyRequest", "ApiKeyChange")


def build_document(spec_schemas: dict[str, dict] | None = None, auth_types=None) -> dict:
    """The document; ``auth_types`` (the registry's names) become ``authentication.type``'s enum."""
    components = dict(schemas.RESPONSE_SCHEMAS)
    specs = dict(spec_schemas if spec_schemas is not None else load_spec_schemas())
    if auth_types is not None:
        specs["ExecutorSpec"] = rules.with_auth_types(specs["ExecutorSpec"], auth_types)
    components["ExecutorPatch"] = rules.executor_patch(specs["ExecutorSpec"])
    for name in REQUEST_COMPONENTS:
        components[name] = rules.forbid_nul(components[name])
    components.update({name: rules.any_json(rules.forbid_nul(schema)) for name, schema in specs.items()})
    components[rules.JSON_VALUE_NAME] = rules.JSON_VALUE
    paths: dict[str, dict] = {}
    for op in OPERATIONS:
        paths.setdefault(op.document_path, {})[op.method.lower()] = _operation(op)
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": "Flowker API",
            "version": __version__,
            "description": (
                "Declarative workflows over REST. Errors are {code, title, message} with FLK codes; "
                "lists are {items, nextCursor, hasMore} with opaque cursors. Every route but the "
                "health probes (/health, /health/live, /health/ready) needs X-API-Key (or a bearer token from the "
                "configured OpenID provider); x-flowker-roles on each operation names the roles allowed to call it."
            ),
        },
        "servers": [{"url": "/"}],
        # The whole catalog (flowker.error_codes), for clients that branch on codes.
        "x-flowker-error-codes": [
            {
                "code": entry.value,
                "name": entry.name,
                "status": entry.status,
                "title": entry.error_title,
                "meaning": entry.meaning,
            }
            for entry in ErrorCode
        ],
        "security": [{"ApiKey": []}],
        "tags": [
            {"name": name}
            for name in (
                "workflows",
                "executors",
                "executions",
                "webhooks",
                "audit",
                "catalog",
                "dashboards",
                "access",
                "health",
            )
        ],
        "paths": paths,
        "components": {
            "securitySchemes": {"ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
            "schemas": copy.deepcopy(components),
        },
    }


class OpenApiDocument:
    """``GET /openapi.json``; the document is built once per app and served as bytes."""

    uses_database = False

    def __init__(self, state):
        auth_types = sorted(state.registry.auth_types) if state is not None else None
        self._body = json.dumps(build_document(auth_types=auth_types), separators=(",", ":")).encode()

    def on_get(self, req, resp) -> None:
        resp.content_type = "application/json"
        resp.data = self._body

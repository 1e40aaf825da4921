"""The OpenAPI document describes every route the app serves, and is well formed."""

from __future__ import annotations

import json
import re

import falcon.testing
import jsonschema
import pytest
import referencing
import referencing.jsonschema

from api_helpers import API_KEY
from flowker.api.openapi import OPERATIONS, build_document

HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")


def served_operations(app) -> set[tuple[str, str]]:
    """(METHOD, document path) of every responder on the falcon router (OPTIONS aside:
    preflights are answered by the CORS middleware)."""
    found = set()
    stack = list(app._router._roots)
    while stack:
        node = stack.pop()
        stack.extend(node.children)
        if node.resource is None:
            continue
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", node.uri_template)
        for method in HTTP_METHODS:
            if callable(getattr(node.resource, f"on_{method.lower()}", None)):
                found.add((method, path))
    return found


@pytest.fixture
def document(sqlite_factory):
    app = sqlite_factory()
    assert falcon.testing.TestClient(app).simulate_get("/openapi.json").status_code == 401  # DESIGN §5
    response = falcon.testing.TestClient(app, headers={"X-API-Key": API_KEY}).simulate_get("/openapi.json")
    assert response.status_code == 200
    return app, response.json


def test_every_served_route_and_method_is_documented_and_nothing_else(document):
    app, doc = document
    served = served_operations(app)
    # The web console's HTML pages and files are not API operations: public, and listed
    # apart (flowker.console), never in /openapi.json.
    from flowker.console import CONSOLE_PREFIX, public_console_routes

    console = {
        (method, path) for method, path in served if path == CONSOLE_PREFIX or path.startswith(CONSOLE_PREFIX + "/")
    }
    assert console == {(method, template) for template, method in public_console_routes()}
    served -= console
    documented = {(method.upper(), path) for path, item in doc["paths"].items() for method in item}
    assert served - documented == set(), "routes missing from /openapi.json"
    assert documented - served == set(), "documented routes the app does not serve"
    assert len(served) >= 40


def test_every_operation_lists_its_error_codes_with_the_error_schema(document):
    _, doc = document
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            assert "500" in responses, (method, path)
            public = operation.get("security") == []
            if not public:
                assert {"401", "403"} <= set(responses), (method, path)
            if path == "/openapi.json":
                assert "403" in responses  # HTTPS required in production
            if "{" in path and "type_name" not in path and "path}" not in path and "{name}" not in path:
                assert "400" in responses and "404" in responses, (method, path)
            if "requestBody" in operation:
                assert "413" in responses, (method, path)
            for status, response in responses.items():
                if status == "414":
                    continue  # gunicorn's own HTML answer
                if int(status) >= 400 and int(status) != 503 or (int(status) == 503 and not public):
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}, (method, path, status)


def test_component_schemas_are_valid_json_schema_and_refs_resolve(document):
    _, doc = document
    schemas = doc["components"]["schemas"]
    for _name, schema in schemas.items():
        jsonschema.Draft202012Validator.check_schema(schema)
    text = str(doc)
    for target in set(re.findall(r"#/components/schemas/(\w+)", text)):
        assert target in schemas, target
    assert "#/$defs/" not in text
    assert doc["openapi"].startswith("3.1")
    # The spec bodies' schemas are the same files `flowker validate` uses.
    assert "WorkflowSpec" in schemas and "ExecutorSpec" in schemas
    assert schemas["WorkflowSpec"]["required"] == ["name", "nodes", "edges"]


def test_the_operation_table_has_unique_ids(document):
    ids = [op.operation_id for op in OPERATIONS]
    assert len(ids) == len(set(ids))
    assert build_document()["paths"] == document[1]["paths"]


def test_the_document_states_what_the_server_enforces(document, registry):
    """Generated clients and validators must agree with the server (schemathesis -c all)."""
    _, doc = document
    schemas = doc["components"]["schemas"]
    auth_type = schemas["ExecutorSpec"]["properties"]["authentication"]["properties"]["type"]
    assert auth_type["enum"] == sorted(registry.auth_types)
    patch = schemas["ExecutorPatch"]
    assert patch["additionalProperties"] is False and "name" in patch["properties"]
    lists = doc["paths"]["/v1/workflows"]["get"]
    cursor = next(p for p in lists["parameters"] if p["name"] == "cursor")
    assert cursor["schema"]["pattern"] == "^[A-Za-z0-9_-]*$"
    assert lists["responses"]["400"]["x-flowker-codes"] == ["FLK-0311", "FLK-0304"]
    dashboard = doc["paths"]["/v1/dashboards/executions"]["get"]["responses"]["400"]
    assert dashboard["x-flowker-codes"] == ["FLK-0302"]
    assert "413" in doc["paths"]["/v1/workflows"]["post"]["responses"]
    assert "FLOWKER_MAX_BODY_BYTES" in doc["paths"]["/v1/workflows"]["post"]["requestBody"]["description"]


def test_no_request_schema_admits_a_nul_character(document):
    _, doc = document
    validator_for = jsonschema.Draft202012Validator
    schemas = doc["components"]["schemas"]
    resolver_root = {"components": {"schemas": schemas}}

    def valid(schema, value) -> bool:
        registry_ = referencing.Registry().with_resource(
            "urn:doc",
            referencing.Resource.from_contents(resolver_root, default_specification=referencing.jsonschema.DRAFT202012),
        )
        return validator_for({"$ref": "urn:doc#/components/schemas/" + schema}, registry=registry_).is_valid(value)

    executor = {
        "name": "ledger",
        "baseUrl": "https://ledger.example.com",
        "endpoints": [{"name": "book", "path": "/book", "method": "POST"}],
        "authentication": {"type": "bearer", "config": {"token": "t"}},
    }
    assert valid("ExecutorSpec", executor)
    for path, bad in (
        (("name",), "led\u0000ger"),
        (("baseUrl",), "https://led\u0000ger.example.com"),
        (("metadata",), {"k": "a\u0000"}),
        (("metadata",), {"k\u0000": 1}),
        (("authentication", "config"), {"token": "\u0000"}),
    ):
        mangled = json.loads(json.dumps(executor))
        target = mangled
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = bad
        assert not valid("ExecutorSpec", mangled), path
    assert valid("ExecuteRequest", {"inputData": {"a": ["b", {"c": None}]}})
    assert not valid("ExecuteRequest", {"inputData": {"a": ["b", {"c": "\u0000"}]}})
    for operation in (op for item in doc["paths"].values() for op in item.values()):
        for parameter in operation["parameters"]:
            schema = parameter["schema"]
            if schema.get("type") == "string" and "format" not in schema:
                assert not re.search(schema["pattern"].replace("\\u0000", "\\x00"), "a\u0000"), parameter["name"]


@pytest.mark.parametrize(
    "pattern,admitted,refused",
    [
        ("^\\S(.*\\S)?$", ["a", "a b", "a\rb"], ["\u0000", "a\u0000b", " a", "a\nb"]),
        ("^https?://[^\\s/?#@]+(/[^\\s?#]*)?$", ["https://x/y"], ["https://x\u0000/y", "https://x/\u0000"]),
        ("^[a-z]+$", ["abc"], ["a\u0000"]),
    ],
)
def test_nul_free_patterns_admit_the_same_text_without_nul(pattern, admitted, refused):
    from flowker.api.openapi_rules import nul_free_pattern

    rewritten = re.compile(nul_free_pattern(pattern).replace("\\u0000", "\\x00"))
    for text in admitted:
        assert re.search(pattern, text) and rewritten.search(text), text
    for text in refused:
        assert not rewritten.search(text), text


def test_the_document_enumerates_the_code_catalog_and_its_headers(document):
    _, document = document
    from flowker.error_codes import ErrorCode

    listed = document["x-flowker-error-codes"]
    assert [entry["code"] for entry in listed] == [member.value for member in ErrorCode]
    assert all({"code", "name", "status", "title", "meaning"} <= set(entry) for entry in listed)
    operations = [op for path in document["paths"].values() for op in path.values()]
    for operation in operations:
        for status, response in operation["responses"].items():
            if status != "414":  # answered by gunicorn, before the app
                assert "X-Request-ID" in response.get("headers", {}), (operation["operationId"], status)
    execute = document["paths"]["/v1/workflows/{workflow_id}/executions"]["post"]["responses"]
    assert "Preference-Applied" in execute["202"]["headers"] and "Preference-Applied" not in execute["201"]["headers"]


def test_the_document_is_one_client_generators_accept(document):
    """What stopped openapi-python-client (tests/e2e/test_e2e_generated_client.py drives one)."""
    _, document = document
    schemas = document["components"]["schemas"]
    for path in document["paths"].values():
        for operation in path.values():
            for parameter in operation["parameters"]:
                if parameter["name"] == "sortOrder":
                    assert parameter["schema"]["enum"] == ["ASC", "DESC"]  # no duplicate enum keys
            body = operation.get("requestBody", {}).get("content", {})
            assert len(body) <= 1, operation["operationId"]  # one schema, one media type
    patch = document["paths"]["/v1/executors/{executor_id}"]["patch"]["requestBody"]["content"]
    assert list(patch) == ["application/merge-patch+json"]
    # A self-referencing union of every JSON type cannot become a class: arbitrary JSON has no type.
    for name in ("JsonValue", "WorkflowJsonValue", "ExecutorJsonValue"):
        assert "type" not in schemas[name] and schemas[name]["description"], name
    assert schemas["Workflow"]["properties"]["metadata"] == {"$ref": "#/components/schemas/WorkflowMetadata"}
    webhook = document["paths"]["/v1/webhooks/{path}"]["post"]
    assert "multi-segment" in webhook["description"]
    assert webhook["parameters"][0]["schema"]["pattern"] == "^[^\\u0000/]+$"  # one segment, no NUL


def test_runs_and_webhooks_list_the_input_schema_refusal(document):
    """A bad input for the trigger's inputSchema is 422 FLK-0511 on every run path."""
    _, doc = document
    operations = [doc["paths"]["/v1/workflows/{workflow_id}/executions"]["post"]]
    operations += [doc["paths"]["/v1/webhooks/{path}"][method] for method in ("get", "post", "put", "patch", "delete")]
    for operation in operations:
        refusal = operation["responses"]["422"]
        assert "FLK-0511" in refusal["x-flowker-codes"], operation["operationId"]
        assert "FLK-0511" in refusal["description"]

"""The OpenAPI document describes every route the app serves, and is well formed."""

from __future__ import annotations

import re

import falcon.testing
import jsonschema
import pytest

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
    response = falcon.testing.TestClient(app).simulate_get("/openapi.json")
    assert response.status_code == 200
    return app, response.json


def test_every_served_route_and_method_is_documented_and_nothing_else(document):
    app, doc = document
    served = served_operations(app)
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
            if "{" in path and "type_name" not in path and "path}" not in path:
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

"""`flowker schema --out DIR`: the schemas editors use accept every example spec and
catch a wrong auth config through the conditional on `authentication.type`."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from flowker.validation.loader import find_spec_files, load_spec_file

REPO = Path(__file__).resolve().parents[2]
SPECS = REPO / "specs"


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Path:
    from cli_runner import run_flowker

    out = tmp_path_factory.mktemp("editor") / "schemas"
    result = run_flowker("schema", "--out", out)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [str(out / path.name) for path in sorted(SPECS.glob("*.schema.json"))]
    return out


# Each spec kind's schema file (specs/*.schema.json), as `flowker schema` writes it.
SCHEMA_OF_KIND = {"Workflow": "workflow", "Executor": "executor", "WorkflowTest": "workflow-test"}


def validator(written: Path, kind: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((written / f"{kind}.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def errors(written: Path, kind: str, document: dict) -> list[str]:
    found = validator(written, kind).iter_errors(document)
    return sorted(f"{'/'.join(map(str, error.absolute_path))}: {error.message}" for error in found)


def test_every_shipped_schema_is_written_and_valid(written):
    names = sorted(path.name for path in written.iterdir())
    assert names == sorted(path.name for path in SPECS.glob("*.schema.json"))
    assert {f"{name}.schema.json" for name in SCHEMA_OF_KIND.values()} <= set(names)
    for path in written.iterdir():
        jsonschema.Draft202012Validator.check_schema(json.loads(path.read_text()))


def test_the_examples_validate_against_the_written_schemas(written):
    files = find_spec_files(REPO / "examples")
    assert len(files) >= 10
    for path in files:
        document = load_spec_file(path)
        body = {"kind": document.kind, **document.body}
        assert errors(written, SCHEMA_OF_KIND[document.kind], body) == [], path


def executor(auth: dict) -> dict:
    return {
        "kind": "Executor",
        "name": "scorer",
        "baseUrl": "https://scorer.example.com",
        "endpoints": [{"name": "analyze", "path": "/analyze", "method": "POST"}],
        "authentication": auth,
    }


def test_a_wrong_auth_config_fails_the_conditional_of_its_type(written, registry):
    schema = json.loads((written / "executor.schema.json").read_text())
    assert schema["properties"]["authentication"]["properties"]["type"]["enum"] == sorted(registry.auth_types)
    # A secret reference stands wherever the type takes a string.
    assert errors(written, "executor", executor({"type": "bearer", "config": {"token": {"$env": "TOKEN"}}})) == []
    assert errors(written, "executor", executor({"type": "basic", "config": {"username": "u", "password": "p"}})) == []

    misspelt = errors(written, "executor", executor({"type": "bearer", "config": {"tokn": {"$env": "TOKEN"}}}))
    assert any("'token' is a required property" in e for e in misspelt), misspelt
    assert any("'tokn' was unexpected" in e for e in misspelt), misspelt
    # The same config is right for another type: the conditional follows `type`.
    missing = errors(written, "executor", executor({"type": "basic", "config": {"token": "t"}}))
    assert any("'username' is a required property" in e for e in missing), missing
    wrong_type = errors(written, "executor", executor({"type": "api_key", "config": {"key": "k", "location": "body"}}))
    assert wrong_type and all(e.startswith("authentication/config/location") for e in wrong_type), wrong_type
    unknown = errors(written, "executor", executor({"type": "kerberos", "config": {}}))
    assert unknown == ["authentication/type: 'kerberos' is not one of " + repr(sorted(registry.auth_types))]


def test_a_workflow_with_an_input_schema_validates(written):
    workflow = {
        "kind": "Workflow",
        "name": "w",
        "nodes": [
            {
                "id": "start",
                "type": "trigger",
                "data": {"triggerType": "manual", "inputSchema": {"type": "object", "required": ["a"]}},
            }
        ],
        "edges": [],
    }
    assert errors(written, "workflow", workflow) == []
    workflow["nodes"][0]["data"]["inputSchema"] = "not a schema"
    assert errors(written, "workflow", workflow) == ["nodes/0/data/inputSchema: 'not a schema' is not of type 'object'"]


def test_schema_needs_a_folder(tmp_path):
    from cli_runner import run_flowker

    assert run_flowker("schema").returncode == 2  # --out is required
    taken = tmp_path / "file"
    taken.write_text("")
    result = run_flowker("schema", "--out", taken)
    assert result.returncode == 2 and "is a file" in result.stderr, result.stderr
    blocked = run_flowker("schema", "--out", taken / "below")
    assert blocked.returncode == 1 and "cannot write to" in blocked.stderr, blocked.stderr

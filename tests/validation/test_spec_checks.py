"""The semantic checks, through the REST entry point and across files."""

from __future__ import annotations

import copy
import json

import pytest

from flowker.errors import SpecError
from flowker.validation.checks import validate_body, validate_documents
from flowker.validation.loader import load_spec_text
from flowker.validation.problems import Problem, format_json_path, parse_path_suffix
from flowker.validation.schemas import schema_document, schema_validator

EXECUTOR = {
    "name": "fraud-check",
    "description": "Fraud scoring",
    "baseUrl": "https://tracer.example.com",
    "endpoints": [
        {"name": "analyze", "path": "/v1/transactions/analyze", "method": "POST", "timeout": 30},
        {"name": "get-case", "path": "/v1/cases/{caseId}", "method": "GET"},
    ],
    "authentication": {"type": "bearer", "config": {"token": {"$env": "TRACER_TOKEN"}}},
}

WORKFLOW = {
    "name": "payment-approval",
    "nodes": [
        {"id": "start", "type": "trigger", "data": {"triggerType": "webhook", "path": "/payments", "method": "POST"}},
        {
            "id": "score",
            "type": "executor",
            "position": {"x": 10, "y": 20.5},
            "data": {"executor": "fraud-check", "endpoint": "analyze", "body": {"amount": "${{ workflow.amount }}"}},
        },
        {"id": "decide", "type": "conditional", "data": {"condition": "nodes.score.body.score < 80"}},
        {"id": "approve", "type": "action", "data": {"actionType": "set_output", "output": {"d": "OK"}}},
        {"id": "hold", "type": "action", "data": {"actionType": "set_output", "output": {"d": "HOLD"}}},
    ],
    "edges": [
        {"id": "e1", "source": "start", "target": "score"},
        {"id": "e2", "source": "score", "target": "decide"},
        {"id": "e3", "source": "decide", "target": "approve", "sourceHandle": "true"},
        {"id": "e4", "source": "decide", "target": "hold", "sourceHandle": "false"},
    ],
}


def workflow(**changes):
    body = copy.deepcopy(WORKFLOW)
    body.update(changes)
    return body


def messages(problems):
    return [f"{p.json_path}: {p.message}" for p in problems]


def test_the_schemas_come_from_the_installed_package_with_stable_ids():
    assert schema_document("Workflow")["$id"] == "https://flowker.dev/schemas/workflow.schema.json"
    assert schema_document("Executor")["$id"] == "https://flowker.dev/schemas/executor.schema.json"
    assert schema_validator("Workflow") is schema_validator("Workflow")  # compiled once


def test_valid_rest_bodies_pass(registry):
    assert validate_body("Executor", EXECUTOR, registry) == []
    assert validate_body("workflow", WORKFLOW, registry, executors={"fraud-check": EXECUTOR}) == []
    # Without a mapping of executors, references are not resolved.
    assert validate_body("Workflow", WORKFLOW, registry) == []


def test_rest_problems_have_no_line_and_a_json_path(registry):
    body = workflow()
    body["nodes"][1]["data"]["endpoint"] = "analyse"
    (problem,) = validate_body("Workflow", body, registry, executors={"exec-id-1": EXECUTOR})
    assert problem.to_dict() == {
        "source": "<request>",
        "line": None,
        "column": None,
        "path": "$.nodes[1].data.executor",
        "message": "unknown executor 'fraud-check' (known: exec-id-1)",
    }
    assert (
        problem.format() == "<request>: unknown executor 'fraud-check' (known: exec-id-1) (at $.nodes[1].data.executor)"
    )
    problems = validate_body("Workflow", body, registry, executors={"fraud-check": EXECUTOR})
    assert messages(problems) == [
        "$.nodes[1].data.endpoint: executor 'fraud-check' has no endpoint 'analyse' (did you mean 'analyze'?) (it has: analyze, get-case)"
    ]


def test_executor_referenced_by_id_in_the_mapping(registry):
    body = workflow()
    body["nodes"][1]["data"]["executor"] = "0b3c5a9e-1111-4e5b-9d5e-000000000001"
    executors = {"fraud-check": EXECUTOR, "0b3c5a9e-1111-4e5b-9d5e-000000000001": EXECUTOR}
    assert validate_body("Workflow", body, registry, executors=executors) == []


def test_literal_secrets_are_accepted_over_rest_but_not_in_files(registry):
    body = copy.deepcopy(EXECUTOR)
    body["authentication"]["config"]["token"] = "s3cr3t-value-123"
    assert validate_body("Executor", body, registry) == []
    text = json.dumps({"kind": "Executor", **body})
    document = load_spec_text(text, "ex.yaml", from_file=True)
    problems = validate_documents([document], registry)
    assert messages(problems) == [
        "$.authentication.config.token: secret 'token' must be a reference in a spec file: "
        "{$env: NAME} or {$file: PATH}, not a literal value"
    ]
    assert all("s3cr3t" not in p.format() for p in problems)


def test_secret_values_never_appear_in_schema_messages(registry):
    body = copy.deepcopy(EXECUTOR)
    body["authentication"]["config"] = {"token": "x" * 20000, "extra": "another-secret-value"}
    problems = validate_body("Executor", body, registry)
    assert len(problems) >= 1
    for problem in problems:
        assert "xxxx" not in problem.format() and "another-secret-value" not in problem.format()


def test_every_problem_is_reported_not_only_the_first(registry):
    body = workflow(name="x" * 101, surprise=True)
    body["nodes"].append({"id": "lonely", "type": "action", "data": {"actionType": "nope"}})
    body["nodes"][2]["data"]["condition"] = "nodes.score.body.score <"
    body["edges"].append({"source": "hold", "target": "ghost"})
    body["edges"].append({"source": "approve", "target": "score"})
    found = messages(validate_body("Workflow", body, registry, executors={"fraud-check": EXECUTOR}))
    expected_fragments = [
        "$.surprise: unknown field 'surprise'",
        "$.name: 'name' must be 1-100 characters",
        "$.nodes[2].data.condition: invalid expression `nodes.score.body.score <`: Syntax error",
        "$.nodes[5].data.actionType: unknown action type 'nope'",
        "$.nodes[5].id: node 'lonely' is not reachable from the trigger",
        "$.edges[4].target: edge target 'ghost' is not a node id",
        "$.edges[5]: cycle: score -> decide -> approve -> score",
    ]
    for fragment in expected_fragments:
        assert any(line.startswith(fragment) or fragment in line for line in found), (fragment, found)


def test_best_match_picks_the_relevant_branch_of_any_of(registry):
    body = workflow()
    body["nodes"][0]["data"]["verify_token"] = {"$vault": "x"}
    found = messages(validate_body("Workflow", body, registry))
    assert found == ["$.nodes[0].data.verify_token.$vault: unknown field '$vault'"]


def test_node_data_is_checked_by_node_type(registry):
    body = workflow()
    body["nodes"][2]["data"] = {"condition": "true", "executor": "fraud-check"}
    body["nodes"][1]["data"]["timeout"] = 0
    body["nodes"][1]["data"]["headers"] = {"Bad Header": "x"}
    found = messages(validate_body("Workflow", body, registry))
    assert sorted(found) == sorted(
        [
            "$.nodes[1].data.headers: header names must be 1-100 HTTP token characters",
            "$.nodes[1].data.timeout: must be greater than 0",
            "$.nodes[2].data.executor: unknown field 'executor'",
        ]
    )


def test_limits_on_nodes_and_edges(registry):
    nodes = [{"id": "start", "type": "trigger", "data": {"triggerType": "manual"}}]
    nodes += [{"id": f"n{i}", "type": "action", "data": {"actionType": "log", "message": "m"}} for i in range(100)]
    edges = [{"source": "start", "target": f"n{i}"} for i in range(100)] * 3
    found = messages(validate_body("Workflow", workflow(nodes=nodes, edges=edges), registry))
    assert "$.nodes: 'nodes' must be a list of at most 100 items" in found
    assert "$.edges: 'edges' must be a list of at most 200 items" in found


def test_expressions_references_and_variables(registry):
    body = workflow()
    body["nodes"][3]["data"]["output"] = {
        "a": "${{ nodes['score'].body.x + nodes[\"ghost-node\"].y }}",
        "b": "total ${{ workflow.items.map(i, i.price).size() }} for ${{ execution.workflowId }}",
        "c": "${{ secrets.token }}",
        "d": "${{ nodes.score.body.x",
    }
    body["edges"][2]["condition"] = "nodes.missing.ok"
    found = messages(validate_body("Workflow", body, registry))
    assert found == [
        "$.nodes[3].data.output.a: expression `nodes['score'].body.x + nodes[\"ghost-node\"].y` refers to node 'ghost-node', which does not exist",
        "$.nodes[3].data.output.c: expression `secrets.token` uses unknown variable(s) secrets; only workflow, nodes and execution exist",
        found[2],
        "$.edges[2].condition: expression `nodes.missing.ok` refers to node 'missing', which does not exist",
    ]
    assert found[2].startswith("$.nodes[3].data.output.d: unterminated ${{ }} template")


def test_graph_checks(registry):
    body = workflow()
    body["nodes"].append({"id": "start", "type": "trigger", "data": {"triggerType": "manual"}})
    body["nodes"].append({"id": "hook2", "type": "trigger", "data": {"triggerType": "manual"}})
    body["edges"].append({"id": "e1", "source": "hold", "target": "start"})
    body["edges"].append({"source": "hold", "target": "hold"})
    found = messages(validate_body("Workflow", body, registry))
    assert sorted(found) == sorted(
        [
            "$.nodes[5].id: duplicate node id 'start' (first used by nodes[0])",
            "$.nodes[6].type: second trigger node 'hook2': a workflow has exactly one trigger (the first is 'start')",
            "$.edges[4].id: duplicate edge id 'e1' (first used by edges[0])",
            "$.edges[4].target: edge into trigger 'start': a trigger has no incoming edges",
            "$.edges[4]: cycle: start -> score -> decide -> hold -> start",
            "$.edges[5]: cycle: hold -> hold",
        ]
    )


def test_no_trigger_and_missing_branches(registry):
    body = {
        "name": "w",
        "nodes": [
            {"id": "decide", "type": "conditional", "data": {"condition": "true"}},
            {"id": "a", "type": "action", "data": {"actionType": "log", "message": "a"}},
        ],
        "edges": [{"source": "decide", "target": "a", "sourceHandle": "yes"}],
    }
    found = messages(validate_body("Workflow", body, registry))
    assert sorted(found) == sorted(
        [
            "$.nodes: the workflow has no trigger node: it needs exactly one",
            "$.nodes[0]: conditional 'decide' has no 'true' edge (an edge with sourceHandle: \"true\")",
            "$.nodes[0]: conditional 'decide' has no 'false' edge (an edge with sourceHandle: \"false\")",
            '$.edges[0]: edge from conditional \'decide\' needs sourceHandle "true" or "false"',
        ]
    )


def test_trigger_sanity(registry):
    body = workflow()
    body["nodes"][0]["data"] = {"triggerType": "manual", "path": "/x"}
    assert messages(validate_body("Workflow", body, registry)) == [
        "$.nodes[0].data.path: 'path' only applies to webhook triggers"
    ]
    body["nodes"][0]["data"] = {"triggerType": "webhook", "path": "/a/../b", "method": "GET"}
    assert messages(validate_body("Workflow", body, registry)) == [
        "$.nodes[0].data.path: webhook path may not contain '.' or '..' segments"
    ]
    body["nodes"][0]["data"] = {"triggerType": "webhook", "path": "no-slash", "method": "FETCH"}
    assert sorted(messages(validate_body("Workflow", body, registry))) == [
        "$.nodes[0].data.method: 'method' must be one of 'GET', 'POST', 'PUT', 'PATCH', 'DELETE'",
        "$.nodes[0].data.path: 'path' must be a URL path starting with '/' (letters, digits and -._~!$&'()*+,;=:@%/ only)",
    ]


def test_executor_checks(registry):
    body = copy.deepcopy(EXECUTOR)
    body["baseUrl"] = "https://user:pw@example.com"
    body["endpoints"].append({"name": "analyze", "path": "relative", "method": "get"})
    body["authentication"] = {"type": "api_key", "config": {"key": {"$env": "K"}, "location": "cookie"}}
    found = messages(validate_body("Executor", body, registry))
    assert sorted(found) == sorted(
        [
            "$.authentication.config.location: api_key auth config: must be one of 'header', 'query'",
            "$.baseUrl: 'baseUrl' must be an http:// or https:// URL with a host and no query, fragment or credentials",
            "$.endpoints[2].method: 'method' must be one of 'GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS' "
            "(did you mean 'GET'?)",
            "$.endpoints[2].name: duplicate endpoint name 'analyze' (first used by endpoints[0])",
            "$.endpoints[2].path: 'path' must be a path starting with '/', without spaces, query or fragment",
        ]
    )
    body = copy.deepcopy(EXECUTOR)
    body["authentication"] = {"type": "none"}
    assert validate_body("Executor", body, registry) == []


def test_kind_and_body_shape_for_rest(registry):
    assert messages(validate_body("Workflow", ["not", "an", "object"], registry)) == [
        "$: the body must be a JSON object"
    ]
    assert messages(validate_body("Workflow", {**WORKFLOW, "kind": "Executor"}, registry)) == [
        "$.kind: kind must be 'Workflow' here"
    ]
    assert validate_body("Workflow", {**WORKFLOW, "kind": "Workflow"}, registry) == []
    with pytest.raises(ValueError):
        validate_body("Pipeline", WORKFLOW, registry)


def _document(body, kind, source):
    return load_spec_text(json.dumps({"kind": kind, **body}, indent=1), source, from_file=True)


def test_cross_file_checks_duplicate_names_and_webhook_routes(registry):
    first = _document(WORKFLOW, "Workflow", "a.yaml")
    same_name = _document(WORKFLOW, "Workflow", "b.yaml")
    other = workflow(name="other")
    other_document = _document(other, "Workflow", "c.yaml")
    executor = _document(EXECUTOR, "Executor", "ex.yaml")
    executor_again = _document(EXECUTOR, "Executor", "ex2.yaml")
    formatted = [
        p.format() for p in validate_documents([first, same_name, other_document, executor, executor_again], registry)
    ]
    assert "b.yaml:3:10: duplicate workflow name 'payment-approval' (also in a.yaml:3) (at $.name)" in formatted
    assert "ex2.yaml:3:10: duplicate executor name 'fraud-check' (also in ex.yaml:3) (at $.name)" in formatted
    assert any(
        line.startswith("c.yaml:")
        and "webhook POST /payments is also the trigger of workflow 'payment-approval' (a.yaml)" in line
        for line in formatted
    )


def test_reference_executors_resolve_but_are_not_reported(registry):
    broken_executor = copy.deepcopy(EXECUTOR)
    broken_executor["authentication"] = {"type": "kerberos"}
    reference = _document(broken_executor, "Executor", "ref.yaml")
    document = _document(WORKFLOW, "Workflow", "wf.yaml")
    assert validate_documents([document], registry, reference_executors=[reference]) == []
    problems = validate_documents([document], registry)
    assert [p.message for p in problems] == ["unknown executor 'fraud-check' (known: none)"]


def test_spec_error_carries_problems():
    problems = [Problem("a.yaml", 3, 5, ("nodes", 0, "id"), "bad id"), Problem("<request>", None, None, (), "no body")]
    error = SpecError(problems)
    assert error.message == "a.yaml:3:5: bad id (at $.nodes[0].id); <request>: no body"
    assert error.to_dict()["details"][0] == {
        "source": "a.yaml",
        "line": 3,
        "column": 5,
        "path": "$.nodes[0].id",
        "message": "bad id",
    }
    assert error.http_status == 422 and error.exit_code == 1


@pytest.mark.parametrize(
    "suffix, parts",
    [
        ("", ()),
        (".token", ("token",)),
        ("body.items[0].id", ("body", "items", 0, "id")),
        ('["x-y"].z', ("x-y", "z")),
        ("[3]", (3,)),
        (("a", 1), ("a", 1)),
    ],
)
def test_path_suffixes_parse(suffix, parts):
    assert parse_path_suffix(suffix) == parts


def test_json_paths_format():
    assert format_json_path(()) == "$"
    assert format_json_path(("nodes", 2, "data", "X-Header", "$env")) == '$.nodes[2].data["X-Header"].$env'
    assert format_json_path(('a"b',)) == '$["a\\"b"]'


def test_webhook_verify_token_must_be_a_reference_in_files(registry):
    body = workflow()
    body["nodes"][0]["data"]["verify_token"] = "literal-token-value"
    assert validate_body("Workflow", body, registry) == []  # REST: accepted, encrypted at rest
    document = _document(body, "Workflow", "wf.yaml")
    formatted = [p.format() for p in validate_documents([document], registry)]
    assert len(formatted) == 2  # also the unresolved executor
    assert any("secret 'verify_token' must be a reference in a spec file" in line for line in formatted)
    assert all("literal-token-value" not in line for line in formatted)


def test_auth_and_action_types_come_from_the_registry_object():
    from flowker.actions import ActionType
    from flowker.auth.base import AuthType
    from flowker.registry import Registry

    class HmacAuth(AuthType):
        name = "hmac_signature"
        config_schema = {
            "type": "object",
            "additionalProperties": False,
            "required": ["key_id", "secret"],
            "properties": {"key_id": {"type": "string"}, "secret": {"type": "string", "writeOnly": True}},
        }

    class NotifyAction(ActionType):
        name = "notify"
        config_schema = {"type": "object", "required": ["channel"], "properties": {"channel": {"type": "string"}}}

    registry = Registry()
    registry.register_auth_type(HmacAuth())
    registry.register_action_type(NotifyAction())
    executor = copy.deepcopy(EXECUTOR)
    executor["authentication"] = {"type": "hmac_signature", "config": {"key_id": "k1", "secret": {"$env": "S"}}}
    assert validate_body("Executor", executor, registry) == []
    executor["authentication"]["config"] = {"key_id": 5}
    assert sorted(messages(validate_body("Executor", executor, registry))) == [
        "$.authentication.config.key_id: hmac_signature auth config: must be of type string",
        "$.authentication.config: hmac_signature auth config: missing required field 'secret'",
    ]
    assert messages(validate_body("Executor", EXECUTOR, registry)) == [
        "$.authentication.type: unknown auth type 'bearer' (known: hmac_signature)"
    ]
    body = workflow()
    body["nodes"][3]["data"] = {"actionType": "notify", "channel": "#ops"}
    body["nodes"][4]["data"] = {"actionType": "notify"}
    assert messages(validate_body("Workflow", body, registry)) == [
        "$.nodes[4].data: notify action: missing required field 'channel'"
    ]


def test_webhook_signature_auth_in_files(registry):
    """``auth: {type: signature}``: the secret only as a reference in files, ``header`` for
    hmac-sha256 only, and only on webhook triggers; every problem reported at once."""
    body = workflow()
    body["nodes"][0]["data"]["auth"] = {"type": "signature", "scheme": "github", "secret": {"$env": "GH_SECRET"}}
    assert validate_body("Workflow", body, registry) == []
    body["nodes"][0]["data"]["auth"] = {"type": "signature", "scheme": "github", "secret": "literal-signing-secret"}
    assert validate_body("Workflow", body, registry) == []  # REST: accepted, encrypted at rest
    formatted = [p.format() for p in validate_documents([_document(body, "Workflow", "wf.yaml")], registry)]
    assert any("wf.yaml:" in line and "secret 'auth.secret' must be a reference" in line for line in formatted)
    assert all("literal-signing-secret" not in line for line in formatted)
    body["nodes"][0]["data"]["auth"] = {
        "type": "signature",
        "scheme": "github",
        "secret": {"$env": "X"},
        "header": "X-A",
    }
    assert messages(validate_body("Workflow", body, registry)) == [
        "$.nodes[0].data.auth.header: 'header' only applies to scheme hmac-sha256"
    ]
    manual = workflow()
    manual["nodes"][0]["data"] = {
        "triggerType": "manual",
        "auth": {"type": "signature", "scheme": "hmac-sha256", "secret": {"$env": "X"}},
    }
    assert messages(validate_body("Workflow", manual, registry)) == [
        "$.nodes[0].data.auth: 'auth' only applies to webhook triggers"
    ]

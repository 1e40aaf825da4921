"""`flowker validate` and inputSchema: reads of `workflow.<field>` checked statically at
their line and column, "did you mean" for near misses (reads and unknown spec fields),
and the root cause listed first."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from flowker.validation.checks import validate_body
from flowker.validation.input_reads import closed_fields, input_reads
from flowker.validation.suggestions import closest

REPO = Path(__file__).resolve().parents[2]
PAYMENT = REPO / "examples" / "payment-approval"


@pytest.fixture
def payment_copy(tmp_path) -> Path:
    target = tmp_path / "payment-approval"
    shutil.copytree(PAYMENT, target)
    return target / "workflows" / "payment-approval.yaml"


def position_of(text: str, needle: str, occurrence: int = 1) -> tuple[int, int]:
    index = -1
    for _ in range(occurrence):
        index = text.index(needle, index + 1)
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def test_a_misspelt_input_read_is_reported_at_its_line_and_column(run_flowker, payment_copy):
    text = payment_copy.read_text()
    # The second read of workflow.amount (the ledger booking), inside a template.
    line, column = position_of(text, "workflow.amount", occurrence=2)
    payment_copy.write_text(
        text.replace(
            "amount: ${{ workflow.amount }}\n        currency", "amount: ${{ workflow.amout }}\n        currency", 2
        )
    )
    changed = payment_copy.read_text()
    assert changed.count("workflow.amout") == 2
    first_line, first_column = position_of(changed, "workflow.amout")
    result = run_flowker("validate", payment_copy)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith(
        f"{payment_copy}:{first_line}:{first_column}: expression `workflow.amout` reads workflow.amout"
    )
    assert lines[1].startswith(f"{payment_copy}:{line}:{column}: ")
    assert "no field 'amout' (did you mean 'amount'?)" in lines[0]


def test_reads_in_conditions_quoted_strings_and_block_scalars(run_flowker, tmp_path):
    spec = tmp_path / "reads.yaml"
    spec.write_text(
        "kind: Workflow\n"
        "name: reads\n"
        "nodes:\n"
        "  - id: start\n"
        "    type: trigger\n"
        "    data:\n"
        "      triggerType: webhook\n"
        "      path: /reads\n"
        "      method: POST\n"
        "      inputSchema:\n"
        "        type: object\n"
        "        additionalProperties: false\n"
        "        properties:\n"
        "          payer: {type: string}\n"
        "          items: {type: array}\n"
        "          customer:\n"
        "            type: object\n"
        "            additionalProperties: false\n"
        "            properties: {email: {type: string}}\n"
        "          note: {type: object}\n"
        "  - id: check\n"
        "    type: conditional\n"
        '    data: {condition: \'workflow["payre"] == "workflow.nope" && workflow.items.size() > 0\'}\n'
        "  - id: out\n"
        "    type: action\n"
        "    data:\n"
        "      actionType: set_output\n"
        "      output:\n"
        '        quoted: "to ${{ workflow.customer.emial }}"\n'
        "        block: |\n"
        "          from ${{ workflow._webhook.path }} ${{ workflow.note.anything }}\n"
        "          and ${{ workflow.nothere }}\n"
        "  - id: other\n"
        "    type: action\n"
        "    data: {actionType: set_output, output: {x: 1}}\n"
        "edges:\n"
        "  - {source: start, target: check}\n"
        "  - {source: check, target: out, sourceHandle: 'true'}\n"
        "  - {source: check, target: other, sourceHandle: 'false'}\n"
    )
    text = spec.read_text()
    result = run_flowker("validate", spec)
    assert result.returncode == 1
    found = {line.split(": ", 1)[0].split(":", 1)[1]: line for line in result.stdout.splitlines()}
    expected = {
        position_of(text, 'workflow["payre"]'): "no field 'payre' (did you mean 'payer'?)",
        position_of(
            text, "workflow.customer.emial"
        ): "gives workflow.customer no field 'emial' (did you mean 'email'?)",
        position_of(text, "workflow.nothere"): "no field 'nothere' (it has: customer, items, note, payer)",
    }
    assert set(found) == {f"{line}:{column}" for line, column in expected}, result.stdout
    for (line, column), message in expected.items():
        assert message in found[f"{line}:{column}"], found
    # Not reported: a string literal, a method call, _webhook on a webhook trigger, and a
    # field of an open object (note).
    for read in ("workflow.nope", "workflow.items.size", "workflow._webhook", "workflow.note.anything"):
        assert f"reads {read}" not in result.stdout, result.stdout


def workflow_with(schema: dict, expression: str) -> dict:
    return {
        "name": "w",
        "nodes": [
            {"id": "start", "type": "trigger", "data": {"triggerType": "manual", "inputSchema": schema}},
            {"id": "out", "type": "action", "data": {"actionType": "set_output", "output": {"v": expression}}},
        ],
        "edges": [{"source": "start", "target": "out"}],
    }


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object"},  # no properties at all
        {"type": "object", "properties": {"amount": {"type": "number"}}},  # open: more fields may come
        {"type": "object", "properties": {"amount": {}}, "additionalProperties": {"type": "string"}},
        {"$ref": "#/$defs/input", "$defs": {"input": {"type": "object", "additionalProperties": False}}},
        {"type": "object", "additionalProperties": False, "patternProperties": {"^am": {}}},
        {
            "type": "object",
            "unevaluatedProperties": False,
            "allOf": [{"$ref": "#/$defs/base"}],
            "$defs": {"base": {"properties": {"amout": {}}}},
        },
    ],
)
def test_schemas_that_do_not_close_the_input_give_no_false_errors(registry, schema):
    assert validate_body("Workflow", workflow_with(schema, "${{ workflow.amout }}"), registry) == []


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "additionalProperties": False, "properties": {"amount": {}}},
        {"type": "object", "unevaluatedProperties": False, "allOf": [{"properties": {"amount": {}}}]},
    ],
)
def test_closed_schemas_flag_unknown_reads(registry, schema):
    problems = validate_body("Workflow", workflow_with(schema, "${{ workflow.amout }}"), registry)
    assert [p.message for p in problems] == [
        "expression `workflow.amout` reads workflow.amout, but the trigger's inputSchema gives the input "
        "no field 'amout' (did you mean 'amount'?)"
    ]
    assert problems[0].json_path == "$.nodes[1].data.output.v"


def test_closed_fields_and_reads_units():
    assert closed_fields({"properties": {"a": {}}, "additionalProperties": False}) == {"a"}
    assert closed_fields({"properties": {"a": {}}}) is None
    assert list(input_reads('workflow.a.b + workflow["c"] + "workflow.d" + workflow.e.size()')) == [
        ("workflow.a.b", ("a", "b")),
        ('workflow["c"]', ("c",)),
        ("workflow.e", ("e",)),
    ]
    assert list(input_reads("nodes.workflow.x + my_workflow.y")) == []


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("endpiont", "endpoint"),  # a swap
        ("edge", "edges"),  # a deletion
        ("Endpoint", "endpoint"),  # case
        ("amout", "amount"),
        ("pathparams", "pathParams"),
        ("x", None),  # one letter from "y" is no evidence
        ("colour", None),
    ],
)
def test_closest(name, expected):
    candidates = ["endpoint", "edges", "amount", "pathParams", "y", "name"]
    assert closest(name, candidates) == expected


def test_unknown_spec_fields_say_did_you_mean(run_flowker, payment_copy):
    text = payment_copy.read_text().replace("endpoint: analyze", "endpiont: analyze")
    payment_copy.write_text(text)
    result = run_flowker("validate", payment_copy)
    assert result.returncode == 1
    line, column = position_of(text, "endpiont")
    lines = result.stdout.splitlines()
    assert lines[0] == (
        f"{payment_copy}:{line}:{column}: unknown field 'endpiont' (did you mean 'endpoint'?) "
        "(at $.nodes[1].data.endpiont)"
    )
    assert "missing required field 'endpoint' (is 'endpiont' a misspelling of it?)" in lines[1]
    assert len(lines) == 2, lines


def test_renamed_edges_key_puts_the_root_cause_first(run_flowker, payment_copy):
    text = payment_copy.read_text().replace("\nedges:\n", "\nedge:\n")
    payment_copy.write_text(text)
    result = run_flowker("validate", payment_copy)
    assert result.returncode == 1
    line, _ = position_of(text, "\nedge:\n")
    # Before: ten problems, every node "unreachable" and every branch "missing", with
    # `unknown field 'edge'` last. Now the cause, then what it leaves missing.
    assert result.stdout.splitlines() == [
        f"{payment_copy}:{line + 1}:1: unknown field 'edge' (did you mean 'edges'?) (at $.edge)",
        f"{payment_copy}:1:1: missing required field 'edges' (is 'edge' a misspelling of it?)",
    ]


def test_every_problem_is_still_reported_root_causes_first(registry):
    body = workflow_with({"type": "object"}, "${{ nodes.nowhere.x }}")
    body["nodes"][1]["name"] = 5
    body["nodes"][0]["dat"] = body["nodes"][0].pop("data")
    problems = validate_body("Workflow", body, registry)
    messages = [p.message for p in problems]
    assert messages[0] == "unknown field 'dat' (did you mean 'data'?)"
    assert messages[1].startswith("missing required field 'data'")
    assert messages[2] == "'name' must be of type string"
    assert "refers to node 'nowhere'" in messages[3] and len(messages) == 4, messages


@pytest.mark.parametrize(
    "schema",
    [
        {"$ref": "#"},
        {
            "properties": {"a": {"$ref": "#/$defs/x"}},
            "$defs": {"x": {"allOf": [{"$ref": "#/$defs/y"}]}, "y": {"anyOf": [{"$ref": "#/$defs/x"}]}},
        },
    ],
)
def test_an_input_schema_whose_ref_loops_in_place_is_refused(registry, schema):
    problems = validate_body("Workflow", workflow_with(schema, "${{ workflow }}"), registry)
    assert [p.message for p in problems] == [
        "this schema refers back to itself through $ref without descending into the input: applying it would never end"
    ]
    assert problems[0].json_path.startswith("$.nodes[0].data.inputSchema")


def test_recursive_schemas_that_descend_are_fine_and_a_hidden_loop_fails_cleanly(registry):
    from flowker.validation.input_schema import InputValidator

    tree = {
        "$defs": {"node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/node"}}}},
        "$ref": "#/$defs/node",
    }
    assert validate_body("Workflow", workflow_with(tree, "${{ workflow.next }}"), registry) == []
    assert InputValidator(tree).problems({"next": {"next": {"next": 1}}}) == [
        {"path": "/next/next/next", "message": "must be of type object"}
    ]
    # Through an $anchor the static check does not follow: the compiled check sees the
    # loop and decides; jsonschema alone would recurse, and then refuses instead of crashing.
    hidden = InputValidator({"$anchor": "top", "$ref": "#top"})
    assert hidden.problems({}) == []
    hidden.fast = None
    assert hidden.problems({}) == [
        {"path": "", "message": "the trigger's inputSchema could not be applied: a $ref loops"}
    ]


def test_references_that_do_not_resolve(registry):
    from flowker.validation.input_schema import InputValidator

    problems = validate_body("Workflow", workflow_with({"$ref": "#nowhere"}, "${{ workflow }}"), registry)
    assert [p.message for p in problems] == ["$ref '#nowhere' names no $anchor of the schema"]
    # A nested $id moves the base of its references: not modelled statically, refused cleanly at run time.
    nested = InputValidator({"properties": {"a": {"$id": "https://x.example/a", "$ref": "#/$defs/gone"}}})
    assert nested.problems({"a": 1}) == [
        {"path": "", "message": "the trigger's inputSchema could not be applied: a $ref does not resolve"}
    ]


def test_the_compiled_check_decides_accepted_inputs():
    """Each run's input goes through jsonschema_rs (microseconds), not jsonschema (0.5 ms)."""
    from flowker.validation.input_schema import InputValidator

    validator = InputValidator({"type": "object", "required": ["a"], "properties": {"a": {"format": "email"}}})
    assert validator.fast is not None
    assert validator.problems({"a": "x@example.com"}) == []
    assert validator.problems({"a": "nope"}) == [{"path": "/a", "message": "must be a valid email"}]
    # A remote reference is never fetched: both checkers refuse to build or resolve it.
    remote = InputValidator({"properties": {"a": {"$ref": "https://127.0.0.1:9/schema.json"}}})
    assert remote.fast is None
    assert remote.problems({"a": 1})[0]["message"].endswith("a $ref does not resolve")


def test_near_miss_names_and_values_get_the_hint_too(registry):
    body = workflow_with({"type": "object"}, "${{ workflow.a }}")
    body["nodes"][0]["data"]["triggerType"] = "manaul"
    body["nodes"][1]["data"]["actionType"] = "set_ouptut"
    body["nodes"].append({"id": "call", "type": "executor", "data": {"executor": "scorr", "endpoint": "analyze"}})
    body["edges"].append({"source": "out", "target": "call"})
    problems = validate_body("Workflow", body, registry, executors={"scorer": {"endpoints": []}})
    messages = [p.message for p in problems]
    assert "'triggerType' must be one of 'webhook', 'manual', 'schedule' (did you mean 'manual'?)" in messages, messages
    assert any(m.startswith("unknown action type 'set_ouptut' (did you mean 'set_output'?)") for m in messages)
    assert "unknown executor 'scorr' (did you mean 'scorer'?) (known: scorer)" in messages, messages


def test_template_markers_inside_an_input_schema_are_text(registry):
    schema = {"type": "object", "properties": {"note": {"type": "string", "description": "not ${{ an expression"}}}
    assert validate_body("Workflow", workflow_with(schema, "${{ workflow.note }}"), registry) == []

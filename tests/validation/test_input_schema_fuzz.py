"""Any inputSchema a body can carry: the spec check reports problems and never crashes,
and a schema it accepts checks any input without crashing (problems, never a 500)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowker.plugins import load_registry
from flowker.validation.checks import validate_body
from flowker.validation.input_schema import InputValidator

REGISTRY = load_registry()
KEYWORDS = [
    "type",
    "properties",
    "required",
    "additionalProperties",
    "unevaluatedProperties",
    "items",
    "prefixItems",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "if",
    "then",
    "else",
    "$ref",
    "$defs",
    "$anchor",
    "$id",
    "$dynamicRef",
    "enum",
    "const",
    "pattern",
    "patternProperties",
    "format",
    "minimum",
    "maxLength",
    "dependentSchemas",
]
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.sampled_from(["object", "string", "#", "#/$defs/a", "#a", "a", "email", "^a", "[", "https://x.example/s"])
)
schemas = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(KEYWORDS + ["a", "b"]), children, max_size=4)
    ),
    max_leaves=16,
)
inputs = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(["a", "b", "c"]), children),
    max_leaves=10,
)


def workflow(schema) -> dict:
    return {
        "name": "fuzz",
        "nodes": [
            {"id": "start", "type": "trigger", "data": {"triggerType": "manual", "inputSchema": schema}},
            {
                "id": "out",
                "type": "action",
                "data": {"actionType": "set_output", "output": {"v": "${{ workflow.a.b }}"}},
            },
        ],
        "edges": [{"source": "start", "target": "out"}],
    }


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(KEYWORDS + ["a"]), schemas, max_size=5), inputs)
def test_input_schemas_never_crash(schema, instance):
    problems = validate_body("Workflow", workflow(schema), REGISTRY)
    if problems:
        return
    found = InputValidator(schema).problems(instance if isinstance(instance, dict) else {"a": instance})
    assert all(set(problem) == {"path", "message"} for problem in found)

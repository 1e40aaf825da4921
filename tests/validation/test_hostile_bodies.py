"""Validation never crashes on bodies of the wrong shape: it reports problems."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cpu_clock import cpu_seconds
from flowker.plugins import load_registry
from flowker.validation.checks import validate_body

REGISTRY = load_registry()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=12,
)
node_like = st.fixed_dictionaries(
    {},
    optional={
        "id": json_values,
        "type": st.sampled_from(["trigger", "executor", "conditional", "action"]) | json_values,
        "data": json_values,
        "name": json_values,
    },
)
edge_like = st.fixed_dictionaries(
    {},
    optional={
        "source": json_values,
        "target": json_values,
        "sourceHandle": json_values,
        "condition": json_values,
        "id": json_values,
    },
)
workflow_like = st.fixed_dictionaries(
    {"name": json_values},
    optional={
        "nodes": st.lists(node_like, max_size=4) | json_values,
        "edges": st.lists(edge_like, max_size=4) | json_values,
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workflow_like)
def test_any_workflow_shaped_body_gets_problems_not_an_exception(body):
    problems = validate_body("workflow", body, REGISTRY)
    for problem in problems:
        assert problem.format()


def test_an_object_as_node_id_is_a_problem_not_a_crash():
    body = {"name": "x", "nodes": [{"id": {"a": 1}, "type": "trigger", "data": {}}], "edges": []}
    problems = validate_body("workflow", body, REGISTRY)
    assert any("nodes[0].id" in problem.format() or "id" in problem.message for problem in problems)


executor_like = st.fixed_dictionaries(
    {"name": json_values},
    optional={
        "baseUrl": json_values,
        "endpoints": st.lists(
            st.fixed_dictionaries({}, optional={"name": json_values, "path": json_values, "method": json_values}),
            max_size=3,
        )
        | json_values,
        "authentication": st.fixed_dictionaries(
            {}, optional={"type": st.sampled_from(["bearer", "oidc_user", "nope"]) | json_values, "config": json_values}
        )
        | json_values,
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(executor_like)
def test_any_executor_shaped_body_gets_problems_not_an_exception(body):
    for problem in validate_body("executor", body, REGISTRY):
        assert problem.format()


def test_a_body_of_too_many_tiny_values_is_refused_before_schema_validation():
    """300,000 one-byte values fit in 1 MiB; validating each against the schema took seconds."""
    body = {
        "name": "wide",
        "nodes": [
            {"id": "start", "type": "trigger", "data": {"triggerType": "manual"}},
            {"id": "out", "type": "action", "data": {"actionType": "set_output", "output": [1] * 300_000}},
        ],
        "edges": [{"source": "start", "target": "out"}],
    }
    problems, seconds = cpu_seconds(lambda: validate_body("workflow", body, REGISTRY))
    assert seconds < 0.5, seconds
    assert [problem.message for problem in problems] == [
        "the document holds more than 20000 values; at most 20000 are allowed"
    ]

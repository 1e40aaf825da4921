"""Expressions are given only the data they read (flowker.expression_scope): that must never
change a result. Random data and random expressions, evaluated with everything and with
the projection, must agree - same value, or an error both times."""

from __future__ import annotations

import json

import cel
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowker.expression_scope import project, referenced_paths
from flowker.expressions import ExpressionError, compile_condition

KEYS = ["a", "b", "c", "x-y"]
scalars = st.one_of(st.integers(-3, 3), st.sampled_from(["", "a", "b"]), st.booleans(), st.none())
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(KEYS), inner, max_size=3)),
    max_leaves=12,
)
variables = st.fixed_dictionaries(
    {
        "workflow": st.dictionaries(st.sampled_from(KEYS), values, max_size=4),
        "nodes": st.dictionaries(st.sampled_from(KEYS), values, max_size=4),
        "execution": st.just({"id": "e-1", "workflowId": "w-1"}),
    }
)


@st.composite
def paths(draw) -> str:
    text = draw(st.sampled_from(["workflow", "nodes", "execution"]))
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from(KEYS + ["0"]))
        if key == "0":
            text += "[0]"
        elif key == "x-y" or draw(st.booleans()):
            text += f'["{key}"]' if draw(st.booleans()) else f"['{key}']"
        else:
            text += f" . {key}" if draw(st.booleans()) else f".{key}"
    return text


FORMS = [
    "{p}",
    "size({p})",
    "has({p}.a)",
    "{p} == {q}",
    "{p} + {q}",
    "'a' in {p}",
    "{p}[0]",
    "({p}).b",
    "[{p}, {q}].size()",
    "{p}.exists(v, v == 1)",
    "{p}.map(v, v)",
    "type({p}) == map",
    "{p}.size() > 0",
    "nodes[workflow.a]",
    "size(nodes) + size(workflow)",
    "'{p}' + string({q})",
    "{p} != null && {q} == 1",
    "workflow.a.b.c.d",
    "has(nodes.a) ? nodes.a : workflow",
    "{p}.filter(v, v != 1).size()",
]


@st.composite
def expressions(draw) -> str:
    return draw(st.sampled_from(FORMS)).format(p=draw(paths()), q=draw(paths()))


def canonical(value):
    """Lists compared as multisets: CEL iterates a map's keys in no fixed order, so
    ``m.map(k, k)`` may differ in order between two evaluations of the same data (the
    projection passes lists whole, so it cannot reorder one)."""
    if isinstance(value, dict):
        return {key: canonical(item) for key, item in value.items()}
    if isinstance(value, list):
        return sorted(
            (canonical(item) for item in value), key=lambda item: json.dumps(item, sort_keys=True, default=repr)
        )
    return value


def outcome(call):
    try:
        return ("value", canonical(call()))
    except Exception:  # noqa: BLE001 - both sides must fail, however they word it
        return ("error", None)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=expressions(), data=variables)
def test_the_projection_never_changes_a_result(source, data):
    try:
        compiled = compile_condition(source)
    except ExpressionError:
        return  # not valid CEL: nothing to compare
    assert compiled.scope == referenced_paths(source)
    full = outcome(lambda: cel.compile(source).execute(data))
    scoped = outcome(lambda: compiled.evaluate(data))
    assert full == scoped, (source, data, project(data, compiled.scope))


def test_the_projection_passes_only_what_is_read():
    data = {
        "workflow": {"amount": 5, "big": list(range(1000))},
        "nodes": {"score": {"body": {"score": 7}, "x": 1}, "other": {"huge": "x" * 10000}},
        "execution": {"id": "e"},
    }
    scope = referenced_paths('nodes.score.body.score < 80 && workflow.amount > 1 && nodes["score"].x == 1')
    assert project(data, scope) == {"nodes": {"score": {"body": {"score": 7}, "x": 1}}, "workflow": {"amount": 5}}
    assert project(data, referenced_paths("size(nodes) > 0")) == {"nodes": data["nodes"]}
    assert project(data, referenced_paths("1 + 2")) == {}

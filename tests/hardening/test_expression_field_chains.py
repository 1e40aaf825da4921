"""Field chains (`workflow.a.b`) are read with dict lookups instead of a CEL evaluation
(flowker.expressions.CompiledExpression.path). That must never change a result: random
data and random chains, evaluated through the lookup and through CEL alone, must give
the same value and type, or the same error."""

from __future__ import annotations

import dataclasses

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowker.expressions import EvaluationBudget, ExpressionError, Variables, compile_condition

KEYS = ["a", "b", "body", "score"]
scalars = st.one_of(
    st.integers(-(2**65), 2**65),
    st.sampled_from([0, 1, -1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63)]),
    st.floats(allow_nan=False),
    st.text(max_size=5),
    st.booleans(),
    st.none(),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(KEYS), inner, max_size=3)),
    max_leaves=10,
)
variables = st.fixed_dictionaries(
    {
        "workflow": st.dictionaries(st.sampled_from(KEYS), values, max_size=4),
        "nodes": st.dictionaries(st.sampled_from(KEYS), values, max_size=4),
        "execution": st.just({"id": "e-1", "workflowId": "w-1"}),
    }
)
chains = st.builds(
    lambda root, names, spaced: (" . " if spaced else ".").join([root, *names]),
    st.sampled_from(["workflow", "nodes", "execution"]),
    st.lists(st.sampled_from(KEYS + ["id"]), min_size=1, max_size=4),
    st.booleans(),
)


def typed(value):
    """``value`` with every type spelled out and map keys sorted (CEL's maps are unordered)."""
    if isinstance(value, dict):
        return ("dict", sorted((key, typed(item)) for key, item in value.items()))
    if isinstance(value, list):
        return ("list", [typed(item) for item in value])
    return (type(value).__name__, repr(value))


def outcome(expression, data):
    try:
        value = expression.evaluate(data)
    except ExpressionError as exc:
        return ("error", exc.message)
    return ("value", typed(value))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=chains, data=variables)
def test_a_field_chain_reads_what_cel_reads(source, data):
    fast = compile_condition(source)
    assert fast.path is not None, source
    cel_only = dataclasses.replace(fast, path=None)
    assert outcome(fast, data) == outcome(cel_only, data)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    root=st.sampled_from(["workflow", "nodes"]),
    names=st.lists(st.sampled_from(KEYS), min_size=1, max_size=4),
    value=values,
    data=variables,
)
def test_a_field_chain_that_reaches_a_value_reads_what_cel_reads(root, names, value, data):
    target = data[root]
    for name in names[:-1]:
        target = target.setdefault(name, {})
        if not isinstance(target, dict):
            return  # a scalar on the way: the other test covers chains that stop early
    target[names[-1]] = value
    fast = compile_condition(".".join([root, *names]))
    assert outcome(fast, data) == outcome(dataclasses.replace(fast, path=None), data)


def test_only_plain_field_chains_take_the_lookup():
    assert compile_condition("workflow.orderId").path == ("workflow", "orderId")
    assert compile_condition(" nodes . score . body ").path == ("nodes", "score", "body")
    for source in [
        "workflow",
        'nodes["x"].y',
        "workflow.a + 1",
        "workflow.a.size()",
        "workflow.a[0]",
        "has(workflow.a)",
        "workflow.a == nodes.b",
    ]:
        assert compile_condition(source).path is None, source


def test_a_spent_budget_fails_a_field_chain_too():
    budget = EvaluationBudget(0.5)
    data = Variables({"workflow": {"a": 1}, "nodes": {}, "execution": {}}, budget)
    expression = compile_condition("workflow.a")
    assert expression.evaluate(data) == 1
    budget.spent = 1.0
    try:
        expression.evaluate(data)
    except ExpressionError as exc:
        assert "more than 0.5 s of CPU" in exc.message
    else:
        raise AssertionError("a spent budget must fail the evaluation")

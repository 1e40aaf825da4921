"""The evaluator processes (flowker.expression_sandbox) and the static shape limits
(flowker.expression_limits), without the API: the memory limit, the CPU budget enforced
while an evaluation runs, the result cap, replacement after a kill, a fork, and close."""

from __future__ import annotations

import os
import threading
import time

import pytest

from flowker.errors import OutputTooLargeError
from flowker.expression_limits import needs_isolation, shape, shape_problem
from flowker.expression_sandbox import ExpressionSandbox
from flowker.expressions import (
    EvaluationBudget,
    ExpressionBudgetExceeded,
    ExpressionError,
    ExpressionMemoryExceeded,
    Variables,
    compile_condition,
)

MIB = 1024 * 1024


@pytest.fixture
def sandbox():
    pool = ExpressionSandbox()
    yield pool
    pool.close()


def variables(sandbox, seconds: float = 1.0, max_result_bytes: int = MIB, **workflow) -> Variables:
    budget = EvaluationBudget(
        seconds, sandbox=sandbox, deadline=time.monotonic() + 60, max_result_bytes=max_result_bytes
    )
    return Variables({"workflow": workflow, "nodes": {}, "execution": {"id": "e1"}}, budget)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# -------------------------------------------------------------------------- static shape


def test_nesting_and_count_are_read_outside_string_literals():
    assert shape("workflow.l.all(x, workflow.m.exists(y, y == x))").nesting == 2
    assert shape("'.all(.all(.all(.all(' + workflow.a").comprehensions == 0
    assert shape("l.map(x, x).map(y, y).filter(z, z > 0)").nesting == 1
    assert shape_problem("l.all(a, l.all(b, l.all(c, l.all(d, true))))") == (
        "comprehensions (all, exists, exists_one, map, filter) may be nested at most 3 deep",
        30,
    )
    nine = ".".join(["l"] + ["map(x, x)"] * 9)
    message, column = shape_problem(nine)
    assert "at most 8 comprehensions" in message and column == nine.rindex("map") + 1


def test_only_expressions_whose_shape_does_not_bound_their_cost_leave_the_worker():
    for cheap in [
        "workflow.a",
        "workflow.a + 1",
        "nodes.x.body.score > 10 && has(workflow.b)",
        "workflow.s + workflow.s + workflow.s",
        "'.map(' + workflow.a",
    ]:
        assert not needs_isolation(cheap), cheap
        assert not compile_condition(cheap).isolated
    assert not needs_isolation("workflow.s == 'matches(x)'")
    for costly in ["workflow.l.exists(x, x == 1)", " + ".join(["workflow.s"] * 9), "workflow.s.matches(workflow.p)"]:
        assert needs_isolation(costly), costly
        assert compile_condition(costly).isolated


# -------------------------------------------------------------------------- the limits


def test_the_memory_limit_stops_an_allocating_expression_and_the_evaluator_is_replaced(sandbox):
    source = "workflow.s"
    for level in range(8):
        source = f"[{source}].map(a{level}, {' + '.join([f'a{level}'] * 8)})[0]"
    expression = compile_condition(f"size({source})")
    data = variables(sandbox, seconds=30.0, s="x" * 1024)
    started = time.monotonic()
    with pytest.raises(ExpressionMemoryExceeded) as raised:
        expression.evaluate(data)
    assert raised.value.code == "FLK-0107" and "256 MiB" in raised.value.message
    assert time.monotonic() - started < 10
    replacement = sandbox.processes
    assert len(replacement) == 1 and alive(replacement[0])
    assert compile_condition("workflow.l.map(x, x * 2)").evaluate(variables(sandbox, l=[1, 2])) == [2, 4]


def test_the_cpu_budget_stops_an_evaluation_while_it_runs(sandbox):
    expression = compile_condition("workflow.l.all(x, workflow.l.all(y, x + y >= 0))")
    data = variables(sandbox, seconds=0.5, l=list(range(3000)))
    compile_condition("workflow.l.exists(x, x == 0)").evaluate(data)  # the evaluator started
    started = time.monotonic()
    with pytest.raises(ExpressionBudgetExceeded) as raised:
        expression.evaluate(data)
    assert raised.value.code == "FLK-0106"
    assert time.monotonic() - started < 3.0  # 0.5 s of CPU, on a machine other tests share
    with pytest.raises(ExpressionBudgetExceeded):  # the budget is spent: the next one fails at once
        compile_condition("workflow.l.exists(x, x == 1)").evaluate(data)


def test_a_result_past_the_cap_is_refused_in_the_evaluator(sandbox):
    expression = compile_condition("workflow.l.map(x, workflow.s)")
    with pytest.raises(OutputTooLargeError) as raised:
        expression.evaluate(variables(sandbox, max_result_bytes=10000, l=list(range(20)), s="s" * 1000))
    assert raised.value.code == "FLK-0512"
    assert expression.evaluate(variables(sandbox, l=[1], s="ok")) == ["ok"]


def test_evaluation_errors_read_as_in_the_worker(sandbox):
    with pytest.raises(ExpressionError) as raised:
        compile_condition("workflow.l.all(x, x.missing == 1)").evaluate(variables(sandbox, l=[{"a": 1}]))
    assert raised.value.code == "FLK-0105" and "missing" in raised.value.message


def test_threads_share_the_pool(sandbox):
    expression = compile_condition("workflow.l.filter(x, x % 2 == 0).size()")
    answers, errors = [], []

    def evaluate():
        try:
            answers.append(expression.evaluate(variables(sandbox, l=list(range(100)))))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=evaluate) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == [] and answers == [50] * 6
    assert 1 <= len(sandbox.processes) <= 4


# -------------------------------------------------------------------------- processes


def test_a_forked_process_starts_its_own_evaluator(sandbox):
    """As in a gunicorn worker forked after the pool was made (and even after it started
    an evaluator): the child must not talk to its parent's evaluator."""
    expression = compile_condition("workflow.l.exists(x, x == 2)")
    assert expression.evaluate(variables(sandbox, l=[1, 2])) is True
    parent_evaluators = sandbox.processes
    pid = os.fork()
    if pid == 0:  # the child: exit code 0 when its own evaluator answered
        code = 1
        try:
            ok = expression.evaluate(variables(sandbox, l=[2])) is True
            mine = sandbox.processes
            code = 0 if ok and mine and not set(mine) & set(parent_evaluators) else 2
            sandbox.close()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert sandbox.processes == parent_evaluators and all(alive(p) for p in parent_evaluators)
    assert expression.evaluate(variables(sandbox, l=[2])) is True


def test_close_stops_the_evaluators(sandbox):
    assert sandbox.processes == []  # nothing starts before the first evaluation
    compile_condition("workflow.l.exists(x, x == 2)").evaluate(variables(sandbox, l=[2]))
    pids = sandbox.processes
    assert pids and all(alive(p) for p in pids)
    sandbox.close()
    assert sandbox.processes == [] and not any(alive(p) for p in pids)
    with pytest.raises(ExpressionError):
        compile_condition("workflow.l.exists(x, x == 2)").evaluate(variables(sandbox, l=[2]))

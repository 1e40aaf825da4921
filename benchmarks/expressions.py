"""What an expression costs in the worker and in an evaluator process.

    .venv/bin/python benchmarks/expressions.py [--evaluations 2000]

Prints, per expression, the wall time of one evaluation (median and p99 over
``--evaluations``) in the calling thread (as plain expressions run) and through
:class:`flowker.expression_sandbox.ExpressionSandbox` (as comprehensions run), and
the time an evaluator process takes to start (once per worker).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flowker.expression_sandbox import ExpressionSandbox
from flowker.expressions import EvaluationBudget, Variables, compile_condition

EXPRESSIONS = (
    "workflow.orderId",
    "workflow.amount + 1",
    "workflow.items.exists(i, i.sku == 'b-2')",
    "workflow.items.map(i, i.qty * 2)",
)
INPUT = {"orderId": "o-1", "amount": 120, "items": [{"sku": f"b-{n}", "qty": n} for n in range(10)]}


def timed(evaluate, count: int) -> tuple[float, float]:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        evaluate()
        samples.append((time.perf_counter() - started) * 1000.0)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evaluations", type=int, default=2000)
    options = parser.parse_args()
    sandbox = ExpressionSandbox()
    try:
        started = time.perf_counter()
        compile_condition("workflow.items.exists(i, true)").evaluate(
            Variables(
                {"workflow": INPUT, "nodes": {}, "execution": {}},
                EvaluationBudget(60.0, sandbox=sandbox, deadline=time.monotonic() + 60),
            )
        )
        print(f"first isolated evaluation (starts the evaluator): {(time.perf_counter() - started) * 1000:.0f} ms")
        for source in EXPRESSIONS:
            expression = compile_condition(source)
            for where, pool in (("in the worker", None), ("in an evaluator", sandbox)):
                if pool is not None and not expression.isolated:
                    continue  # plain expressions never leave the worker
                budget = EvaluationBudget(3600.0, sandbox=pool, deadline=time.monotonic() + 3600)
                data = Variables({"workflow": INPUT, "nodes": {}, "execution": {}}, budget)
                p50, p99 = timed(
                    lambda expression=expression, data=data: expression.evaluate(data), options.evaluations
                )
                print(f"{source:45s} {where:16s} p50={p50:.3f} ms  p99={p99:.3f} ms")
    finally:
        sandbox.close()


if __name__ == "__main__":
    main()

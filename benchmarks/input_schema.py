"""Cost of checking one run's input against its trigger's inputSchema (DESIGN §12), as a
run start pays it: the order-fulfilment example's schema (7 fields, nested objects and a
list of items) and its scenario input.

    .venv/bin/python benchmarks/input_schema.py [--checks 2000]

Prints microseconds per check (median of 5 rounds) for an accepted input through
``InputValidator`` (jsonschema_rs decides), the same through ``jsonschema`` alone (what it
would cost without the compiled check), their ratio, and a refused input (jsonschema
words every problem), with the load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GOOD = {
    "orderId": "o-1",
    "total": 1500,
    "currency": "EUR",
    "shipping": "express",
    "address": {"city": "Berlin"},
    "payment": {"cardToken": "tok_ok"},
    "items": [{"sku": "A-1", "quantity": 2}, {"sku": "B-7", "quantity": 1}],
}
BAD = {"orderId": "", "total": -1, "currency": "euro", "items": [{"sku": "A-1", "quantity": 0}]}


def measure(check, count: int) -> float:
    rounds = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(count):
            check()
        rounds.append((time.perf_counter() - started) / count * 1e6)
    return statistics.median(rounds)


def main() -> None:
    from flowker.validation.input_schema import InputValidator, trigger_input_schema
    from flowker.validation.loader import load_spec_file

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=2000, help="checks per round")
    count = parser.parse_args().checks
    workflow = load_spec_file(REPO / "examples" / "order-fulfilment" / "workflows" / "order-fulfilment.yaml")
    found = trigger_input_schema(workflow.body)
    assert found is not None
    validator = InputValidator(found[1])
    assert validator.problems(GOOD) == [] and len(validator.problems(BAD)) >= 5
    fast = measure(lambda: validator.problems(GOOD), count)
    slow = measure(lambda: list(validator.validator.iter_errors(GOOD)), max(1, count // 10))
    refused = measure(lambda: validator.problems(BAD), max(1, count // 10))
    print(f"accepted input, InputValidator (jsonschema_rs): {fast:.1f} us")
    print(f"accepted input, jsonschema alone:              {slow:.1f} us ({slow / fast:.0f}x)")
    print(f"refused input, every problem worded:           {refused:.1f} us")
    print(f"load average: {' '.join(f'{value:.1f}' for value in os.getloadavg())}")


if __name__ == "__main__":
    main()

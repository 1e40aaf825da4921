"""``flowker test``: the examples' test files, and cases per second on a 100-case file.

    .venv/bin/python -m benchmarks.workflow_tests [--cases 100] [--rounds 5]

1. ``flowker test examples/`` in a subprocess, as a pre-commit hook or CI step runs it:
   the wall time includes the interpreter's start and the plugin registry.
2. A generated file of ``--cases`` cases for a payment workflow (fraud scoring with a
   bearer token, a CEL conditional, a ledger call; one case in four retries a 503 with
   the default 1 s base wait, on virtual time) next to its workflow and executors:
   ``flowker test`` on it in a subprocess (wall time, and the cases' own time from its
   summary line), then the same cases run ``--rounds`` times in this process through
   :class:`flowker.runner.workflow_tests.harness.TestSuite` (cases per second, per-case
   p50/p99). Target: at least 200 cases/s, so a test run stays a pre-commit-speed check.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_CASES_PER_SECOND = 200.0

WORKFLOW = """\
kind: Workflow
name: bench-payment
nodes:
  - {id: start, type: trigger, data: {triggerType: manual}}
  - id: score
    type: executor
    data:
      executor: fraud
      endpoint: analyze
      body: {transactionId: "${{ workflow.id }}", amount: "${{ workflow.amount }}"}
  - {id: decide, type: conditional, data: {condition: "nodes.score.body.score < 80"}}
  - id: book
    type: executor
    data: {executor: ledger, endpoint: book, body: {transactionId: "${{ workflow.id }}"}}
  - id: approve
    type: action
    data: {actionType: set_output, output: {decision: APPROVED, booking: "${{ nodes.book.body.bookingId }}"}}
  - {id: hold, type: action, data: {actionType: set_output, output: {decision: HOLD}}}
edges:
  - {source: start, target: score}
  - {source: score, target: decide}
  - {source: decide, target: book, sourceHandle: "true"}
  - {source: book, target: approve}
  - {source: decide, target: hold, sourceHandle: "false"}
"""

EXECUTORS = {
    "fraud.yaml": """\
kind: Executor
name: fraud
baseUrl: https://fraud.example.com
endpoints: [{name: analyze, path: /v1/analyze, method: POST}]
authentication: {type: bearer, config: {token: {$env: FRAUD_TOKEN}}}
""",
    "ledger.yaml": """\
kind: Executor
name: ledger
baseUrl: https://ledger.example.com
endpoints: [{name: book, path: /v1/bookings, method: POST}]
authentication: {type: api_key, config: {key: {$env: LEDGER_KEY}, header_name: X-Ledger-Key}}
""",
}


def case_text(number: int) -> str:
    approved = number % 2 == 0
    score = 10 + number % 60 if approved else 80 + number % 20
    lines = [
        f"  - name: case {number}",
        f"    input: {{id: t-{number}, amount: {number * 3 + 1}}}",
        "    fixtures:",
        "      - call: fraud.analyze",
        f"        match: {{headers: {{Authorization: Bearer bench-token}}, body: {{transactionId: t-{number}}}}}",
        f"        respond: {{body: {{score: {score}}}}}",
    ]
    if approved:
        booking = f"{{status: 200, body: {{bookingId: b-{number}}}}}"
        respond = f"[{{status: 503}}, {booking}]" if number % 4 == 0 else booking
        lines += ["      - call: ledger.book", f"        respond: {respond}"]
        attempts = 2 if number % 4 == 0 else 1
        lines += [
            "    expect:",
            f"      output: {{decision: APPROVED, booking: b-{number}}}",
            f"      steps: {{book: {{status: completed, attempts: {attempts}}}, hold: skipped}}",
        ]
    else:
        lines += ["    expect:", "      output: {decision: HOLD}", "      calls: {ledger.book: 0}"]
    return "\n".join(lines)


def generate(folder: Path, cases: int) -> Path:
    for name in ("workflows", "executors", "tests"):
        (folder / name).mkdir(parents=True)
    (folder / "workflows" / "bench-payment.yaml").write_text(WORKFLOW)
    for name, text in EXECUTORS.items():
        (folder / "executors" / name).write_text(text)
    header = "kind: WorkflowTest\nworkflow: bench-payment\nsecrets: {FRAUD_TOKEN: bench-token}\ncases:\n"
    test_file = folder / "tests" / "bench-payment.test.yaml"
    test_file.write_text(header + "\n".join(case_text(n) for n in range(cases)) + "\n")
    return test_file


def run_cli(*args: str) -> tuple[float, int, str]:
    began = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-m", "flowker", "test", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    seconds = time.perf_counter() - began
    summary = next((line for line in completed.stdout.splitlines() if " cases: " in line or " case: " in line), "")
    return seconds, completed.returncode, summary


def in_process(folder: Path, rounds: int) -> tuple[list[float], float]:
    """(wall seconds per case, every case of every round after one warm-up round; the
    CPU seconds this process used for those rounds)."""
    from flowker.plugins import load_registry
    from flowker.runner.workflow_tests.cases import read_test_file
    from flowker.runner.workflow_tests.harness import TestSuite
    from flowker.settings import Settings
    from flowker.validation.loader import find_spec_files, load_spec_file

    settings = Settings()
    documents = [load_spec_file(path) for path in find_spec_files(folder)]
    suite = TestSuite(settings, load_registry(settings), documents)
    test_file = read_test_file(suite.test_files[0])
    timings = []
    cpu_started = 0.0
    for round_number in range(rounds + 1):
        if round_number == 1:
            cpu_started = time.process_time()
        for case in test_file.cases:
            began = time.perf_counter()
            result = suite.run_case(test_file, case)
            elapsed = time.perf_counter() - began
            if not result.passed:
                raise SystemExit(f"case {case.name!r} failed: {result.failures}")
            if round_number:
                timings.append(elapsed)
    return timings, time.process_time() - cpu_started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)

    seconds, code, summary = run_cli("examples", "--coverage")
    print(f"flowker test examples/ (subprocess): {seconds:.2f} s wall, exit {code}: {summary}")

    with tempfile.TemporaryDirectory(prefix="flowker-bench-tests-") as scratch:
        folder = Path(scratch)
        test_file = generate(folder, args.cases)
        seconds, code, summary = run_cli(str(test_file))
        inside = re.search(r", ([0-9.]+) s\)", summary)
        cases_seconds = float(inside.group(1)) if inside else float("nan")
        print(
            f"flowker test on {args.cases} cases (subprocess): {seconds:.2f} s wall, exit {code}; "
            f"the cases took {cases_seconds:.2f} s ({args.cases / cases_seconds:.0f} cases/s): {summary}"
        )
        timings, cpu_seconds = in_process(folder, args.rounds)
    total = sum(timings)
    rate = len(timings) / total
    ordered = sorted(timings)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    verdict = "met" if rate >= TARGET_CASES_PER_SECOND else "NOT met"
    cpu_rate = len(timings) / cpu_seconds if cpu_seconds else float("nan")
    print(
        f"in process, {args.rounds} rounds of {args.cases} cases: {rate:.0f} cases/s "
        f"(p50 {statistics.median(timings) * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms per case); "
        f"target >= {TARGET_CASES_PER_SECOND:.0f} cases/s: {verdict} ({rate / TARGET_CASES_PER_SECOND:.1f}x); "
        f"{cpu_rate:.0f} cases per CPU second ({cpu_seconds * 1000 / len(timings):.2f} ms CPU per case, "
        "what the rate would be with a core to itself)"
    )
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

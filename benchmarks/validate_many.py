"""``flowker validate`` over 1,000 spec files, timed as CI would run it.

    .venv/bin/python -m benchmarks.validate_many [--files 1000]

The files are generated into a temporary folder laid out like a team's repository:
``executors/`` (one in ten files: an endpoint set and bearer auth from ``$env``) and
``workflows/`` (webhook trigger, an executor call, a CEL conditional, two outputs; each
referring to one of the executors). One ``flowker validate <folder>`` process checks
them all (schema, auth configs, expressions, graph, executor and endpoint names); the
wall time includes the interpreter's start, as a pre-commit hook or CI step sees it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

EXECUTOR = """\
kind: Executor
name: {name}
description: Scoring service {number}
baseUrl: https://scoring-{number}.example.com
endpoints:
  - {{name: analyze, path: /v1/transactions/analyze, method: POST, timeout: 30}}
  - {{name: get-case, path: "/v1/cases/{{caseId}}", method: GET}}
authentication:
  type: bearer
  config:
    token: {{$env: SCORING_TOKEN_{number}}}
"""

WORKFLOW = """\
kind: Workflow
name: {name}
description: Score a payment and approve or hold it ({number})
nodes:
  - id: start
    type: trigger
    data: {{triggerType: webhook, path: /payments/{number}, method: POST}}
  - id: score
    type: executor
    data:
      executor: {executor}
      endpoint: analyze
      body:
        transactionId: ${{{{ workflow.transactionId }}}}
        amount: ${{{{ workflow.amount }}}}
  - id: decide
    type: conditional
    data: {{condition: "nodes.score.body.score < {threshold}"}}
  - id: approve
    type: action
    data: {{actionType: set_output, output: {{decision: APPROVED, score: "${{{{ nodes.score.body.score }}}}"}}}}
  - id: hold
    type: action
    data: {{actionType: set_output, output: {{decision: HOLD}}}}
edges:
  - {{source: start, target: score}}
  - {{source: score, target: decide}}
  - {{source: decide, target: approve, sourceHandle: "true"}}
  - {{source: decide, target: hold, sourceHandle: "false"}}
"""


@dataclass
class ValidateResult:
    files: int
    seconds: float
    exit_code: int
    summary: str

    @property
    def files_per_second(self) -> float:
        return self.files / self.seconds if self.seconds else 0.0


def generate(folder: Path, files: int) -> None:
    executors = max(1, files // 10)
    (folder / "executors").mkdir(parents=True)
    (folder / "workflows").mkdir(parents=True)
    for number in range(executors):
        (folder / "executors" / f"scoring-{number}.yaml").write_text(
            EXECUTOR.format(name=f"scoring-{number}", number=number)
        )
    for number in range(files - executors):
        (folder / "workflows" / f"payment-{number}.yaml").write_text(
            WORKFLOW.format(
                name=f"payment-approval-{number}",
                number=number,
                executor=f"scoring-{number % executors}",
                threshold=50 + number % 50,
            )
        )


def run(files: int = 1000, timeout: float = 300.0) -> ValidateResult:
    with tempfile.TemporaryDirectory(prefix="flowker-bench-validate-") as scratch:
        folder = Path(scratch) / "specs"
        generate(folder, files)
        began = time.perf_counter()
        completed = subprocess.run(
            [sys.executable, "-m", "flowker", "validate", str(folder)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        seconds = time.perf_counter() - began
    lines = (completed.stdout + completed.stderr).strip().splitlines()
    return ValidateResult(
        files=files, seconds=seconds, exit_code=completed.returncode, summary=lines[-1] if lines else ""
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=1000)
    args = parser.parse_args(argv)
    result = run(args.files)
    print(
        f"flowker validate: {result.files} files in {result.seconds:.2f} s ({result.files_per_second:.0f} files/s), "
        f"exit {result.exit_code}: {result.summary}"
    )
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())

"""What recording one REST execution's metrics costs, in multiprocess mode (``flowker serve``).

    .venv/bin/python -m benchmarks.metric_writes [--executions 20000] [--callgrind]

Records, through the same :class:`flowker.observability.metrics.Metrics` methods the runner,
the audit log and the API call, what one synchronous 3-node REST execution records (the
REST benchmark's workflow: trigger, one executor call, set_output): the HTTP request, three
settled steps, one executor attempt and its retries, the breaker's state, two audit
appends and the execution's end; about 15 values for the memory-mapped files of a fresh
multiprocess directory, written in batches by the process's flusher thread. Prints the CPU
time per execution (``time.process_time``, every thread's: the flusher's included, best of
5 rounds); ``--callgrind`` also counts instructions per execution under valgrind (N and 2N
executions in two processes: the difference divided by N, startup cancelled; all threads),
and the same for the same calls on a disabled ``Metrics``: what recording adds to them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
CHILD_FLAG = "--child"
OFF_FLAG = "--off"  # the same calls on Metrics.disabled(): what the calls cost without recording
WORKFLOW = "bench-rest"


def one_execution(metrics) -> None:
    """One REST execution's metric writes, in the order the service makes them."""
    metrics.step_settled(WORKFLOW, "trigger", "succeeded")
    metrics.breaker_state("bench-stub", "closed")  # told after every guarded call
    metrics.step_settled(WORKFLOW, "call", "succeeded")
    metrics.executor_attempt("bench-stub", "score", "success", 0.0021)
    metrics.executor_retries("bench-stub", 0)
    metrics.step_settled(WORKFLOW, "set_output", "succeeded")
    metrics.audit_appended(1)  # execution started
    metrics.execution_ended(WORKFLOW, "succeeded", 0.0043)
    metrics.audit_appended(2)  # execution and steps ended
    metrics.http_request("POST", "/v1/workflows/{workflow_id}/executions", 201, 0.0062)


def recording_metrics(folder: str):
    """A process's Metrics, recording into the multiprocess directory ``folder``."""
    from flowker.observability.metrics import Metrics, join_metrics_directory

    join_metrics_directory(folder)
    return Metrics.from_settings(SimpleNamespace(metrics=True))


def run(executions: int, enabled: bool = True) -> None:
    from flowker.observability.metrics import Metrics

    folder = tempfile.mkdtemp(prefix="flowker-metric-writes-")
    try:
        metrics = recording_metrics(folder) if enabled else Metrics.disabled()
        for _ in range(executions):
            one_execution(metrics)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def seconds_per_execution(executions: int, rounds: int = 5) -> float:
    folder = tempfile.mkdtemp(prefix="flowker-metric-writes-")
    try:
        metrics = recording_metrics(folder)
        for _ in range(100):  # children made, files grown
            one_execution(metrics)
        best = float("inf")
        for _ in range(rounds):
            started = time.process_time()
            for _ in range(executions):
                one_execution(metrics)
            best = min(best, time.process_time() - started)
        return best / executions
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def instructions(executions: int, enabled: bool = True) -> int:
    """Instructions callgrind counted for one process recording ``executions`` (startup included)."""
    from benchmarks.load_tools import callgrind_instructions

    arguments = ["-m", "benchmarks.metric_writes", CHILD_FLAG, str(executions)] + ([] if enabled else [OFF_FLAG])
    return callgrind_instructions(arguments, ROOT)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--executions", type=int, default=20000, help="executions per timed round")
    parser.add_argument("--callgrind", action="store_true", help="also count instructions under valgrind")
    parser.add_argument("--callgrind-executions", type=int, default=2000, help="N (and 2N) under valgrind")
    parser.add_argument(CHILD_FLAG, type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument(OFF_FLAG, action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        run(args.child, enabled=not args.off)
        return 0
    per_execution = seconds_per_execution(args.executions)
    print(f"metric writes of one REST execution: {per_execution * 1e6:.2f} µs CPU (best of 5 x {args.executions})")
    if args.callgrind:
        if shutil.which("valgrind") is None:
            raise SystemExit("valgrind is not installed (apt-get install valgrind)")
        few = args.callgrind_executions
        recorded = (instructions(2 * few) - instructions(few)) / few
        calls_only = (instructions(2 * few, enabled=False) - instructions(few, enabled=False)) / few
        print(
            f"instructions per execution (callgrind, {2 * few} - {few} executions): {recorded:,.0f}; "
            f"the same calls with metrics off {calls_only:,.0f}; added by recording {recorded - calls_only:,.0f}"
        )
    return 0


if __name__ == "__main__":
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    sys.exit(main())

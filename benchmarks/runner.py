"""Runner overhead per step, audit entries included, on SQLite (target p50 <= 0.5 ms, p99 <= 3 ms).

    .venv/bin/python benchmarks/runner.py [--executions 300] [--database sqlite:///...]

Two 10-step workflows run through the real ExecutionService (start + run, every step
row and its audit entries committed):

* ``actions``: a trigger, 8 ``transform`` steps with CEL expressions and a ``set_output``;
* ``executors``: a trigger, 4 executor steps calling a stub service on 127.0.0.1 and
  5 action steps. The time inside the HTTP transport is subtracted
  (``CallResult.transport_ms``: ``requests``' ``session.request`` - the hardened
  session's adapter, the auth object, the socket, the server - and reading the body),
  leaving the engine's own work: the executor lookup and its secrets, templates, URL and
  header preparation, the breaker, retries' bookkeeping, parsing the answer, recording
  the step with its 3 audit entries. (Until this was changed the whole
  ``ExecutorClient.call`` was subtracted, which hid ~0.2 ms of engine work per call.)

The stub is the REST benchmark's (``benchmarks/api.py``): its own process, asyncio,
keep-alive, a fixed JSON answer. A stub in a thread of this process would hold the GIL
when the runner's thread wants it back after each SQLite call, and that wait would be
counted as the engine's.

A step's cost is an execution's wall time (``start`` + ``run``: every commit, audit
append, expression and lease update) minus the time inside HTTP calls, divided by its
10 steps; p50/p99/max are over executions. Executions/s is end to end, calls included.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.api import start_stub  # noqa: E402
from flowker.audit.chain import SYSTEM_ACTOR  # noqa: E402
from flowker.plugins import load_registry  # noqa: E402
from flowker.runner.service import ExecutionService  # noqa: E402
from flowker.settings import Settings  # noqa: E402
from flowker.runtime import Runtime  # noqa: E402
from flowker.storage.migrations import upgrade  # noqa: E402
from flowker.storage.models import Executor, Workflow, WorkflowVersion  # noqa: E402

TOKEN_VARIABLE = "BENCHMARK_RUNNER_TOKEN"


def actions_workflow() -> dict:
    nodes = [{"id": "start", "type": "trigger", "data": {"triggerType": "manual"}}]
    edges, previous = [], "start"
    for index in range(8):
        node_id = f"t{index}"
        source = "workflow.amount" if index == 0 else f"nodes.{previous}.amount"
        nodes.append(
            {
                "id": node_id,
                "type": "action",
                "data": {
                    "actionType": "transform",
                    "values": {
                        "amount": f"${{{{ {source} + 1 }}}}",
                        "label": f"step {index} of ${{{{ workflow.orderId }}}}",
                    },
                },
            }
        )
        edges.append({"source": previous, "target": node_id})
        previous = node_id
    nodes.append(
        {
            "id": "out",
            "type": "action",
            "data": {
                "actionType": "set_output",
                "output": {"orderId": "${{ workflow.orderId }}", "amount": f"${{{{ nodes.{previous}.amount }}}}"},
            },
        }
    )
    edges.append({"source": previous, "target": "out"})
    return {"name": "bench-actions", "nodes": nodes, "edges": edges}


def executors_workflow() -> dict:
    nodes = [{"id": "start", "type": "trigger", "data": {"triggerType": "manual"}}]
    edges, previous, last_call = [], "start", None
    for index in range(9):
        node_id = f"s{index}"
        if index % 2 == 0 and index < 8:
            nodes.append(
                {
                    "id": node_id,
                    "type": "executor",
                    "data": {
                        "executor": "bench-svc",
                        "endpoint": "score",
                        "body": {"orderId": "${{ workflow.orderId }}", "step": index},
                        "headers": {"X-Correlation-Id": "bench-${{ workflow.orderId }}"},
                    },
                }
            )
            last_call = node_id
        else:
            nodes.append(
                {
                    "id": node_id,
                    "type": "action",
                    "data": {
                        "actionType": "transform",
                        "values": {"score": f"${{{{ nodes.{last_call}.body.score + {index} }}}}"},
                    },
                }
            )
        edges.append({"source": previous, "target": node_id})
        previous = node_id
    return {"name": "bench-executors", "nodes": nodes, "edges": edges}


class CallTimer:
    """Observer: adds up the time spent inside the HTTP transport, to subtract it."""

    def __init__(self):
        self.call_ms = 0.0

    def step_started(self, node) -> None:
        pass

    def step_finished(self, record) -> None:
        if record.call is not None:
            self.call_ms += record.call.transport_ms


def store(spec: dict) -> Workflow:
    workflow = Workflow.create(name=spec["name"], status="active", version=1, spec=spec, spec_hash="bench")
    WorkflowVersion.create(workflow_id=workflow.id, version=1, spec=spec)
    return workflow


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def measure(service: ExecutionService, workflow: Workflow, executions: int, warmup: int):
    """Per execution: (start + run wall time - time inside HTTP calls) / steps, in ms."""
    samples: list[float] = []
    steps = len(workflow.spec["nodes"])
    for number in range(warmup + executions):
        if number == warmup:
            samples.clear()
            started_all = time.perf_counter()
        timer = CallTimer()
        began = time.perf_counter()
        execution = service.execute(
            workflow.id, {"orderId": f"o-{number}", "amount": number}, actor=SYSTEM_ACTOR, observer=timer
        ).execution
        samples.append(((time.perf_counter() - began) * 1000.0 - timer.call_ms) / steps)
        if execution.status != "completed":
            raise SystemExit(f"benchmark run failed: {execution.error_message}")
    elapsed = time.perf_counter() - started_all
    return samples, executions / elapsed


def report(name: str, samples: list[float], rate: float) -> None:
    print(
        f"{name:10s} per-step overhead over {len(samples)} executions: p50={statistics.median(samples):.3f} ms  "
        f"p99={percentile(samples, 0.99):.3f} ms  max={max(samples):.3f} ms  |  {rate:.1f} executions/s "
        "(10 steps, start + run, calls included)"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--database", help="database URL (default: a temporary SQLite file)")
    args = parser.parse_args(argv)

    os.environ[TOKEN_VARIABLE] = "benchmark-token-value"
    with tempfile.TemporaryDirectory(prefix="flowker-bench-") as scratch:
        url = args.database or f"sqlite:///{scratch}/bench.db"
        settings = Settings.from_mapping({"database_url": url, "retry_base_seconds": 0.01})
        registry = load_registry(settings)
        # The composition root, as the server and `flowker run` build it (runs bind its database).
        runtime = Runtime.from_settings(settings, registry=registry)
        database = runtime.database
        upgrade(database)
        service = runtime.execution_service
        stub, stub_port = start_stub()
        stub_url = f"http://127.0.0.1:{stub_port}"
        with database.connection_context():
            Executor.create(
                name="bench-svc",
                base_url=stub_url,
                spec_hash="bench",
                spec={
                    "name": "bench-svc",
                    "baseUrl": stub_url,
                    "endpoints": [{"name": "score", "path": "/score", "method": "POST"}],
                    "authentication": {"type": "bearer", "config": {"token": {"$env": TOKEN_VARIABLE}}},
                },
            )
            print(
                f"database: {url.split('///')[0]}  executions per workflow: {args.executions} (+{args.warmup} warm-up)"
            )
            samples, rate = measure(service, store(actions_workflow()), args.executions, args.warmup)
            report("actions", samples, rate)
            samples, rate = measure(service, store(executors_workflow()), args.executions, args.warmup)
            report("executors", samples, rate)
        runtime.close()  # its keep-alive connections and database first, then the stub
        stub.terminate()
        stub.join(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())

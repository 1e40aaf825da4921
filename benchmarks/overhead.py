"""Runner overhead per step, measured in-process with the real ExecutionService.

Built on :mod:`benchmarks.runner` (its workflows, ``measure`` and ``CallTimer``): a step's
cost is an execution's wall time (``start`` + ``run``: every commit, audit entry,
expression and lease update) minus the time inside HTTP calls, divided by its steps.
This module sets the service up once for several workflows, against any stub URL, so
the suite and the peer comparison measure the same way.
"""

from __future__ import annotations

import os
import statistics
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass

from benchmarks import runner as runner_bench

STUB_EXECUTOR = "bench-svc"


@dataclass
class Overhead:
    name: str
    steps: int
    samples: list  # ms per step, one per execution
    executions_per_second: float

    @property
    def p50(self) -> float:
        return statistics.median(self.samples)

    @property
    def p99(self) -> float:
        return runner_bench.percentile(self.samples, 0.99)


def three_node_workflow() -> dict:
    """The REST benchmark's workflow: trigger -> one executor call -> set_output."""
    return {
        "name": "bench-3-nodes",
        "nodes": [
            {"id": "start", "type": "trigger", "data": {"triggerType": "manual"}},
            {
                "id": "score",
                "type": "executor",
                "data": {
                    "executor": STUB_EXECUTOR,
                    "endpoint": "score",
                    "body": {"orderId": "${{ workflow.orderId }}", "amount": "${{ workflow.amount }}"},
                },
            },
            {
                "id": "out",
                "type": "action",
                "data": {
                    "actionType": "set_output",
                    "output": {"orderId": "${{ workflow.orderId }}", "score": "${{ nodes.score.body.score }}"},
                },
            },
        ],
        "edges": [{"source": "start", "target": "score"}, {"source": "score", "target": "out"}],
    }


def ten_calls_workflow() -> dict:
    """The peer comparison's workload: a trigger, 10 HTTP calls to the stub, an output."""
    nodes = [{"id": "start", "type": "trigger", "data": {"triggerType": "manual"}}]
    edges, previous = [], "start"
    for index in range(10):
        node_id = f"call{index}"
        nodes.append(
            {
                "id": node_id,
                "type": "executor",
                "data": {
                    "executor": STUB_EXECUTOR,
                    "endpoint": "score",
                    "body": {"orderId": "${{ workflow.orderId }}", "step": index},
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
                "output": {"orderId": "${{ workflow.orderId }}", "score": f"${{{{ nodes.{previous}.body.score }}}}"},
            },
        }
    )
    edges.append({"source": previous, "target": "out"})
    return {"name": "bench-ten-calls", "nodes": nodes, "edges": edges}


WORKFLOWS = {
    "actions": runner_bench.actions_workflow,
    "executors": runner_bench.executors_workflow,
    "three-nodes": three_node_workflow,
    "ten-calls": ten_calls_workflow,
}


@contextmanager
def service_on(stub_url: str, database_url: str | None = None):
    """An ExecutionService on a fresh database (SQLite in a temporary folder by default),
    with the stub executor stored; yields it with its database connected."""
    from flowker.plugins import load_registry
    from flowker.runner.service import ExecutionService
    from flowker.settings import Settings
    from flowker.storage.database import bind_database
    from flowker.storage.migrations import upgrade
    from flowker.storage.models import Executor

    os.environ[runner_bench.TOKEN_VARIABLE] = "benchmark-token-value"
    with tempfile.TemporaryDirectory(prefix="flowker-bench-") as scratch:
        url = database_url or f"sqlite:///{scratch}/bench.db"
        settings = Settings.from_mapping({"database_url": url, "retry_base_seconds": 0.01})
        database = bind_database(url)
        upgrade(database)
        service = ExecutionService(settings, load_registry(settings))
        try:
            with database.connection_context():
                Executor.create(
                    name=STUB_EXECUTOR,
                    base_url=stub_url,
                    spec_hash="bench",
                    spec={
                        "name": STUB_EXECUTOR,
                        "baseUrl": stub_url,
                        "endpoints": [{"name": "score", "path": "/score", "method": "POST"}],
                        "authentication": {
                            "type": "bearer",
                            "config": {"token": {"$env": runner_bench.TOKEN_VARIABLE}},
                        },
                    },
                )
                yield service
        finally:
            service.close()
            if not database.is_closed():
                database.close()


def measure(service, name: str, executions: int, warmup: int) -> Overhead:
    """Run one of :data:`WORKFLOWS` ``warmup + executions`` times; its per-step overhead."""
    spec = WORKFLOWS[name]()
    workflow = runner_bench.store(spec)
    samples, rate = runner_bench.measure(service, workflow, executions, warmup)
    return Overhead(name=name, steps=len(spec["nodes"]), samples=samples, executions_per_second=rate)

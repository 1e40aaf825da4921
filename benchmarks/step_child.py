"""One tree's side of a same-run comparison of per-step overhead (run as a subprocess).

    PYTHONPATH=TREE python -P benchmarks/step_child.py

Started by :mod:`benchmarks.before_after` and :mod:`benchmarks.dbos_side_by_side` with the
interpreter and ``PYTHONPATH`` of the tree it measures; it imports only ``flowker`` (from
that tree) and the standard library, never the ``benchmarks`` package, so the same
measuring code runs against any commit. ``-P`` keeps this file's folder off ``sys.path``.

It speaks JSON lines on stdin/stdout, so the caller can interleave rounds of several
trees (before, after, before, after, ...) while each keeps its database and warm caches:

* ``{"op": "setup", "database_url": URL or null, "stub_url": URL, "workflows": {name: spec}}``
  -> ``{"ready": true, "flowker": path of the flowker package}``;
* ``{"op": "round", "workflow": name, "executions": N}``
  -> ``{"samples": [ms per step, one per execution], "cpu_ms": [...], "seconds": wall}``;
* ``{"op": "stop"}``, or end of input.

A step's cost is measured as ``benchmarks/runner.py`` does: an execution's wall time
(``execute``: start + run, every commit, audit append, expression and lease update) minus
the time inside the HTTP transport (``CallResult.transport_ms``, added up by an observer),
divided by the workflow's nodes.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

TOKEN_VARIABLE = "BENCHMARK_RUNNER_TOKEN"
STUB_EXECUTOR = "bench-svc"


class CallTimer:
    """Observer: adds up the time spent inside the HTTP transport, to subtract it."""

    def __init__(self):
        self.call_ms = 0.0

    def step_started(self, node) -> None:
        pass

    def step_finished(self, record) -> None:
        if record.call is not None:
            self.call_ms += record.call.transport_ms


class Side:
    def __init__(self, database_url: str | None, stub_url: str, workflows: dict, scratch: str):
        from flowker.plugins import load_registry
        from flowker.settings import Settings
        from flowker.storage.migrations import upgrade
        from flowker.storage.models import Executor, Workflow, WorkflowVersion

        os.environ[TOKEN_VARIABLE] = "benchmark-token-value"
        url = database_url or f"sqlite:///{scratch}/bench.db"
        settings = Settings.from_mapping({"database_url": url, "retry_base_seconds": 0.01})
        registry = load_registry(settings)
        try:  # the composition root, as the server and `flowker run` build it
            from flowker.runtime import Runtime

            self.runtime = Runtime.from_settings(settings, registry=registry)
            self.database, self.service = self.runtime.database, self.runtime.execution_service
        except ImportError:  # older trees: the service on a bound database
            from flowker.runner.service import ExecutionService
            from flowker.storage.database import bind_database

            self.runtime = None
            self.database = bind_database(url)
            self.service = ExecutionService(settings, registry)
        upgrade(self.database)
        self.connection = self.database.connection_context()
        self.connection.__enter__()
        Executor.create(
            name=STUB_EXECUTOR,
            base_url=stub_url,
            spec_hash="bench",
            spec={
                "name": STUB_EXECUTOR,
                "baseUrl": stub_url,
                "endpoints": [{"name": "score", "path": "/score", "method": "POST"}],
                "authentication": {"type": "bearer", "config": {"token": {"$env": TOKEN_VARIABLE}}},
            },
        )
        self.workflows = {}
        for name, spec in workflows.items():
            workflow = Workflow.create(name=spec["name"], status="active", version=1, spec=spec, spec_hash="bench")
            WorkflowVersion.create(workflow_id=workflow.id, version=1, spec=spec)
            self.workflows[name] = (workflow.id, len(spec["nodes"]))
        self.number = 0

    def round(self, name: str, executions: int) -> dict:
        from flowker.audit.chain import SYSTEM_ACTOR

        workflow_id, steps = self.workflows[name]
        samples, cpu = [], []
        began_all = time.perf_counter()
        for _ in range(executions):
            self.number += 1
            timer = CallTimer()
            cpu_began = time.process_time()
            began = time.perf_counter()
            execution = self.service.execute(
                workflow_id, {"orderId": f"o-{self.number}", "amount": self.number}, actor=SYSTEM_ACTOR, observer=timer
            ).execution
            samples.append(((time.perf_counter() - began) * 1000.0 - timer.call_ms) / steps)
            cpu.append((time.process_time() - cpu_began) * 1000.0)
            if execution.status != "completed":
                raise SystemExit(f"benchmark run failed: {execution.error_message}")
        return {"samples": samples, "cpu_ms": cpu, "seconds": time.perf_counter() - began_all}

    def close(self) -> None:
        self.connection.__exit__(None, None, None)
        if self.runtime is not None:
            self.runtime.close()
        else:
            self.service.close()
            if not self.database.is_closed():
                self.database.close()


def main() -> int:
    import flowker

    answers, sys.stdout = sys.stdout, sys.stderr  # whatever else prints must not break the protocol
    side = None
    with tempfile.TemporaryDirectory(prefix="flowker-step-child-") as scratch:
        try:
            for line in sys.stdin:
                request = json.loads(line)
                if request["op"] == "setup":
                    side = Side(request.get("database_url"), request["stub_url"], request["workflows"], scratch)
                    answer = {"ready": True, "flowker": os.path.dirname(flowker.__file__)}
                elif request["op"] == "round":
                    assert side is not None, "setup first"
                    answer = side.round(request["workflow"], int(request["executions"]))
                else:
                    break
                answers.write(json.dumps(answer) + "\n")
                answers.flush()
        finally:
            if side is not None:
                side.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

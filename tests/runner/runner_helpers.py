"""Helpers shared by the runner tests (fixtures live in conftest.py)."""

from __future__ import annotations

import threading
import time

from flowker.settings import Settings

BEARER_TOKEN = "s3cr3t-runner-token-value"
TOKEN_VARIABLE = "RUNNER_TEST_TOKEN"


def make_settings(database_url: str, **changes) -> Settings:
    base = Settings.from_mapping(
        {
            "database_url": database_url,
            "retry_base_seconds": 0.05,
            "cb_failure_threshold": 5,
            "cb_recovery_seconds": 0.5,
            "execution_timeout_seconds": 30,
        }
    )
    return base.replace(**changes) if changes else base


def store_workflow(spec: dict, status: str = "active", version: int = 1):
    """A Workflow row with its WorkflowVersion snapshot (no audit: not the subject here)."""
    from flowker.storage.models import Workflow, WorkflowVersion

    workflow = Workflow.create(name=spec["name"], status=status, version=version, spec=spec, spec_hash="x")
    WorkflowVersion.create(workflow_id=workflow.id, version=version, spec=spec)
    return workflow


def store_executor(name: str, base_url: str, endpoints: list, authentication: dict | None = None):
    from flowker.storage.models import Executor

    spec = {
        "name": name,
        "baseUrl": base_url,
        "endpoints": endpoints,
        "authentication": authentication or {"type": "bearer", "config": {"token": {"$env": TOKEN_VARIABLE}}},
    }
    return Executor.create(name=name, base_url=base_url, spec=spec, spec_hash="x")


class Recorder:
    """A programmable handler: ``script`` is a list of responses consumed in order (the
    last one repeats); each is (status, headers, body) or a callable(request)."""

    def __init__(self):
        self.script = [(200, {}, {"ok": True})]
        self.times: list[float] = []
        self.delay = 0.0
        self._lock = threading.Lock()
        self._served = 0

    def set(self, *responses):
        with self._lock:
            self.script = list(responses)
            self._served = 0
            self.times.clear()

    def __call__(self, request):
        with self._lock:
            self.times.append(time.monotonic())
            index = min(self._served, len(self.script) - 1)
            self._served += 1
            response = self.script[index]
        if callable(response):
            return response(request)
        return response


def run_call(
    service,
    base_url: str,
    *,
    endpoint: dict | None = None,
    data: dict | None = None,
    input_data: dict | None = None,
    authentication: dict | None = None,
    executor_name: str = "svc",
    extra_nodes=(),
    extra_edges=(),
):
    """Store an executor and a start -> call workflow, run it; (execution, call step)."""
    from flowker.audit.chain import SYSTEM_ACTOR
    from flowker.storage.models import Executor, StepResult

    endpoint = endpoint or {"name": "op", "path": "/op", "method": "POST"}
    if Executor.get_or_none(Executor.name == executor_name) is None:
        store_executor(executor_name, base_url, [endpoint], authentication)
    node = {
        "id": "call",
        "type": "executor",
        "data": {"executor": executor_name, "endpoint": endpoint["name"], **(data or {})},
    }
    spec = {
        "name": f"wf-{time.monotonic_ns()}",
        "nodes": [{"id": "start", "type": "trigger", "data": {"triggerType": "manual"}}, node, *extra_nodes],
        "edges": [{"source": "start", "target": "call"}, *extra_edges],
    }
    workflow = store_workflow(spec)
    started = service.start(workflow.id, input_data or {}, actor=SYSTEM_ACTOR)
    execution = service.run(started.execution.id)
    step = StepResult.get((StepResult.execution == execution.id) & (StepResult.node_id == "call"))
    return execution, step

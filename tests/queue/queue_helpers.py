"""Helpers for the queue tests: a stub executor that records each call and how many run
at once per workflow, workflows stored on the test's database, ``flowker worker``
processes (started with subprocess, stopped by their fixture), and database checks.

Every loop is bounded by a deadline."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

WORKER_READY = re.compile(r"Flowker worker (\d+) running")
START_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0


def wait_for(condition, what: str, timeout: float, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class QueueStub:
    """The executor the queued runs call: ``POST /<tag>`` with ``{"executionId": ...}``.

    Records every call's execution id, and per tag the most calls ever in flight at once
    (the stub's view of a workflow's concurrency). Each call takes ``delay`` seconds."""

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.calls: Counter = Counter()
        self.in_flight: Counter = Counter()
        self.most_in_flight: Counter = Counter()
        self.idempotency_keys: dict[str, set] = {}
        self._lock = threading.Lock()

    def __call__(self, request):
        tag = request.path.strip("/")
        body = request.json() if request.body else {}
        execution_id = body.get("executionId") if isinstance(body, dict) else None
        with self._lock:
            self.calls[execution_id] += 1
            self.in_flight[tag] += 1
            self.most_in_flight[tag] = max(self.most_in_flight[tag], self.in_flight[tag])
            self.idempotency_keys.setdefault(execution_id, set()).add(request.header("Idempotency-Key"))
        try:
            if self.delay:
                time.sleep(self.delay)
            return 200, {}, {"ok": True, "executionId": execution_id}
        finally:
            with self._lock:
                self.in_flight[tag] -= 1


def workflow_spec(name: str, tag: str, *, concurrency: int | None = None) -> dict:
    spec = {
        "name": name,
        "nodes": [
            {"id": "start", "type": "trigger", "data": {"triggerType": "manual"}},
            {
                "id": "call",
                "type": "executor",
                "data": {"executor": "qstub", "endpoint": tag, "body": {"executionId": "${{ execution.id }}"}},
            },
            {"id": "out", "type": "action", "data": {"actionType": "set_output", "output": {"done": True}}},
        ],
        "edges": [{"source": "start", "target": "call"}, {"source": "call", "target": "out"}],
    }
    if concurrency is not None:
        spec["concurrency"] = concurrency
    return spec


def store_stub_executor(stub_url: str, tags: list[str]) -> None:
    from flowker.storage.models import Executor

    endpoints = [{"name": tag, "path": f"/{tag}", "method": "POST"} for tag in tags]
    spec = {"name": "qstub", "baseUrl": stub_url, "endpoints": endpoints, "authentication": {"type": "none"}}
    Executor.create(name="qstub", base_url=stub_url, spec=spec, spec_hash="x")


def store_workflow(spec: dict) -> str:
    from flowker.storage.models import Workflow, WorkflowVersion

    workflow = Workflow.create(name=spec["name"], status="active", version=1, spec=spec, spec_hash="x")
    WorkflowVersion.create(workflow_id=workflow.id, version=1, spec=spec)
    return workflow.id


def child_env(database_url: str, **extra: str) -> dict:
    """The environment of a child process: ours without any FLOWKER_* setting, plus these."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("FLOWKER_")}
    env.update(FLOWKER_DATABASE_URL=database_url, FLOWKER_ENV="development", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


class WorkerProcess:
    """``flowker worker`` in a child process; its output is collected as it comes."""

    def __init__(self, database_url: str, *args: str, env: dict | None = None):
        self.args = [sys.executable, "-m", "flowker", "worker", *args]
        self.env = child_env(database_url, **(env or {}))
        self.process: subprocess.Popen | None = None
        self.lines: list[str] = []

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def start(self) -> "WorkerProcess":
        self.process = subprocess.Popen(
            self.args, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
        threading.Thread(target=self._read, daemon=True).start()

        def ready():
            if self.process.poll() is not None:
                raise AssertionError(f"flowker worker exited with {self.process.returncode}:\n{self.output}")
            return WORKER_READY.search(self.output)

        wait_for(ready, "flowker worker to start", START_TIMEOUT)
        return self

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def terminate(self) -> int:
        """SIGTERM, then its exit code (a worker that does not stop in time is killed: a failure)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            raise AssertionError(f"flowker worker did not stop on SIGTERM:\n{self.output}") from None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def execution_report(database) -> dict:
    """Rows and audit counts read straight from the database."""
    from flowker.audit.verify import verify_database
    from flowker.storage.models import AuditEntry, Execution

    with database.connection_context():
        rows = {
            row.id: row
            for row in Execution.select(
                Execution.id,
                Execution.workflow_id,
                Execution.status,
                Execution.owner,
                Execution.started_at,
                Execution.queued_at,
                Execution.input_data,
            )
        }
        events: Counter = Counter(
            (entry.resource_id, entry.event_type)
            for entry in AuditEntry.select(AuditEntry.resource_id, AuditEntry.event_type)
        )
        verification = verify_database(database)
    return {"executions": rows, "events": events, "verify": verification}

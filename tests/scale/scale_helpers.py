"""Helpers for the multi-server tests: ``flowker serve`` processes that can be killed
hard, a stub executor service, API calls through any server, and the database checks.

Specs and the environment come from the end-to-end helpers (tests/e2e/e2e_helpers.py).
Every loop is bounded by a deadline; every process started is stopped by its fixture.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import requests

E2E_FOLDER = Path(__file__).resolve().parents[1] / "e2e"
if str(E2E_FOLDER) not in sys.path:
    sys.path.append(str(E2E_FOLDER))

from e2e_helpers import (  # noqa: E402  (the e2e folder is on the path only from here)
    API_KEY,
    LISTENING,
    api_session,
    executor_yaml,
    flowker_env,
    workflow_yaml,
)

LEASE_SECONDS = 3.0
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
REQUEST_TIMEOUT = 30.0
YAML = {"Content-Type": "application/yaml"}
INTERRUPTED_PREFIX = "interrupted:"

__all__ = [
    "API_KEY",
    "LEASE_SECONDS",
    "ServerProcess",
    "StubService",
    "api_session",
    "executor_yaml",
    "workflow_yaml",
    "YAML",
    "assert_one_linear_chain",
    "create_workflow",
    "database_report",
    "wait_for",
]


def wait_for(condition, what: str, timeout: float, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class ServerProcess:
    """``flowker serve`` on 127.0.0.1:<free port> in its own process group.

    ``kill_hard()`` sends SIGKILL to the master and its workers at once, as a host that
    loses power would (killing only the master lets gthread workers finish their requests).
    """

    def __init__(
        self,
        database_url: str,
        *,
        workers: int = 2,
        threads: int = 4,
        lease_seconds: float = LEASE_SECONDS,
        env: dict | None = None,
        extra_args: tuple[str, ...] = (),
    ):
        self.env = flowker_env(
            database_url,
            FLOWKER_API_KEYS=f"scale:{API_KEY}",
            FLOWKER_EXECUTION_LEASE_SECONDS=str(lease_seconds),
            **(env or {}),
        )
        self.args = [
            sys.executable,
            "-m",
            "flowker",
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--drain-seconds",
            "0",
            *extra_args,
        ]
        self.process: subprocess.Popen | None = None
        self.lines: list[str] = []
        self.url: str | None = None

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def start(self) -> "ServerProcess":
        self.process = subprocess.Popen(
            self.args,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

        def announced():
            if self.process.poll() is not None:
                raise AssertionError(f"flowker serve exited with {self.process.returncode}:\n{self.output}")
            match = LISTENING.search(self.output)
            return match.group(1) if match else None

        self.url = wait_for(announced, "flowker serve to announce its address", START_TIMEOUT)
        wait_for(lambda: _status(self.url + "/health/ready") == 200, "the server to be ready", START_TIMEOUT)
        return self

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    def kill_hard(self) -> None:
        """SIGKILL to the whole process group; returns when the port no longer accepts."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=STOP_TIMEOUT)
        parts = urlsplit(self.url)
        wait_for(lambda: not _accepts(parts.hostname, parts.port), "the killed server's port to close", STOP_TIMEOUT)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=STOP_TIMEOUT)


def _status(url: str) -> int | None:
    try:
        return requests.get(url, timeout=2).status_code
    except requests.RequestException:
        return None


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class StubService:
    """The executor's service: ``/score`` answers at once; ``/slow`` holds the call until
    :meth:`release` (at most ``hold_seconds``), so runs can be caught mid-flight."""

    def __init__(self, hold_seconds: float = 20.0):
        self.hold_seconds = hold_seconds
        self.released = threading.Event()
        self.slow_calls = 0
        self._lock = threading.Lock()

    def __call__(self, request):
        body = request.json() if request.body else {}
        amount = body.get("amount", 0) if isinstance(body, dict) else 0
        if request.path == "/slow":
            with self._lock:
                self.slow_calls += 1
            self.released.wait(self.hold_seconds)
        elif request.path != "/score":
            return 404, {}, {"error": "no such endpoint"}
        return 200, {}, {"score": int(amount or 0) % 100}

    def release(self) -> None:
        self.released.set()


def create_workflow(
    api: requests.Session,
    url: str,
    name: str,
    *,
    path: str,
    endpoint: str = "score",
    activate_via: str | None = None,
    on_interrupt: str | None = None,
) -> str:
    """Create a workflow from YAML on ``url``; activate it on ``activate_via`` (if given).
    ``on_interrupt``: the workflow's ``onInterrupt`` (default: none, so resume)."""
    spec = workflow_yaml(name, endpoint=endpoint, path=path)
    if on_interrupt is not None:
        spec = spec.replace("kind: Workflow\n", f"kind: Workflow\nonInterrupt: {on_interrupt}\n", 1)
    response = api.post(
        f"{url}/v1/workflows",
        data=spec,
        headers=YAML,
        timeout=REQUEST_TIMEOUT,
    )
    assert response.status_code == 201, response.text
    workflow_id = response.json()["workflowId"]
    if activate_via:
        response = api.post(f"{activate_via}/v1/workflows/{workflow_id}/activate", timeout=REQUEST_TIMEOUT)
        assert response.status_code == 200, response.text
    return workflow_id


# --------------------------------------------------------------------------- database checks


def assert_one_linear_chain(report: dict) -> None:
    count, first, last = report["sequences"]
    assert report["verify"].is_valid, report["verify"].message
    assert report["verify"].total_checked == count
    assert (first, last) == (1, count), "audit sequence numbers have gaps"
    distinct_previous, distinct_hashes = report["links"]
    assert distinct_previous == distinct_hashes == count, "two entries share a predecessor: the chain forked"


def database_report(database_url: str) -> dict:
    """Everything the checks need, read straight from the shared database.

    ``executions``: id -> row dict; ``steps``: execution id -> count; ``events``:
    (execution id, event type) -> count; ``sequences``: (count, min, max); ``verify``:
    the chain verification (a :class:`flowker.audit.verify.VerifyResult`).
    """
    from flowker.audit.verify import verify_database
    from flowker.storage.database import close_database, open_database

    database = open_database(database_url)
    try:
        with database.connection_context():
            rows = database.execute_sql(
                "SELECT id, workflow_id, status, idempotency_key, error_message, total_steps, current_step, "
                "workflow_version, lease_expires_at FROM execution"
            ).fetchall()
            executions = {
                row[0]: {
                    "workflow_id": row[1],
                    "status": row[2],
                    "key": row[3],
                    "error": row[4],
                    "total_steps": row[5],
                    "current_step": row[6],
                    "workflow_version": row[7],
                    "lease_expires_at": row[8],
                }
                for row in rows
            }
            steps = dict(
                database.execute_sql("SELECT execution_id, COUNT(*) FROM step_result GROUP BY execution_id").fetchall()
            )
            events = {
                (resource_id, event_type): count
                for resource_id, event_type, count in database.execute_sql(
                    "SELECT resource_id, event_type, COUNT(*) FROM audit_entry GROUP BY resource_id, event_type"
                ).fetchall()
            }
            sequences = tuple(
                database.execute_sql("SELECT COUNT(*), MIN(sequence), MAX(sequence) FROM audit_entry").fetchone()
            )
            duplicate_keys = database.execute_sql(
                "SELECT workflow_id, idempotency_key, COUNT(*) FROM execution WHERE idempotency_key IS NOT NULL "
                "GROUP BY workflow_id, idempotency_key HAVING COUNT(*) > 1"
            ).fetchall()
            links = database.execute_sql(
                "SELECT COUNT(DISTINCT previous_hash), COUNT(DISTINCT hash) FROM audit_entry"
            ).fetchone()
            workflows = {
                row[0]: {"name": row[1], "status": row[2], "version": row[3]}
                for row in database.execute_sql("SELECT id, name, status, version FROM workflow").fetchall()
            }
        verification = verify_database(database)
    finally:
        close_database(database)
    return {
        "executions": executions,
        "steps": steps,
        "events": events,
        "sequences": sequences,
        "duplicate_keys": duplicate_keys,
        "links": tuple(links),
        "workflows": workflows,
        "verify": verification,
    }

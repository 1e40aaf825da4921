"""Spec sync started by several processes at once on a new database (SQLite and PostgreSQL):
every process succeeds, and the database holds each resource once with one set of audit
entries (the sync runs under a database-wide lock and re-plans once it holds it)."""

from __future__ import annotations

import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

from e2e_helpers import API_KEY, FlowkerServer, flowker_env, write_specs

PROCESSES = 4
CREATED = ["EXECUTOR_CREATED", "WORKFLOW_CREATED", "WORKFLOW_ACTIVATED"]


def audit_events(database_url: str) -> tuple[list[str], dict, dict, bool]:
    """(event types in order, {executor name: count}, {workflow name: (status, count)}, chain valid)."""
    from flowker.audit.verify import verify_database
    from flowker.storage.database import close_database, open_database

    database = open_database(database_url)
    try:
        with database.connection_context():
            events = [
                row[0]
                for row in database.execute_sql("SELECT event_type FROM audit_entry ORDER BY sequence").fetchall()
            ]
            executors = dict(database.execute_sql("SELECT name, COUNT(*) FROM executor GROUP BY name").fetchall())
            workflows = {
                name: (status, count)
                for name, status, count in database.execute_sql(
                    "SELECT name, MAX(status), COUNT(*) FROM workflow GROUP BY name"
                ).fetchall()
            }
        valid = verify_database(database).is_valid
    finally:
        close_database(database)
    return events, executors, workflows, valid


def start_together(commands: list[list[str]], env: dict) -> list[subprocess.CompletedProcess]:
    """Run every command in its own process, all released at the same moment."""
    barrier = threading.Barrier(len(commands))

    def run(command):
        barrier.wait(30)
        return subprocess.run(command, check=False, env=env, capture_output=True, text=True, timeout=180)

    with ThreadPoolExecutor(max_workers=len(commands)) as pool:
        return list(pool.map(run, commands))


def test_concurrent_apply_on_a_new_database_creates_each_resource_once(database_url, scorer, tmp_path):
    folder = write_specs(tmp_path / "specs", scorer.url)
    command = [sys.executable, "-m", "flowker", "apply", str(folder), "--activate"]
    results = start_together([command] * PROCESSES, flowker_env(database_url))
    for result in results:
        assert result.returncode == 0, result.stdout + result.stderr
    assert sum("Nothing to do." in result.stdout for result in results) == PROCESSES - 1
    events, executors, workflows, valid = audit_events(database_url)
    assert events == CREATED
    assert executors == {"scorer": 1} and workflows == {"e2e-score": ("active", 1)}
    assert valid


def test_servers_started_together_with_specs_all_start(database_url, scorer, tmp_path):
    folder = write_specs(tmp_path / "specs", scorer.url)
    env = flowker_env(database_url, FLOWKER_API_KEYS=f"e2e:{API_KEY}")
    servers = [FlowkerServer(env, "--specs", str(folder), workers=1, threads=1) for _ in range(PROCESSES)]
    barrier = threading.Barrier(PROCESSES)

    def start(server: FlowkerServer):
        barrier.wait(30)
        return server.start()

    try:
        with ThreadPoolExecutor(max_workers=PROCESSES) as pool:
            list(pool.map(start, servers))  # start() raises with the output when a server exits
        events, executors, workflows, valid = audit_events(database_url)
        assert events == CREATED
        assert executors == {"scorer": 1} and workflows == {"e2e-score": ("active", 1)}
        assert valid
    finally:
        for server in servers:
            server.stop()

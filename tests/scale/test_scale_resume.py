"""``kill -9`` of a queue worker mid-step (issue 18), on PostgreSQL and on SQLite.

Real ``flowker worker`` processes share one database; a real stub service on 127.0.0.1
records each call's Idempotency-Key. A worker is killed with SIGKILL while it holds runs
in their second call; once their leases expire, the workers still alive put them back in
the queue and resume them. The stub must see each completed step's call once and the
in-flight step's call at most twice, with the same key; every run must end completed,
and ``flowker audit verify`` must pass.

The second test is the commit window (docs/resume-and-retry.md): the stub has answered
the call, but the worker dies before the call's record commits (its commit is held back
by a lock), so the resumed run sends that call again with the same key.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

from flowker.local_server import LocalHTTPServer

from scale_helpers import database_report, wait_for
from worker_processes import (
    ChainStub,
    CommitBlocker,
    WorkerProcess,
    apply_chain,
    chain_env,
    enqueue_runs,
)
from e2e_helpers import run_flowker

LEASE_SECONDS = 2.0  # the sweep runs every second: a dead worker's runs move within ~3 s
RUNS = 6
WORKERS = 3
CONCURRENCY = 2  # 3 x 2 slots: every run is claimed at once
SETTLE_TIMEOUT = 90.0


@pytest.fixture
def chain_stub():
    handler = ChainStub()
    with LocalHTTPServer(handler) as server:
        server.handler = handler
        try:
            yield server
        finally:
            handler.release.set()  # held calls end before the server stops


@pytest.fixture
def workers():
    started: list[WorkerProcess] = []

    def start(env: dict, database_url: str, count: int) -> list[WorkerProcess]:
        batch = [WorkerProcess(env, database_url, CONCURRENCY) for _ in range(count)]
        started.extend(batch)
        return [worker.start() for worker in batch]

    try:
        yield start
    finally:
        for worker in started:
            worker.stop()


def _owner_pid(owner: str | None) -> int | None:
    """The pid in an owner ``host:pid:id``."""
    try:
        return int(owner.split(":")[1]) if owner else None
    except (IndexError, ValueError):
        return None


def _owners(database_url: str, ids: list[str]) -> dict[str, str | None]:
    from flowker.storage.database import close_database, open_database

    database = open_database(database_url)
    try:
        with database.connection_context():
            placeholders = ", ".join(["%s" if "postgres" in database_url else "?"] * len(ids))
            rows = database.execute_sql(f"SELECT id, owner FROM execution WHERE id IN ({placeholders})", ids)
            return dict(rows.fetchall())
    finally:
        close_database(database)


def _assert_verified(env: dict, database_url: str) -> None:
    done = run_flowker(["audit", "verify", "--db", database_url], env)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_killed_workers_runs_are_resumed_by_the_others(tmp_path, database_url, chain_stub, workers):
    env = chain_env(database_url, LEASE_SECONDS)
    apply_chain(tmp_path / "specs", env, database_url, chain_stub.url)
    stub = chain_stub.handler
    ids = enqueue_runs(database_url, "resumable", RUNS)
    fleet = workers(env, database_url, WORKERS)
    wait_for(lambda: len(set(stub.keys("/two"))) == RUNS, "every run to reach its second call", SETTLE_TIMEOUT)

    owners = _owners(database_url, ids)
    victim = next(worker for worker in fleet if worker.pid in {_owner_pid(o) for o in owners.values()})
    orphans = {run for run, owner in owners.items() if _owner_pid(owner) == victim.pid}
    assert orphans, owners
    victim.kill_hard()
    stub.release.set()  # the survivors' calls answer; the dead worker's are in flight for good

    def settled():
        rows = database_report(database_url)["executions"]
        return all(rows[run]["status"] in ("completed", "failed") for run in ids)

    wait_for(settled, "every run to end", SETTLE_TIMEOUT, interval=0.2)
    report = database_report(database_url)
    for run in ids:
        row = report["executions"][run]
        assert row["status"] == "completed", (run, row, [w.output for w in fleet])
        assert report["steps"][run] == row["total_steps"] == 5
        events = {kind: report["events"].get((run, kind), 0) for kind in ("EXECUTION_RESUMED", "STEP_COMPLETED")}
        assert events["STEP_COMPLETED"] == 5 and report["events"].get((run, "EXECUTION_COMPLETED")) == 1
        # Each call is on record once, however often it was sent.
        assert report["events"].get((run, "PROVIDER_CALL_STARTED")) == 3, run
        assert events["EXECUTION_RESUMED"] == (1 if run in orphans else 0), (run, events)

    # The stub's view: completed steps once, the in-flight one at most twice, with one key.
    for path in ("/one", "/two", "/three"):
        keys = Counter(stub.keys(path))
        assert set(keys) == {f"{run}:{path[1:]}" for run in ids}, (path, keys)
        for run in ids:
            expected = 2 if path == "/two" and run in orphans else 1
            assert keys[f"{run}:{path[1:]}"] == expected, (path, run, keys)
    _assert_verified(env, database_url)
    survivors = [worker for worker in fleet if worker is not victim]
    assert any("resumed (queued again)" in worker.output for worker in survivors), [w.output for w in survivors]


def test_a_call_answered_before_its_record_committed_is_sent_again(tmp_path, database_url, workers):
    """Killed in the commit window: /two answered, its record held back, then SIGKILL."""
    stub = ChainStub(hold_two=False)
    with LocalHTTPServer(stub) as server:
        env = chain_env(database_url, LEASE_SECONDS)
        apply_chain(tmp_path / "specs", env, database_url, server.url)
        (run,) = enqueue_runs(database_url, "resumable", 1)
        blocker = CommitBlocker(database_url, run)
        stub.on_two = blocker.hold  # the lock is held before /two is answered
        try:
            (first,) = workers(env, database_url, 1)
            wait_for(lambda: blocker.held.is_set(), "the first /two call", SETTLE_TIMEOUT)
            wait_for(blocker.someone_waits, "the worker's commit to wait for the lock", 30.0)
            if blocker.backend_pid is None:  # SQLite cannot show the waiter: give it the moment
                wait_for(lambda: len(stub.calls) == 2, "the /two answer", 5.0)
                time.sleep(0.5)
            first.kill_hard()
        finally:
            blocker.release()
        report = database_report(database_url)
        assert report["steps"].get(run) == 2  # start and one: the /two record never committed
        assert report["executions"][run]["status"] == "running"

        workers(env, database_url, 1)  # resumes it once the lease has expired
        wait_for(
            lambda: database_report(database_url)["executions"][run]["status"] == "completed",
            "the run to be resumed and completed",
            SETTLE_TIMEOUT,
            interval=0.2,
        )
    assert stub.calls == [
        ("/one", f"{run}:one"),
        ("/two", f"{run}:two"),
        ("/two", f"{run}:two"),
        ("/three", f"{run}:three"),
    ]
    report = database_report(database_url)
    assert report["steps"][run] == 5 and report["events"].get((run, "EXECUTION_RESUMED")) == 1
    assert report["events"].get((run, "PROVIDER_CALL_STARTED")) == 3
    _assert_verified(env, database_url)

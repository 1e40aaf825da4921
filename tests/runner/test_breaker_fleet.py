"""One circuit breaker per executor for the whole fleet (SQLite and PostgreSQL): the state is
shared through the database by every process, half-open lets FLOWKER_CB_HALF_OPEN_CALLS
trial calls through fleet-wide, and a refusal names the executor."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from flowker.errors import CircuitOpenError
from flowker.runner.breakers import BreakerBoard, NetworkError, TransientHTTPError
from flowker.storage.breaker_store import BreakerStateStore

from runner_helpers import make_settings, run_call, store_executor

PROCESSES = 4
THRESHOLD = 3
CHILD = Path(__file__).with_name("breaker_child.py")


@pytest.fixture
def db_settings(database, database_url):
    return make_settings(database_url, cb_failure_threshold=THRESHOLD, cb_recovery_seconds=600)


class CountingStore(BreakerStateStore):
    """The real store, counting its queries."""

    def __init__(self):
        super().__init__()
        self.reads = self.changes = 0

    def read(self, executor_id):
        self.reads += 1
        return super().read(executor_id)

    def change(self, executor_id, transition):
        self.changes += 1
        return super().change(executor_id, transition)


def _fail(exc):
    def function():
        raise exc

    return function


def test_processes_racing_on_a_down_service_make_the_threshold_of_calls(database, database_url, http_server, tmp_path):
    http_server.recorder.set((503, {}, {"error": "down"}))
    executor = store_executor(
        "cbstub", http_server.url, [{"name": "op", "path": "/op", "method": "POST"}], {"type": "none"}
    )
    go_file = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(CHILD.parent), *sys.path])}
    children = [
        subprocess.Popen(
            [sys.executable, str(CHILD), database_url, "cbstub", str(THRESHOLD), str(go_file)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    try:
        for child in children:
            assert child.stdout.readline().strip() == "ready", child.stderr.read()
        go_file.touch()  # every process is set up: they call at the same moment
        reports = []
        for child in children:
            out, err = child.communicate(timeout=120)
            assert child.returncode == 0, err
            reports.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait(10)

    calls = len(http_server.requests)
    # Exactly the threshold, plus at most one call per other process racing on the last count
    # (per-process breakers would let PROCESSES x THRESHOLD = 12 through).
    assert THRESHOLD <= calls <= THRESHOLD + PROCESSES - 1, (calls, reports)
    for report in reports:
        assert report["codes"][-1] == "FLK-0507", report  # every process refuses in the end
        assert "'cbstub'" in report["message"] and executor.id not in report["message"], report["message"]
    assert sum(code == "FLK-0503" for report in reports for code in report["codes"]) == calls


def test_a_breaker_opened_in_one_process_refuses_in_another(db_settings, service_factory, http_server, token_env):
    first, second = service_factory(db_settings), service_factory(db_settings)  # two processes' services
    http_server.recorder.set((503, {}, {}))
    execution, step = run_call(first, http_server.url, data={"retry": {"maxAttempts": 1}})
    for _ in range(THRESHOLD - 1):
        run_call(first, http_server.url)
    calls = len(http_server.requests)
    assert calls >= THRESHOLD

    http_server.recorder.set((200, {}, {"ok": True}))
    execution, step = run_call(second, http_server.url)
    assert execution.status == "failed" and step.attempts == 0 and len(http_server.requests) == calls
    assert step.call_details["errorCode"] == "FLK-0507"
    from flowker.storage.models import Executor

    executor = Executor.get(Executor.name == "svc")
    assert "executor 'svc'" in step.error_message and executor.id not in step.error_message


def test_half_open_lets_the_configured_trial_calls_through_fleet_wide(database):
    store = BreakerStateStore()
    # Two processes' boards on one executor; recovery 0.2 s, three trial calls at most.
    boards = [BreakerBoard(1, 0.2, 3, shared=store) for _ in range(2)]
    breakers = [board.get("exec-1", "scorer") for board in boards]
    with pytest.raises(NetworkError):
        breakers[0].call_guarded(_fail(NetworkError("down")))
    with pytest.raises(CircuitOpenError, match="'scorer' is open after 1 consecutive failures"):
        breakers[1].call_guarded(lambda: "never")
    time.sleep(0.25)

    inside, release = threading.Semaphore(0), threading.Event()
    outcomes = []

    def trial():
        inside.release()
        release.wait(10)
        return "ok"

    def caller(breaker):
        try:
            outcomes.append(breaker.call_guarded(trial))
        except CircuitOpenError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=caller, args=(breakers[i % 2],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for _ in range(3):
        assert inside.acquire(timeout=10)
    # The other five are refused at once, without a call, while the three trials run.
    deadline = time.monotonic() + 10
    while len(outcomes) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(outcomes) == 5 and all(isinstance(o, CircuitOpenError) for o in outcomes), outcomes
    assert "half-open" in str(outcomes[0])
    assert not inside.acquire(timeout=0.05)
    release.set()
    for thread in threads:
        thread.join(10)
    assert outcomes.count("ok") == 3
    # A successful trial closed the breaker for every process.
    assert all(breaker.call_guarded(lambda: "after") == "after" for breaker in breakers)
    assert store.read("exec-1").state == "closed"


def test_a_failed_trial_reopens_for_every_process(database):
    store = BreakerStateStore()
    first, second = (BreakerBoard(2, 0.2, shared=store).get("exec-2", "svc") for _ in range(2))
    for _ in range(2):
        with pytest.raises(NetworkError):
            first.call_guarded(_fail(NetworkError("down")))
    time.sleep(0.25)
    with pytest.raises(NetworkError):  # the trial, from the other process
        second.call_guarded(_fail(NetworkError("still down")))
    for breaker in (first, second):
        with pytest.raises(CircuitOpenError, match="is open after 3 consecutive failures"):
            breaker.call_guarded(lambda: "never")


def test_a_closed_breaker_costs_no_query_and_sees_changes_within_the_cache_time(database):
    store = CountingStore()
    cache_seconds = 0.3
    mine = BreakerBoard(2, 60, shared=store, cache_seconds=cache_seconds).get("exec-3", "svc")
    other = BreakerBoard(2, 60, shared=BreakerStateStore()).get("exec-3", "svc")
    for _ in range(200):
        assert mine.call_guarded(lambda: 1) == 1
    assert (store.reads, store.changes) == (1, 0)  # one read for the first call, none after

    for _ in range(2):  # another process opens the breaker
        with pytest.raises(TransientHTTPError):
            other.call_guarded(_fail(TransientHTTPError(_response(503))))
    time.sleep(cache_seconds + 0.05)
    with pytest.raises(CircuitOpenError):
        mine.call_guarded(lambda: "never")


def test_one_success_resets_the_shared_count(database):
    store = BreakerStateStore()
    first, second = (BreakerBoard(3, 60, shared=store).get("exec-4", "svc") for _ in range(2))
    for breaker in (first, second):
        with pytest.raises(NetworkError):
            breaker.call_guarded(_fail(NetworkError("down")))
    assert store.read("exec-4").consecutive_failures == 2
    assert second.call_guarded(lambda: "up") == "up"
    assert store.read("exec-4").consecutive_failures == 0
    for _ in range(2):
        with pytest.raises(NetworkError):
            first.call_guarded(_fail(NetworkError("down")))
    assert first.call_guarded(lambda: "still closed") == "still closed"  # 2 of 3: not open


def test_a_trial_slot_of_a_process_that_died_is_given_back(database, monkeypatch):
    from flowker.runner import breakers as breakers_module

    store = BreakerStateStore()
    breaker = BreakerBoard(1, 0.1, shared=store).get("exec-5", "svc")
    with pytest.raises(NetworkError):
        breaker.call_guarded(_fail(NetworkError("down")))
    time.sleep(0.15)
    # A process claimed the only trial slot and died before giving it back.
    store.change("exec-5", lambda row: row.changed(half_open_in_flight=1))
    with pytest.raises(CircuitOpenError, match="half-open"):
        breaker.call_guarded(lambda: "refused")
    monkeypatch.setattr(breakers_module, "TRIAL_LEASE_SECONDS", 0.05)
    time.sleep(0.1)
    assert breaker.call_guarded(lambda: "trial") == "trial"
    assert store.read("exec-5").state == "closed"


def _response(status: int):
    import requests

    response = requests.Response()
    response.status_code = status
    return response


def test_without_the_shared_state_a_process_decides_on_its_own_view(database, caplog):
    # The table is gone (a database that failed mid-upgrade, a lost connection): calls are not
    # failed for a reason that is not the executor's, and this process still counts.
    from flowker.storage.models import CircuitBreakerState

    database.execute_sql(f'DROP TABLE "{CircuitBreakerState._meta.table_name}"')
    breaker = BreakerBoard(2, 60, shared=BreakerStateStore()).get("exec-6", "svc")
    assert breaker.call_guarded(lambda: "up") == "up"
    for _ in range(2):
        with pytest.raises(NetworkError):
            breaker.call_guarded(_fail(NetworkError("down")))
    with pytest.raises(CircuitOpenError):
        breaker.call_guarded(lambda: "never")
    assert "could not read the shared state" in caplog.text
    assert database.execute_sql("SELECT 1").fetchone() == (1,)  # the connection is still usable

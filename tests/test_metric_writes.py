"""flowker.observability.metric_writes: the cached recorders write what prometheus-client
would (same files, same exposition), in batches: a flush (the flusher thread's, an
exposition's, at exit and before a fork) writes them. A forked child writes into its own
pid's files, threads lose no increment, and the cache stays bounded."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from prometheus_client import generate_latest, values
from prometheus_client.mmap_dict import MmapedDict

from flowker.observability import metric_writes
from flowker.observability.metric_writes import CounterRecorder, GaugeRecorder, HistogramRecorder, recorder
from flowker.observability.metrics import (
    MULTIPROCESS_ENV,
    Metrics,
    _Instruments,
    directory_exposition,
    directory_registry,
)

ROOT = Path(__file__).resolve().parents[1]
NEVER = 3600.0  # a flusher interval no test waits for: only the flushes it makes write

WORKFLOW = "pay-roll"
ROUTE = "/v1/workflows/{workflow_id}/executions"
# Below, on and above bounds of every histogram (0.005 is a bound of two), zero, past the last.
DURATIONS = (0.0, 0.0004, 0.001, 0.005, 0.0051, 0.2, 1.0, 7.5, 45.0, 1000.0)


@pytest.fixture
def fresh_values(monkeypatch):
    """A function making instruments whose values live in a directory of their own (each
    with its own MultiProcessValue class: its files, its lock), as a process joining it has."""
    monkeypatch.setattr(values, "ValueClass", values.ValueClass)  # restored after the test
    monkeypatch.delenv(MULTIPROCESS_ENV, raising=False)

    def make(directory: str) -> _Instruments:
        # prometheus-client opens a value's file (named by the environment) when it makes it.
        monkeypatch.setenv(MULTIPROCESS_ENV, directory)
        values.ValueClass = values.MultiProcessValue()
        return _Instruments(None)

    yield make
    metric_writes._recorders.clear()  # they hold this test's instruments


@pytest.fixture
def own_pending(monkeypatch):
    """A function giving the process pending writes of their own, flushed by their thread
    every ``seconds`` (the recorders made from then on add to them)."""

    def install(seconds: float) -> metric_writes.PendingWrites:
        pending = metric_writes.PendingWrites(seconds)
        monkeypatch.setattr(metric_writes, "_pending", pending)
        metric_writes._recorders.clear()
        return pending

    yield install
    metric_writes.write_pending()  # before the monkeypatch is undone: this test's own
    metric_writes._recorders.clear()


def record_with_flowker(metrics: Metrics) -> None:
    for index, seconds in enumerate(DURATIONS):
        status = "succeeded" if index % 3 else "failed"
        metrics.step_settled(WORKFLOW, "trigger", "succeeded")
        metrics.step_settled(WORKFLOW, "call", status)
        metrics.executor_attempt("stub", "score", "success" if index % 3 else "http_error", seconds)
        metrics.executor_attempt("stub", "score", "circuit_open", None)
        metrics.executor_retries("stub", index % 2)
        metrics.breaker_state("stub", "open" if index == 4 else "closed")
        metrics.execution_ended(WORKFLOW, status, seconds)
        metrics.audit_appended(index)
        metrics.audit_verified(index % 4 != 1)
        metrics.http_request("POST", ROUTE, 201 if index % 3 else 500, seconds)
        metrics.http_request("BREW", None, 404, seconds)
        metrics.queue_depth(index, seconds or None)
    # Counted without a duration: no histogram series for these labels.
    metrics.executor_attempt("cold", "score", "circuit_open", None)
    metrics.execution_ended("unfinished", "failed", None)


def record_plainly(i: _Instruments) -> None:
    """The same writes, as prometheus-client's documented calls."""
    for index, seconds in enumerate(DURATIONS):
        status = "succeeded" if index % 3 else "failed"
        i.steps.labels(WORKFLOW, "trigger", "succeeded").inc()
        i.steps.labels(WORKFLOW, "call", status).inc()
        i.executor_calls.labels("stub", "score", "success" if index % 3 else "http_error").inc()
        i.executor_call_seconds.labels("stub", "score").observe(seconds)
        i.executor_calls.labels("stub", "score", "circuit_open").inc()
        retries = i.executor_retries.labels("stub")
        if index % 2:
            retries.inc(index % 2)
        i.breaker_state.labels("stub").set(2 if index == 4 else 0)
        i.executions.labels(WORKFLOW, status).inc()
        i.execution_seconds.labels(WORKFLOW).observe(seconds)
        if index:
            i.audit_appends.inc(index)
        i.audit_verifications.labels("valid" if index % 4 != 1 else "invalid").inc()
        i.http_requests.labels("POST", ROUTE, "201" if index % 3 else "500").inc()
        i.http_seconds.labels("POST", ROUTE).observe(seconds)
        i.http_requests.labels("other", "unmatched", "404").inc()
        i.http_seconds.labels("other", "unmatched").observe(seconds)
        i.queue_depth.set(index)
        i.queue_oldest_age.set(seconds or 0.0)
    i.executor_calls.labels("cold", "score", "circuit_open").inc()
    i.executions.labels("unfinished", "failed").inc()


def file_values(directory: str) -> dict[str, dict[str, float]]:
    """Every file's values by key (timestamps left out: the gauges' are the time of writing)."""
    found = {}
    for name in sorted(os.listdir(directory)):
        entries = MmapedDict.read_all_values_from_file(os.path.join(directory, name))
        found[name] = {key: value for key, value, _timestamp, _pos in entries}
    return found


def test_files_and_exposition_are_prometheus_clients_own(tmp_path, fresh_values, own_pending):
    own_pending(NEVER)
    plain, flowker = str(tmp_path / "plain"), str(tmp_path / "flowker")
    os.mkdir(plain)
    os.mkdir(flowker)
    record_plainly(fresh_values(plain))
    metrics = Metrics(fresh_values(flowker), None, flowker)
    record_with_flowker(metrics)

    assert isinstance(recorder(metrics._i.steps, (WORKFLOW, "trigger", "succeeded")), CounterRecorder)
    assert isinstance(recorder(metrics._i.http_seconds, ("POST", ROUTE)), HistogramRecorder)
    assert isinstance(recorder(metrics._i.breaker_state, ("stub",)), GaugeRecorder)
    pending = file_values(flowker)
    assert set(pending) == set(file_values(plain))  # the same series, all still at 0: nothing flushed
    assert all(value == 0.0 for series in pending.values() for value in series.values())
    metric_writes.write_pending()
    assert file_values(flowker) == file_values(plain)
    text = directory_exposition(flowker)
    assert text == directory_exposition(plain)
    assert b'flowker_http_request_duration_seconds_bucket{le="+Inf",method="POST"' in text
    assert b'flowker_executions_total{status="succeeded",workflow="pay-roll"} 6.0' in text


def test_one_process_mode_records_through_the_library(monkeypatch):
    monkeypatch.delenv(MULTIPROCESS_ENV, raising=False)
    metrics = Metrics.from_settings(type("Settings", (), {"metrics": True})())
    metrics.execution_ended(WORKFLOW, "succeeded", 0.3)
    child = recorder(metrics._i.executions, (WORKFLOW, "succeeded"))
    assert child is metrics._i.executions.labels(WORKFLOW, "succeeded")  # values in memory: no recorder needed
    assert b'flowker_executions_total{status="succeeded",workflow="pay-roll"} 1.0' in metrics.exposition()
    metric_writes._recorders.clear()


def counter_in(directory: str, name: str, pid: int) -> float:
    path = os.path.join(directory, f"counter_{pid}.db")
    entries = MmapedDict.read_all_values_from_file(path) if os.path.exists(path) else []
    return sum(value for key, value, _ts, _pos in entries if f'"{name}"' in key)


def test_a_forked_child_writes_its_own_files(tmp_path, fresh_values, own_pending):
    pending = own_pending(NEVER)
    directory = str(tmp_path)
    metrics = Metrics(fresh_values(directory), None, directory)
    for _ in range(3):  # the parent's recorders exist (cached) and are pending at the fork
        metrics.execution_ended(WORKFLOW, "succeeded", 0.02)
    parent = os.getpid()
    assert counter_in(directory, "flowker_executions_total", parent) == 0

    child = os.fork()
    if child == 0:  # pragma: no cover - the child's result is its exit status
        code = 1
        try:
            # The parent's recorders and pending writes stay the parent's.
            assert metric_writes.cached_recorders() == 0 and not pending._dirty
            for _ in range(5):
                metrics.execution_ended(WORKFLOW, "succeeded", 0.02)
            metric_writes.write_pending()  # os._exit runs no atexit
            code = 0
        finally:
            os._exit(code)
    assert counter_in(directory, "flowker_executions_total", parent) == 3  # written before the fork
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0

    metrics.execution_ended(WORKFLOW, "succeeded", 0.02)  # the parent's recorders still write its file
    metric_writes.write_pending()
    assert counter_in(directory, "flowker_executions_total", parent) == 4
    assert counter_in(directory, "flowker_executions_total", child) == 5
    text = directory_exposition(directory)
    assert b'flowker_executions_total{status="succeeded",workflow="pay-roll"} 9.0' in text
    assert b'flowker_execution_duration_seconds_bucket{le="0.025",workflow="pay-roll"} 9.0' in text
    assert b'flowker_execution_duration_seconds_count{workflow="pay-roll"} 9.0' in text


@pytest.mark.parametrize("flush_seconds", [0.0005, NEVER], ids=["flushed-while-recording", "flushed-once"])
def test_threads_lose_no_increment(tmp_path, fresh_values, own_pending, flush_seconds):
    own_pending(flush_seconds)
    directory = str(tmp_path)
    metrics = Metrics(fresh_values(directory), None, directory)
    threads, writes = 8, 4000
    plain_steps = metrics._i.steps.labels(WORKFLOW, "call", "succeeded")

    def record() -> None:
        start.wait()
        for _ in range(writes):
            metrics.step_settled(WORKFLOW, "call", "succeeded")
            metrics.http_request("POST", ROUTE, 201, 0.002)

    def record_plainly() -> None:  # the library's own writes, under the same lock
        start.wait()
        for _ in range(writes):
            plain_steps.inc()

    recording = True

    def flush_meanwhile() -> None:  # flushes racing the recordings, as an exposition's
        start.wait()
        while recording:
            metric_writes.write_pending()

    workers = [threading.Thread(target=record) for _ in range(threads)] + [threading.Thread(target=record_plainly)]
    flusher = threading.Thread(target=flush_meanwhile)
    start = threading.Barrier(threads + 2)
    for worker in [*workers, flusher]:
        worker.start()
    for worker in workers:
        worker.join()
    recording = False
    flusher.join()
    text = directory_exposition(directory).decode()
    total = threads * writes
    assert f'flowker_steps_total{{node_type="call",status="succeeded",workflow="pay-roll"}} {total + writes}.0' in text
    assert f'flowker_http_requests_total{{method="POST",route="{ROUTE}",status="201"}} {total}.0' in text
    assert f'flowker_http_request_duration_seconds_count{{method="POST",route="{ROUTE}"}} {total}.0' in text


def test_the_cache_is_bounded(tmp_path, fresh_values, monkeypatch):
    directory = str(tmp_path)
    metrics = Metrics(fresh_values(directory), None, directory)
    monkeypatch.setattr(metric_writes, "CACHE_LIMIT", 10)
    metric_writes._recorders.clear()
    for _round in range(2):
        for index in range(25):
            metrics.step_settled(f"workflow-{index}", "call", "succeeded")
            assert metric_writes.cached_recorders() <= 10
    text = directory_exposition(directory).decode()
    for index in range(25):  # recorders made again after a clear write on from the file's value
        assert f'flowker_steps_total{{node_type="call",status="succeeded",workflow="workflow-{index}"}} 2.0' in text


def test_recorders_write_on_when_the_file_grows(tmp_path, fresh_values):
    directory = str(tmp_path)
    metrics = Metrics(fresh_values(directory), None, directory)
    metrics.execution_ended(WORKFLOW, "succeeded", 0.02)
    size = os.path.getsize(os.path.join(directory, f"counter_{os.getpid()}.db"))
    for index in range(1000):  # new series: the file is enlarged and mapped again
        metrics.step_settled(f"workflow-{index}", "call", "succeeded")
    assert os.path.getsize(os.path.join(directory, f"counter_{os.getpid()}.db")) > size
    metrics.execution_ended(WORKFLOW, "succeeded", 0.02)  # a recorder made before the growth
    text = directory_exposition(directory)
    assert b'flowker_executions_total{status="succeeded",workflow="pay-roll"} 2.0' in text
    assert b'flowker_execution_duration_seconds_count{workflow="pay-roll"} 2.0' in text


class CountedEvent(threading.Event):
    def __init__(self):
        super().__init__()
        self.sets = 0

    def set(self) -> None:
        self.sets += 1
        super().set()


def wait_for(condition, what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"waited {timeout}s for {what}"
        time.sleep(0.005)


def test_the_flusher_writes_within_its_interval_then_parks(tmp_path, fresh_values, own_pending):
    pending = own_pending(0.05)
    pending._wake = wake = CountedEvent()  # the flusher's, counted: who wakes it how often
    directory = str(tmp_path)
    metrics = Metrics(fresh_values(directory), None, directory)
    pid = os.getpid()

    started = time.monotonic()
    for _ in range(500):  # a burst: the first recording wakes the flusher, the others do not
        metrics.step_settled(WORKFLOW, "call", "succeeded")
    assert counter_in(directory, "flowker_steps_total", pid) == 0  # pending, not yet written
    wait_for(lambda: counter_in(directory, "flowker_steps_total", pid) == 500, "the flusher's write")
    assert time.monotonic() - started < 2.0
    assert wake.sets == 1
    wait_for(lambda: pending._parked, "the flusher to park after an idle interval")

    metrics.step_settled(WORKFLOW, "call", "succeeded")  # a parked flusher is woken once
    assert wake.sets == 2
    wait_for(lambda: counter_in(directory, "flowker_steps_total", pid) == 501, "the woken flusher's write")


def test_an_exposition_shows_this_processs_recordings_at_once(tmp_path, fresh_values, own_pending):
    own_pending(NEVER)
    directory = str(tmp_path)
    metrics = Metrics(fresh_values(directory), None, directory)
    metrics.execution_ended(WORKFLOW, "succeeded", 0.3)
    assert counter_in(directory, "flowker_executions_total", os.getpid()) == 0
    assert b'flowker_executions_total{status="succeeded",workflow="pay-roll"} 1.0' in metrics.exposition()
    metrics.execution_ended(WORKFLOW, "succeeded", 0.3)
    metrics.breaker_state("stub", "open")
    text = generate_latest(directory_registry(directory))  # what --metrics-bind serves
    assert b'flowker_executions_total{status="succeeded",workflow="pay-roll"} 2.0' in text
    assert b'flowker_execution_duration_seconds_count{workflow="pay-roll"} 2.0' in text
    assert b'flowker_circuit_breaker_state{executor="stub"} 2.0' in text


def test_a_mostrecent_gauge_keeps_the_time_it_was_set(tmp_path, fresh_values, own_pending):
    own_pending(NEVER)
    directory = str(tmp_path)
    metrics = Metrics(fresh_values(directory), None, directory)
    before = time.time()
    metrics.breaker_state("stub", "half_open")
    after = time.time()
    time.sleep(0.05)
    metric_writes.write_pending()
    path = os.path.join(directory, f"gauge_mostrecent_{os.getpid()}.db")
    (entry,) = [e for e in MmapedDict.read_all_values_from_file(path) if '"flowker_circuit_breaker_state"' in e[0]]
    _key, value, timestamp, _position = entry
    assert value == 1.0 and before <= timestamp <= after  # not the flush's time: the newest setting wins


RECORDING_PROCESS = """
import os, signal, sys, time
from types import SimpleNamespace
from flowker.observability.metrics import Metrics, join_metrics_directory
join_metrics_directory(sys.argv[1])
metrics = Metrics.from_settings(SimpleNamespace(metrics=True))
for _ in range(7):
    metrics.execution_ended("pay-roll", "succeeded", 0.02)
if sys.argv[2] == "kill":
    time.sleep(float(sys.argv[3]))
    os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("ending", ["exit", "kill"])
def test_a_process_writes_its_recordings_at_exit_or_within_the_interval(tmp_path, ending):
    """At a normal exit (atexit) everything is written; a process killed (SIGKILL) loses at
    most its last FLUSH_SECONDS: here it is killed after five of them, so nothing."""
    wait = str(5 * metric_writes.FLUSH_SECONDS)
    environment = {key: value for key, value in os.environ.items() if key != MULTIPROCESS_ENV}
    done = subprocess.run(
        [sys.executable, "-c", RECORDING_PROCESS, str(tmp_path), ending, wait],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == (-signal.SIGKILL if ending == "kill" else 0), done.stderr
    text = directory_exposition(str(tmp_path))
    assert b'flowker_executions_total{status="succeeded",workflow="pay-roll"} 7.0' in text
    assert b'flowker_execution_duration_seconds_count{workflow="pay-roll"} 7.0' in text

"""flowker.observability.metric_writes: the cached recorders write what prometheus-client
would (same files, same exposition), a forked child writes into its own pid's files, threads
lose no increment, and the cache stays bounded."""

from __future__ import annotations

import os
import threading

import pytest
from prometheus_client import values
from prometheus_client.mmap_dict import MmapedDict

from flowker.observability import metric_writes
from flowker.observability.metric_writes import CounterRecorder, GaugeRecorder, HistogramRecorder, recorder
from flowker.observability.metrics import MULTIPROCESS_ENV, Metrics, _Instruments, directory_exposition

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


def test_files_and_exposition_are_prometheus_clients_own(tmp_path, fresh_values):
    plain, flowker = str(tmp_path / "plain"), str(tmp_path / "flowker")
    os.mkdir(plain)
    os.mkdir(flowker)
    record_plainly(fresh_values(plain))
    metrics = Metrics(fresh_values(flowker), None, flowker)
    record_with_flowker(metrics)

    assert isinstance(recorder(metrics._i.steps, (WORKFLOW, "trigger", "succeeded")), CounterRecorder)
    assert isinstance(recorder(metrics._i.http_seconds, ("POST", ROUTE)), HistogramRecorder)
    assert isinstance(recorder(metrics._i.breaker_state, ("stub",)), GaugeRecorder)
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


def test_a_forked_child_writes_its_own_files(tmp_path, fresh_values):
    directory = str(tmp_path)
    metrics = Metrics(fresh_values(directory), None, directory)
    for _ in range(3):  # the parent's recorders exist (cached) before the fork
        metrics.execution_ended(WORKFLOW, "succeeded", 0.02)
    parent = os.getpid()

    child = os.fork()
    if child == 0:  # pragma: no cover - the child's result is its exit status
        code = 1
        try:
            for _ in range(5):
                metrics.execution_ended(WORKFLOW, "succeeded", 0.02)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0

    metrics.execution_ended(WORKFLOW, "succeeded", 0.02)  # the parent's recorders still write its file
    assert counter_in(directory, "flowker_executions_total", parent) == 4
    assert counter_in(directory, "flowker_executions_total", child) == 5
    text = directory_exposition(directory)
    assert b'flowker_executions_total{status="succeeded",workflow="pay-roll"} 9.0' in text
    assert b'flowker_execution_duration_seconds_bucket{le="0.025",workflow="pay-roll"} 9.0' in text
    assert b'flowker_execution_duration_seconds_count{workflow="pay-roll"} 9.0' in text


def test_threads_lose_no_increment(tmp_path, fresh_values):
    directory = str(tmp_path)
    metrics = Metrics(fresh_values(directory), None, directory)
    threads, writes = 8, 4000
    plain_steps = metrics._i.steps.labels(WORKFLOW, "call", "succeeded")
    start = threading.Barrier(threads + 1)

    def record() -> None:
        start.wait()
        for _ in range(writes):
            metrics.step_settled(WORKFLOW, "call", "succeeded")
            metrics.http_request("POST", ROUTE, 201, 0.002)

    def record_plainly() -> None:  # the library's own writes, under the same lock
        start.wait()
        for _ in range(writes):
            plain_steps.inc()

    workers = [threading.Thread(target=record) for _ in range(threads)] + [threading.Thread(target=record_plainly)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
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

"""Circuit breakers: one per executor, opened by consecutive failures, half-open trials."""

from __future__ import annotations

import threading
import time

import pytest

from flowker.errors import CircuitOpenError
from flowker.runner.breakers import BreakerBoard, ExecutorBreaker, NetworkError
from flowker.storage.models import AuditEntry

from runner_helpers import run_call


def test_open_breaker_fails_the_next_step_at_once_and_recovers(service, http_server, token_env):
    http_server.recorder.set((503, {}, {"error": "down"}))
    execution, step = run_call(service, http_server.url)
    assert step.attempts == 5 and len(http_server.requests) == 5  # threshold 5 reached
    assert service.breakers.states()[next(iter(service.breakers.states()))] == "open"

    http_server.recorder.set((200, {}, {"ok": True}))
    durations = []
    for _ in range(3):  # the best of three: a loaded CI core may deschedule one of them
        execution, step = run_call(service, http_server.url)
        assert execution.status == "failed"
        assert len(http_server.requests) == 5  # no request reached the server
        assert step.attempts == 0
        assert step.call_details["errorCode"] == "FLK-0507"
        assert "circuit breaker" in step.error_message
        durations.append(step.call_details["durationMs"])
    assert min(durations) < 1.0, durations
    failed = (
        AuditEntry.select().where(AuditEntry.event_type == "STEP_FAILED").order_by(AuditEntry.sequence.desc()).get()
    )
    assert '"errorCode":"FLK-0507"' in failed.canonical

    time.sleep(0.55)  # cb_recovery_seconds = 0.5: half-open, one trial goes through
    execution, step = run_call(service, http_server.url)
    assert execution.status == "completed" and step.attempts == 1
    assert len(http_server.requests) == 6
    assert set(service.breakers.states().values()) == {"closed"}


def test_failed_trial_reopens_the_breaker(service, http_server, token_env):
    http_server.recorder.set((500, {}, {}))
    run_call(service, http_server.url)
    time.sleep(0.55)
    execution, step = run_call(service, http_server.url)
    # The half-open trial fails, the breaker opens again, the retry is refused without a call.
    assert step.attempts == 1 and len(http_server.requests) == 6
    assert step.call_details["errorCode"] == "FLK-0507"


def test_4xx_does_not_count_against_the_breaker(service, http_server, token_env):
    http_server.recorder.set((404, {}, {}))
    for _ in range(6):
        run_call(service, http_server.url)
    assert len(http_server.requests) == 6
    assert set(service.breakers.states().values()) == {"closed"}


def test_breakers_are_per_executor(service, http_server, token_env):

    http_server.recorder.set((500, {}, {}))
    run_call(service, http_server.url, executor_name="flaky")
    http_server.recorder.set((200, {}, {"ok": True}))
    execution, step = run_call(service, http_server.url, executor_name="healthy")
    assert execution.status == "completed"


def test_breakers_are_shared_by_every_service_on_the_database(service_factory, settings, http_server, token_env):
    first = service_factory(settings)
    http_server.recorder.set((500, {}, {}))
    run_call(first, http_server.url)
    second = service_factory(settings)  # another process's view: the same breaker
    http_server.recorder.set((200, {}, {}))
    execution, step = run_call(second, http_server.url)
    assert execution.status == "failed" and step.call_details["errorCode"] == "FLK-0507"
    assert "executor 'svc'" in step.error_message


def test_half_open_calls_come_from_the_settings():
    from flowker.errors import ConfigurationError
    from flowker.settings import Settings

    assert Settings().cb_half_open_calls == 1
    settings = Settings.load({"FLOWKER_CB_HALF_OPEN_CALLS": "4"})
    assert settings.cb_half_open_calls == 4 and BreakerBoard.from_settings(settings).half_open_calls == 4
    with pytest.raises(ConfigurationError, match="FLOWKER_CB_HALF_OPEN_CALLS"):
        Settings.load({"FLOWKER_CB_HALF_OPEN_CALLS": "0"})


# -- the breaker on its own ------------------------------------------------------------------


def test_half_open_lets_one_trial_through_at_a_time():
    breaker = ExecutorBreaker("x", failure_threshold=1, recovery_seconds=0.05)
    with pytest.raises(NetworkError):
        breaker.call_guarded(_raise(NetworkError("down")))
    with pytest.raises(CircuitOpenError):
        breaker.call_guarded(lambda: "never")
    time.sleep(0.06)
    inside, release = threading.Event(), threading.Event()
    results = []

    def trial():
        inside.set()
        release.wait(5)
        return "trial"

    worker = threading.Thread(target=lambda: results.append(breaker.call_guarded(trial)))
    worker.start()
    assert inside.wait(5)
    with pytest.raises(CircuitOpenError):  # a second caller while the trial is in flight
        breaker.call_guarded(lambda: "second")
    release.set()
    worker.join(5)
    assert results == ["trial"] and breaker.state == "closed"
    assert breaker.call_guarded(lambda: "after") == "after"


def test_only_transient_failures_count():
    breaker = ExecutorBreaker("y", failure_threshold=2, recovery_seconds=60)
    with pytest.raises(ValueError):
        breaker.call_guarded(_raise(ValueError("a bug")))
    with pytest.raises(ValueError):
        breaker.call_guarded(_raise(ValueError("a bug")))
    assert breaker.state == "closed" and breaker.failure_count == 0
    with pytest.raises(NetworkError):
        breaker.call_guarded(_raise(NetworkError("reset")))
    assert breaker.call_guarded(lambda: 1) == 1
    assert breaker.failure_count == 0  # a success resets the consecutive count


def test_board_uses_settings_values():
    board = BreakerBoard(failure_threshold=3, recovery_seconds=0)
    breaker = board.get("exec-1")
    assert board.get("exec-1") is breaker and board.get("exec-2") is not breaker
    for _ in range(3):
        with pytest.raises(NetworkError):
            breaker.call_guarded(_raise(NetworkError("x")))
    assert breaker.state in ("open", "half_open")  # recovery 0 must not mean "30 s" (the library default)
    time.sleep(0.01)
    assert breaker.state == "half_open"


def test_programming_errors_are_not_retried():
    """A bug inside the call propagates after one attempt (retrying's predicate refuses it)."""
    from flowker.runner.executor_client import CallRequest, ExecutorClient, ExecutorDefinition, RetryPolicy

    calls = []

    class BrokenSession:
        def request(self, *args, **kwargs):
            calls.append(1)
            raise TypeError("bug")

        def close(self):
            pass

    definition = ExecutorDefinition(
        "id", "svc", 1, "http://127.0.0.1:9", {"op": {"path": "/", "method": "GET"}}, {"type": "none"}
    )
    client = ExecutorClient(
        definition, BrokenSession(), ExecutorBreaker("id", 5, 30), RetryPolicy(5, 0.01), redact_url=str, scrub_text=str
    )
    with pytest.raises(TypeError):
        client.call(CallRequest(endpoint="op"), auth=None, deadline=time.monotonic() + 10)
    assert len(calls) == 1


def _raise(exc):
    def function():
        raise exc

    return function

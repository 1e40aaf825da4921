"""Executor calls against a real HTTP server on 127.0.0.1: requests, retries, timeouts,
resets, bodies, and what is recorded."""

from __future__ import annotations

import json
import time


from flowker.storage.models import AuditEntry

from runner_helpers import BEARER_TOKEN, run_call


def gaps(times):
    return [round(b - a, 3) for a, b in zip(times, times[1:])]


def test_success_sends_the_request_and_records_the_call(service, http_server, token_env):
    http_server.recorder.set((200, {"X-Trace": "t1"}, {"score": 42, "items": [1, 2]}))
    execution, step = run_call(
        service,
        http_server.url,
        endpoint={"name": "get-case", "path": "/v1/cases/{caseId}/notes", "method": "POST", "timeout": 5},
        data={
            "pathParams": {"caseId": "${{ workflow.case }}"},
            "query": {"page": 2, "tags": ["a", "b"]},
            "headers": {"X-Correlation-Id": "c-${{ workflow.case }}"},
            "body": {"amount": "${{ workflow.amount }}"},
        },
        input_data={"case": "a/b c", "amount": 12.5},
    )
    assert execution.status == "completed", execution.error_message
    request = http_server.requests[0]
    assert request.method == "POST"
    assert request.path == "/v1/cases/a/b c/notes" or request.path == "/v1/cases/a%2Fb%20c/notes"
    assert request.query_string.startswith("page=2&tags=a&tags=b")
    assert request.header("Authorization") == f"Bearer {BEARER_TOKEN}"
    assert request.header("X-Correlation-Id") == "c-a/b c"
    assert request.header("Idempotency-Key") == f"{execution.id}:call"
    assert request.json() == {"amount": 12.5}
    assert step.output["status"] == 200 and step.output["body"] == {"score": 42, "items": [1, 2]}
    assert step.output["headers"]["X-Trace"] == "t1"
    assert step.attempts == 1
    details = step.call_details
    assert details["method"] == "POST" and details["statusCode"] == 200 and details["attempts"] == 1
    assert "%2F" in details["url"]  # the path parameter was encoded, not allowed to add a segment
    # The token is in no stored row and no audit entry.
    assert BEARER_TOKEN not in json.dumps([step.input_data, step.output, details])
    assert all(BEARER_TOKEN not in entry.canonical for entry in AuditEntry.select())
    kinds = [e.event_type for e in AuditEntry.select().order_by(AuditEntry.sequence)]
    assert kinds == [
        "EXECUTION_STARTED",
        "STEP_COMPLETED",
        "PROVIDER_CALL_STARTED",
        "PROVIDER_CALL_COMPLETED",
        "STEP_COMPLETED",
        "EXECUTION_COMPLETED",
    ]


def test_output_mapping_reads_the_nodes_own_response(service, http_server, token_env):
    http_server.recorder.set((200, {}, {"result": {"score": 77}}))
    execution, step = run_call(
        service,
        http_server.url,
        data={"output": {"score": "${{ nodes.call.body.result.score }}", "ok": "${{ nodes.call.status == 200 }}"}},
    )
    assert step.output == {"score": 77, "ok": True}
    assert execution.final_output["call"] == {"score": 77, "ok": True}


def test_5xx_twice_then_success_takes_three_attempts_with_doubling_waits(
    service_factory, settings, http_server, token_env
):
    service = service_factory(settings.replace(retry_base_seconds=0.1))
    http_server.recorder.set((503, {}, {"e": 1}), (502, {}, "bad gateway"), (200, {}, {"ok": True}))
    execution, step = run_call(service, http_server.url)
    assert execution.status == "completed"
    assert step.attempts == 3 and len(http_server.requests) == 3
    first, second = gaps(http_server.recorder.times)  # base, then 2 x base
    assert 0.1 <= first < 0.19 and 0.2 <= second < 0.35, (first, second)
    keys = {r.header("Idempotency-Key") for r in http_server.requests}
    assert keys == {f"{execution.id}:call"}  # the same key on every attempt
    log = step.call_details["attemptLog"]
    assert [a.get("statusCode") for a in log] == [503, 502, 200]
    events = [e.event_type for e in AuditEntry.select().order_by(AuditEntry.sequence)]
    assert events.count("PROVIDER_CALL_STARTED") == 3
    assert events.count("PROVIDER_CALL_FAILED") == 2 and events.count("PROVIDER_CALL_COMPLETED") == 1


def test_persistent_5xx_fails_after_exactly_five_attempts(service, http_server, token_env):
    http_server.recorder.set((500, {}, {"error": "boom"}))
    execution, step = run_call(service, http_server.url)
    assert execution.status == "failed"
    assert step.status == "failed" and step.attempts == 5 and len(http_server.requests) == 5
    assert "HTTP 500 after 5 attempts" in step.error_message
    assert step.output["status"] == 500 and step.output["body"] == {"error": "boom"}
    assert gaps(http_server.recorder.times)[-1] >= 0.39  # 0.05, 0.1, 0.2, 0.4


def test_404_fails_at_once(service, http_server, token_env):
    http_server.recorder.set((404, {}, {"error": "no such case"}))
    execution, step = run_call(service, http_server.url)
    assert execution.status == "failed"
    assert step.attempts == 1 and len(http_server.requests) == 1
    assert "HTTP 404" in step.error_message


def test_429_honours_retry_after(service, http_server, token_env):
    http_server.recorder.set((429, {"Retry-After": "1"}, {"error": "slow down"}), (200, {}, {"ok": True}))
    execution, step = run_call(service, http_server.url)
    assert execution.status == "completed" and step.attempts == 2
    (gap,) = gaps(http_server.recorder.times)
    assert 0.95 <= gap < 1.5  # Retry-After (1 s), not the 0.05 s backoff


def test_retry_after_beyond_the_deadline_stops_retrying(service_factory, settings, http_server, token_env):
    service = service_factory(settings.replace(execution_timeout_seconds=2))
    http_server.recorder.set((503, {"Retry-After": "30"}, {"error": "maintenance"}))
    started = time.monotonic()
    execution, step = run_call(service, http_server.url)
    assert time.monotonic() - started < 1.5
    assert step.attempts == 1 and execution.status == "failed"
    assert "execution deadline" in step.error_message


def test_retry_budget_never_exceeds_the_execution_deadline(service_factory, settings, http_server, token_env):
    service = service_factory(settings.replace(execution_timeout_seconds=1.0, retry_base_seconds=0.2))
    http_server.recorder.set((500, {}, {}))
    started = time.monotonic()
    execution, step = run_call(service, http_server.url)
    elapsed = time.monotonic() - started
    assert execution.status == "failed"
    # Attempts at about 0, 0.2 and 0.6 s; the next wait (0.8 s) would pass the 1 s deadline,
    # so the retries stop early instead of running all 5 attempts (which would take 3 s).
    assert step.attempts in (2, 3), step.attempts
    assert elapsed < 1.0
    assert "execution deadline" in step.error_message


def test_read_timeout_is_retried(service, http_server, token_env):
    def slow(request):
        time.sleep(0.6)
        return 200, {}, {"late": True}

    http_server.recorder.set(slow, (200, {}, {"ok": True}))
    execution, step = run_call(service, http_server.url, data={"timeout": 0.2})
    assert execution.status == "completed"
    assert step.attempts == 2
    first = step.call_details["attemptLog"][0]
    assert first["outcome"] == "network-error" and "0.2 s" in first["error"]


def test_persistent_timeouts_fail_the_step(service, http_server, token_env):
    def slow(request):
        time.sleep(0.3)
        return 200, {}, {}

    http_server.recorder.set(slow)
    execution, step = run_call(service, http_server.url, data={"timeout": 0.1})
    assert execution.status == "failed" and step.attempts == 5
    assert "no answer within 0.1 s" in step.error_message


def test_connection_reset_is_retried_then_fails(service, reset_server, token_env):
    execution, step = run_call(service, reset_server.url)
    assert execution.status == "failed"
    assert step.attempts == 5 and reset_server.connections == 5
    assert "after 5 attempts" in step.error_message
    assert step.call_details["statusCode"] is None


def test_connection_refused_is_a_network_error(service, token_env):
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    execution, step = run_call(service, f"http://127.0.0.1:{port}")
    assert step.attempts == 5 and "connection refused" in step.error_message


def test_non_json_body_is_kept_as_text(service, http_server, token_env):
    http_server.recorder.set((200, {"Content-Type": "text/plain"}, "plain words"))
    execution, step = run_call(service, http_server.url)
    assert execution.status == "completed"
    assert step.output["body"] == "plain words"


def test_broken_json_is_kept_as_text(service, http_server, token_env):
    http_server.recorder.set((200, {"Content-Type": "application/json"}, "{not json"))
    execution, step = run_call(service, http_server.url)
    assert step.output["body"] == "{not json"


def test_oversized_response_fails_without_retry(service, http_server, token_env):
    http_server.recorder.set((200, {"Content-Type": "text/plain"}, b"x" * (10 * 1024 * 1024 + 10)))
    execution, step = run_call(service, http_server.url)
    assert execution.status == "failed" and step.attempts == 1
    assert "larger than" in step.error_message


def test_missing_secret_fails_the_step_naming_the_variable(service, http_server, monkeypatch):
    monkeypatch.delenv("RUNNER_TEST_TOKEN", raising=False)
    execution, step = run_call(service, http_server.url)
    assert execution.status == "failed" and len(http_server.requests) == 0
    assert "environment variable RUNNER_TEST_TOKEN is not set (authentication.config.token)" in step.error_message


def test_unknown_and_disabled_executors_fail_the_step(service, http_server, token_env):
    from flowker.storage.models import Executor

    execution, step = run_call(service, http_server.url, executor_name="svc")
    Executor.update(status="disabled").where(Executor.name == "svc").execute()
    execution, step = run_call(service, http_server.url, executor_name="svc")
    assert execution.status == "failed" and "disabled" in step.error_message
    assert len(http_server.requests) == 1


def test_api_key_in_query_is_redacted_from_the_record(service, http_server, monkeypatch):
    monkeypatch.setenv("RUNNER_QUERY_KEY", "query-key-12345")
    auth = {
        "type": "api_key",
        "config": {"key": {"$env": "RUNNER_QUERY_KEY"}, "location": "query", "query_param_name": "apikey"},
    }
    execution, step = run_call(
        service, http_server.url, authentication=auth, executor_name="q", data={"query": {"page": 1}}
    )
    assert http_server.requests[0].query == {"page": "1", "apikey": "query-key-12345"}
    assert "query-key-12345" not in json.dumps(step.call_details)
    assert all("query-key-12345" not in e.canonical for e in AuditEntry.select())


def test_echoed_secret_is_scrubbed_from_the_stored_output(service, http_server, token_env):
    def echo(request):
        return 200, {}, {"seen": request.header("Authorization")}

    http_server.recorder.set(echo)
    execution, step = run_call(service, http_server.url)
    assert BEARER_TOKEN not in json.dumps(step.output)
    assert BEARER_TOKEN not in json.dumps(execution.final_output)


def test_execution_deadline_cuts_a_slow_call(service_factory, settings, http_server, token_env):
    service = service_factory(settings.replace(execution_timeout_seconds=0.6))

    def slow(request):
        time.sleep(1.0)
        return 200, {}, {}

    http_server.recorder.set(slow)
    started = time.monotonic()
    execution, step = run_call(
        service,
        http_server.url,
        data={"timeout": 5},
        extra_nodes=[{"id": "after", "type": "action", "data": {"actionType": "log", "message": "after"}}],
        extra_edges=[{"source": "call", "target": "after"}],
    )
    assert time.monotonic() - started < 0.95  # the 5 s node timeout was cut to the deadline
    assert execution.status == "failed" and step.attempts == 1
    assert "execution deadline" in step.error_message

"""Traces (DESIGN §14) from a real ``flowker serve`` to a local OTLP/HTTP receiver.

The server runs with only the standard ``OTEL_*`` variables pointing at
:class:`otlp_receiver.OtlpReceiver` (127.0.0.1, decoding ``ExportTraceServiceRequest``
with opentelemetry-proto); the executor is a stub on 127.0.0.1 that records the
``traceparent`` each call brings. Checked: span names, parent links (the execution under
the request's ``traceparent``, steps under the execution, one client span per attempt under
its step), the semantic-convention attributes, the ``traceparent`` the executor received,
``traceId`` in the answers, and no secret anywhere in what was exported.
"""

from __future__ import annotations

import re
import signal
import secrets
import threading

import pytest

from e2e_helpers import SCORER_TOKEN, api_session, flowker_env, poll, run_flowker
from flowker.local_server import LocalHTTPServer
from otlp_receiver import OtlpReceiver, ReceivedSpan

YAML = {"Content-Type": "application/yaml"}
QUERY_KEY = "canary-query-key-7d1f0c2b9a"  # the second executor's api key, sent in the query string
TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]$")


class TracingStub:
    """The executor service: records each call's traceparent; ``/flaky`` answers 503 twice."""

    def __init__(self):
        self.calls: list[tuple[str, str | None]] = []  # (path, traceparent)
        self._lock = threading.Lock()
        self.flaky_left = 2

    def __call__(self, request):
        with self._lock:
            self.calls.append((request.path, request.header("traceparent")))
            if request.path == "/flaky" and self.flaky_left > 0:
                self.flaky_left -= 1
                return 503, {}, {"error": "busy"}
        return 200, {}, {"score": 7}


@pytest.fixture
def receiver():
    with OtlpReceiver() as started:
        yield started


@pytest.fixture
def stub():
    handler = TracingStub()
    with LocalHTTPServer(handler) as server:
        server.handler_state = handler
        yield server


def otel_env(receiver: OtlpReceiver) -> dict:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_SERVICE_NAME": "flowker-e2e",
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        "E2E_QUERY_KEY": QUERY_KEY,
    }


def executors_yaml(base_url: str) -> tuple[str, str]:
    bearer = f"""\
kind: Executor
name: scorer
baseUrl: {base_url}
endpoints:
  - {{name: score, path: /score, method: POST, timeout: 10}}
  - {{name: flaky, path: /flaky, method: POST, timeout: 10}}
authentication:
  type: bearer
  config: {{token: {{$env: E2E_SCORER_TOKEN}}}}
"""
    query_key = f"""\
kind: Executor
name: lookup
baseUrl: {base_url}
endpoints:
  - {{name: find, path: /find, method: GET, timeout: 10}}
authentication:
  type: api_key
  config: {{key: {{$env: E2E_QUERY_KEY}}, location: query, query_param_name: signature}}
"""
    return bearer, query_key


WORKFLOW = """\
kind: Workflow
name: traced
nodes:
  - {id: start, type: trigger, data: {triggerType: webhook, path: /traced, method: POST}}
  - id: score
    type: executor
    data: {executor: scorer, endpoint: score, body: {amount: "${{ workflow.amount }}"}}
  - id: find
    type: executor
    data: {executor: lookup, endpoint: find, query: {q: "${{ string(workflow.amount) }}"}}
  - {id: done, type: action, data: {actionType: set_output, output: {score: "${{ nodes.score.body.score }}"}}}
edges:
  - {source: start, target: score}
  - {source: score, target: find}
  - {source: find, target: done}
"""

FLAKY_WORKFLOW = """\
kind: Workflow
name: traced-flaky
nodes:
  - {id: start, type: trigger, data: {triggerType: manual}}
  - id: call
    type: executor
    data: {executor: scorer, endpoint: flaky, body: {}}
edges:
  - {source: start, target: call}
"""


def apply(api, url: str, stub_url: str) -> dict[str, str]:
    for document in executors_yaml(stub_url):
        response = api.post(f"{url}/v1/executors", data=document, headers=YAML)
        assert response.status_code == 201, response.text
    ids = {}
    for document in (WORKFLOW, FLAKY_WORKFLOW):
        response = api.post(f"{url}/v1/workflows", data=document, headers=YAML)
        assert response.status_code == 201, response.text
        workflow_id = response.json()["workflowId"]
        assert api.post(f"{url}/v1/workflows/{workflow_id}/activate").status_code == 200
        ids[document.split("name: ", 1)[1].split("\n", 1)[0]] = workflow_id
    return ids


def incoming_traceparent() -> tuple[str, str, str]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def spans_of(spans: list[ReceivedSpan], trace_id: str) -> list[ReceivedSpan]:
    return [span for span in spans if span.trace_id == trace_id]


def one(spans: list[ReceivedSpan], name: str, **attributes) -> ReceivedSpan:
    found = [
        span
        for span in spans
        if span.name == name and all(span.attributes.get(key) == value for key, value in attributes.items())
    ]
    assert len(found) == 1, (name, attributes, [(s.name, s.attributes) for s in spans])
    return found[0]


def complete_trace(count: int):
    return lambda spans: len(spans) >= count


def assert_no_secret(spans: list[ReceivedSpan], bodies: list[bytes]) -> None:
    for canary in (SCORER_TOKEN, QUERY_KEY):
        for span in spans:
            assert not any(canary in value for value in span.values()), (canary, span)
        assert not any(canary.encode() in body for body in bodies), canary


def test_rest_and_webhook_runs_continue_the_callers_trace(start_server, receiver, stub):
    server = start_server(env=otel_env(receiver))
    api, url = api_session(), server.url
    ids = apply(api, url, stub.url)
    workflow_id = ids["traced"]

    # REST, synchronous, continuing the caller's trace.
    header, trace_id, parent_span = incoming_traceparent()
    response = api.post(
        f"{url}/v1/workflows/{workflow_id}/executions",
        json={"inputData": {"amount": 5}},
        headers={"traceparent": header},
    )
    assert response.status_code == 201, response.text
    execution = response.json()
    assert execution["status"] == "completed" and execution["traceId"] == trace_id
    results = api.get(f"{url}/v1/executions/{execution['executionId']}/results").json()
    assert results["traceId"] == trace_id

    # execution + 4 steps + 2 client spans
    spans = spans_of(receiver.wait_for(lambda s: len(spans_of(s, trace_id)) >= 7, "the REST run's spans"), trace_id)
    assert sorted(span.name for span in spans) == sorted(
        ["flowker.execution"] + ["flowker.step"] * 4 + ["POST", "GET"]
    ), [span.name for span in spans]
    run = one(spans, "flowker.execution")
    assert run.parent_span_id == parent_span and run.kind == "INTERNAL"
    assert run.attributes["flowker.execution.id"] == execution["executionId"]
    assert run.attributes["flowker.workflow.name"] == "traced"
    assert run.attributes["flowker.execution.status"] == "completed"
    assert run.resource["service.name"] == "flowker-e2e"
    steps = {span.attributes["flowker.node.id"]: span for span in spans if span.name == "flowker.step"}
    assert set(steps) == {"start", "score", "find", "done"}
    for node_id, node_type in (("start", "trigger"), ("score", "executor"), ("find", "executor"), ("done", "action")):
        step = steps[node_id]
        assert step.parent_span_id == run.span_id
        assert step.attributes["flowker.node.type"] == node_type
        assert step.attributes["flowker.workflow.name"] == "traced"
        assert step.attributes["flowker.execution.id"] == execution["executionId"]
        assert "error.type" not in step.attributes

    score_call = one(spans, "POST")
    assert score_call.kind == "CLIENT" and score_call.parent_span_id == steps["score"].span_id
    assert score_call.attributes["http.request.method"] == "POST"
    assert score_call.attributes["url.full"] == f"{stub.url}/score"
    assert score_call.attributes["http.response.status_code"] == 200
    assert score_call.attributes["server.address"] == "127.0.0.1"
    assert "error.type" not in score_call.attributes
    find_call = one(spans, "GET")
    assert find_call.parent_span_id == steps["find"].span_id
    # The query as sent, the api key the auth added masked.
    assert find_call.attributes["url.full"] == f"{stub.url}/find?q=5&signature=****"

    # The executor got each attempt's own span as its parent.
    calls = dict(stub.handler_state.calls)
    assert calls["/score"] == f"00-{trace_id}-{score_call.span_id}-01"
    assert calls["/find"] == f"00-{trace_id}-{find_call.span_id}-01"

    # A webhook run continues its caller's trace the same way.
    header, webhook_trace, webhook_parent = incoming_traceparent()
    response = api.post(f"{url}/v1/webhooks/traced", json={"amount": 9}, headers={"traceparent": header})
    assert response.status_code == 201, response.text
    assert response.json()["traceId"] == webhook_trace
    spans = spans_of(
        receiver.wait_for(lambda s: len(spans_of(s, webhook_trace)) >= 7, "the webhook's spans"), webhook_trace
    )
    assert one(spans, "flowker.execution").parent_span_id == webhook_parent

    # Without a traceparent: a new trace, its id in the results.
    response = api.post(f"{url}/v1/workflows/{workflow_id}/executions", json={"inputData": {"amount": 1}})
    fresh = response.json()["traceId"]
    assert re.fullmatch(r"[0-9a-f]{32}", fresh) and fresh not in (trace_id, webhook_trace)
    spans = spans_of(receiver.wait_for(lambda s: len(spans_of(s, fresh)) >= 7, "the new trace's spans"), fresh)
    assert one(spans, "flowker.execution").parent_span_id == ""

    assert_no_secret(receiver.received(), receiver.bodies)


def test_async_runs_and_retries_are_traced(start_server, receiver, stub):
    server = start_server(env=otel_env(receiver))
    api, url = api_session(), server.url
    workflow_id = apply(api, url, stub.url)["traced-flaky"]

    header, trace_id, parent_span = incoming_traceparent()
    response = api.post(
        f"{url}/v1/workflows/{workflow_id}/executions",
        json={"inputData": {}},
        headers={"traceparent": header, "Prefer": "respond-async"},
    )
    assert response.status_code == 202, response.text
    execution_id = response.json()["executionId"]
    results = poll(
        lambda: api.get(f"{url}/v1/executions/{execution_id}/results"),
        lambda r: r.status_code == 200,
        "the async run's results",
    ).json()
    assert results["status"] == "completed" and results["traceId"] == trace_id

    # The execution, two steps, three attempts (503, 503, 200).
    spans = spans_of(receiver.wait_for(lambda s: len(spans_of(s, trace_id)) >= 6, "the async run's spans"), trace_id)
    run = one(spans, "flowker.execution")
    assert run.parent_span_id == parent_span
    step = one(spans, "flowker.step", **{"flowker.node.id": "call"})
    attempts = sorted(
        (span for span in spans if span.name == "POST"), key=lambda s: s.attributes.get("http.request.resend_count", 0)
    )
    assert [span.attributes["http.response.status_code"] for span in attempts] == [503, 503, 200]
    assert [span.attributes.get("error.type") for span in attempts] == ["503", "503", None]
    assert [span.status_code for span in attempts] == [2, 2, 0]
    assert [span.attributes.get("http.request.resend_count") for span in attempts] == [None, 1, 2]
    assert all(span.parent_span_id == step.span_id for span in attempts)
    received = [traceparent for path, traceparent in stub.handler_state.calls if path == "/flaky"]
    assert received == [f"00-{trace_id}-{span.span_id}-01" for span in attempts]
    assert_no_secret(receiver.received(), receiver.bodies)


def test_a_failed_step_and_flowker_run_export_their_spans(tmp_path, receiver):
    """``flowker run`` (its own temporary SQLite) exports before it exits and names the
    trace; a failed step says why."""
    with LocalHTTPServer(lambda request: (404, {}, {"error": "no"})) as missing:
        (tmp_path / "executors").mkdir()
        (tmp_path / "workflows").mkdir()
        (tmp_path / "executors" / "scorer.yaml").write_text(executors_yaml(missing.url)[0])
        (tmp_path / "workflows" / "one.yaml").write_text(FLAKY_WORKFLOW.replace("flaky, body", "score, body"))
        env = flowker_env(f"sqlite:///{tmp_path}/unused.db", **otel_env(receiver))
        env.pop("FLOWKER_DATABASE_URL")
        done = run_flowker(["run", str(tmp_path / "workflows" / "one.yaml"), "--input", "{}"], env)
    assert done.returncode == 1, done.stderr
    match = re.search(r"trace id ([0-9a-f]{32})", done.stderr)
    assert match, done.stderr
    trace_id = match.group(1)
    # Exported before the command returned: no waiting here.
    spans = spans_of(receiver.received(), trace_id)
    run = one(spans, "flowker.execution")
    assert run.attributes["flowker.execution.status"] == "failed" and run.status_code == 2
    step = one(spans, "flowker.step", **{"flowker.node.id": "call"})
    assert step.status_code == 2 and step.attributes["error.type"].startswith("FLK-")
    assert run.attributes["error.type"] == step.attributes["error.type"]
    call = one(spans, "POST")
    assert call.attributes["http.response.status_code"] == 404 and call.attributes["error.type"] == "404"
    assert_no_secret(spans, receiver.bodies)


def test_a_stopping_worker_exports_what_is_queued(start_server, receiver, stub):
    """With an export delay far beyond the test, the spans arrive only because the worker
    flushes them when it exits (gunicorn's worker_exit)."""
    env = {**otel_env(receiver), "OTEL_BSP_SCHEDULE_DELAY": "600000"}
    server = start_server(env=env, workers=1)
    api, url = api_session(), server.url
    workflow_id = apply(api, url, stub.url)["traced"]
    response = api.post(f"{url}/v1/workflows/{workflow_id}/executions", json={"inputData": {"amount": 3}})
    assert response.status_code == 201, response.text
    trace_id = response.json()["traceId"]
    assert spans_of(receiver.received(), trace_id) == []  # still queued in the worker
    server.send(signal.SIGTERM)
    assert server.wait_exit() == 0
    spans = spans_of(receiver.received(), trace_id)
    assert sorted(span.name for span in spans) == sorted(["flowker.execution"] + ["flowker.step"] * 4 + ["POST", "GET"])

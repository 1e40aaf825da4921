"""``POST /v1/executions/{id}/retry`` end to end: ``flowker serve`` as a real process (its
workers work the queue) on SQLite and PostgreSQL, and a real stub service that answers
400 at step 4 until it is fixed and records each call's Idempotency-Key."""

from __future__ import annotations

import threading
import uuid

from flowker.local_server import LocalHTTPServer
import pytest

from e2e_helpers import API_KEY, api_session, poll

YAML = {"Content-Type": "application/yaml"}
VIEWER_KEY = f"e2e-viewer-{uuid.uuid4().hex}"
OPERATOR_KEY = f"e2e-operator-{uuid.uuid4().hex}"
KEYS = f"e2e:{API_KEY},viewer:{VIEWER_KEY}:viewer,operator:{OPERATOR_KEY}:operator"

EXECUTOR = """\
kind: Executor
name: ledger
baseUrl: {base_url}
endpoints:
  - {{name: reserve, path: /reserve, method: POST}}
  - {{name: check, path: /check, method: POST}}
  - {{name: book, path: /book, method: POST}}
authentication: {{type: none}}
"""

WORKFLOW = """\
kind: Workflow
name: booking
nodes:
  - {id: start, type: trigger, data: {triggerType: manual}}
  - {id: reserve, type: executor, data: {executor: ledger, endpoint: reserve, body: {amount: "${{ workflow.amount }}"}}}
  - {id: check, type: executor, data: {executor: ledger, endpoint: check, body: {id: "${{ nodes.reserve.body.id }}"}}}
  - {id: book, type: executor, data: {executor: ledger, endpoint: book, body: {id: "${{ nodes.reserve.body.id }}"}}}
  - {id: done, type: action, data: {actionType: set_output, output: {booked: "${{ nodes.book.body.id }}"}}}
edges:
  - {source: start, target: reserve}
  - {source: reserve, target: check}
  - {source: check, target: book}
  - {source: book, target: done}
"""


class Ledger:
    """/book answers 400 until ``fixed``; every call's (path, Idempotency-Key) is kept."""

    def __init__(self):
        self.fixed = False
        self.calls: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def __call__(self, request):
        with self._lock:
            self.calls.append((request.path, request.header("Idempotency-Key")))
        if request.path == "/book" and not self.fixed:
            return 400, {}, {"error": "the ledger is closed"}
        return 200, {}, {"id": "r-1", "path": request.path}


@pytest.fixture
def ledger():
    handler = Ledger()
    with LocalHTTPServer(handler) as server:
        server.ledger = handler
        yield server


def test_retry_runs_again_from_the_failed_step(start_server, ledger):
    server = start_server(api_keys=KEYS)
    url = server.url
    admin, operator, viewer = api_session(), api_session(OPERATOR_KEY), api_session(VIEWER_KEY)
    assert admin.post(f"{url}/v1/executors", data=EXECUTOR.format(base_url=ledger.url), headers=YAML).status_code == 201
    created = admin.post(f"{url}/v1/workflows", data=WORKFLOW, headers=YAML)
    assert created.status_code == 201, created.text
    workflow_id = created.json()["workflowId"]
    assert admin.post(f"{url}/v1/workflows/{workflow_id}/activate").status_code == 200

    first = operator.post(f"{url}/v1/workflows/{workflow_id}/executions", json={"inputData": {"amount": 5}})
    assert first.status_code == 201 and first.json()["status"] == "failed", first.text
    original = first.json()["executionId"]
    assert "'book'" in first.json()["errorMessage"]

    refused = viewer.post(f"{url}/v1/executions/{original}/retry")
    assert refused.status_code == 403 and refused.json()["code"] == "FLK-0403", refused.text

    ledger.ledger.fixed = True
    retried = operator.post(f"{url}/v1/executions/{original}/retry")
    assert retried.status_code == 202, retried.text
    retry = retried.json()["executionId"]
    assert retried.json()["retryOf"] == original and retried.headers["Location"] == f"/v1/executions/{retry}"
    done = poll(
        lambda: admin.get(f"{url}/v1/executions/{retry}").json(),
        lambda view: view["status"] in ("completed", "failed"),
        "the retry to be run by the server's queue worker",
    )
    assert done["status"] == "completed" and done["retryOf"] == original, done
    assert admin.get(f"{url}/v1/executions/{original}").json()["retriedBy"] == retry
    results = admin.get(f"{url}/v1/executions/{retry}/results").json()
    assert results["finalOutput"] == {"booked": "r-1"}
    assert [step["status"] for step in results["stepResults"]] == ["completed"] * 5

    # reserve and check ran once (the first run); book ran again, with the retry's own key.
    assert ledger.ledger.calls == [
        ("/reserve", f"{original}:reserve"),
        ("/check", f"{original}:check"),
        ("/book", f"{original}:book"),
        ("/book", f"{retry}:book"),
    ]
    # Audited: the original names its retry, by the operator; the chain verifies.
    events = admin.get(f"{url}/v1/audit-events", params={"resourceId": original, "limit": 100}).json()["items"]
    retried_event = next(event for event in events if event["eventType"] == "EXECUTION_RETRIED")
    assert retried_event["metadata"]["retriedBy"] == retry and retried_event["actor"]["id"] == "operator"
    response = admin.get(f"{url}/v1/audit-events/{retried_event['eventId']}/verify")
    assert response.status_code == 200 and response.json()["isValid"] is True, response.text
    again = operator.post(f"{url}/v1/executions/{original}/retry")
    assert again.status_code == 409 and again.json()["code"] == "FLK-0531"

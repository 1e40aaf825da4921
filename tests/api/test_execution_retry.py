"""``POST /v1/executions/{id}/retry`` on both backends, with a real stub service that
records each call's Idempotency-Key: the failed step runs again, the completed ones are
reused (never called again), the runs are linked both ways, the retry is audited, and the
caller needs the run permission."""

from __future__ import annotations

import json
import uuid

import falcon.testing
import pytest

from flowker.audit.chain import verify_chain
from flowker.local_server import LocalHTTPServer
from flowker.storage.models import AuditEntry

from api_helpers import API_KEY, create_workflow

VIEWER_KEY = f"viewer-{uuid.uuid4().hex}"
OPERATOR_KEY = f"operator-{uuid.uuid4().hex}"
KEYS = f"ci-bot:{API_KEY},viewer-caller:{VIEWER_KEY}:viewer,operator-caller:{OPERATOR_KEY}:operator"


class FixableStub:
    """/one and /two answer at once; /three answers 400 until :attr:`fixed`."""

    def __init__(self):
        self.fixed = False

    def __call__(self, request):
        if request.path == "/three" and not self.fixed:
            return 400, {}, {"error": "amount too large"}
        return 200, {}, {"path": request.path, "ok": True}


@pytest.fixture
def service_stub():
    handler = FixableStub()
    with LocalHTTPServer(handler) as server:
        server.handler_state = handler
        yield server


@pytest.fixture
def retry_app(make_app):
    return make_app(settings={"api_keys": KEYS})


def _client(app, key: str):
    return falcon.testing.TestClient(app, headers={"X-API-Key": key})


def _chain_workflow(client, base_url: str) -> str:
    executor = {
        "name": "chain",
        "baseUrl": base_url,
        "endpoints": [{"name": name, "path": f"/{name}", "method": "POST"} for name in ("one", "two", "three")],
        "authentication": {"type": "bearer", "config": {"token": "stub-token-1234567"}},
    }
    assert client.simulate_post("/v1/executors", json=executor).status_code == 201
    nodes = [{"id": "start", "type": "trigger", "data": {"triggerType": "manual"}}]
    for name in ("one", "two", "three"):
        nodes.append(
            {"id": name, "type": "executor", "data": {"executor": "chain", "endpoint": name, "body": {"step": name}}}
        )
    nodes.append(
        {
            "id": "out",
            "type": "action",
            "data": {
                "actionType": "set_output",
                "output": {"one": "${{ nodes.one.body.path }}", "three": "${{ nodes.three.body.path }}"},
            },
        }
    )
    order = ["start", "one", "two", "three", "out"]
    body = {
        "name": "retried-chain",
        "nodes": nodes,
        "edges": [{"source": a, "target": b} for a, b in zip(order, order[1:])],
    }
    return create_workflow(client, body, activate=True)


def _work_the_queue(app) -> list[dict]:
    """What a worker does: claim the queued runs and run them."""
    from flowker.queue.claim import claim

    service = app.state.execution_service
    claimed = claim(service, limit=10).executions
    return [{"id": e.id, "status": service.run_claimed(e).status} for e in claimed]


def _calls(server) -> list[tuple[str, str]]:
    return [(request.path, request.header("Idempotency-Key")) for request in server.requests]


def _metadata(execution_id: str, event_type: str) -> tuple[dict, str]:
    entry = AuditEntry.get((AuditEntry.resource_id == execution_id) & (AuditEntry.event_type == event_type))
    return json.loads(entry.canonical)["payload"]["metadata"], entry.actor_id


def test_a_failed_run_is_retried_from_the_failed_step(retry_app, service_stub):
    admin = _client(retry_app, API_KEY)
    operator, viewer = _client(retry_app, OPERATOR_KEY), _client(retry_app, VIEWER_KEY)
    workflow_id = _chain_workflow(admin, service_stub.url)
    first = operator.simulate_post(f"/v1/workflows/{workflow_id}/executions", json={"inputData": {"n": 1}})
    assert first.status_code == 201 and first.json["status"] == "failed", first.text
    original = first.json["executionId"]
    assert first.json["currentStepNumber"] == 5  # three failed (step 4), out skipped

    # A viewer may not retry; the refusal changes nothing.
    refused = viewer.simulate_post(f"/v1/executions/{original}/retry")
    assert refused.status_code == 403 and refused.json["code"] == "FLK-0403"

    service_stub.handler_state.fixed = True
    retried = operator.simulate_post(f"/v1/executions/{original}/retry", headers={"Idempotency-Key": "fix-1"})
    assert retried.status_code == 202, retried.text
    retry = retried.json
    assert retry["status"] == "queued" and retry["retryOf"] == original and retry["workflowId"] == workflow_id
    assert retry["currentStepNumber"] == 3  # start, one, two: reused
    assert retried.headers["Location"] == f"/v1/executions/{retry['executionId']}"
    # The same key answers the same retry; a second retry is refused, naming the first.
    again = operator.simulate_post(f"/v1/executions/{original}/retry", headers={"Idempotency-Key": "fix-1"})
    assert again.status_code == 200 and again.json["executionId"] == retry["executionId"]
    second = operator.simulate_post(f"/v1/executions/{original}/retry")
    assert second.status_code == 409 and second.json["code"] == "FLK-0531"
    assert retry["executionId"] in second.json["message"] and set(second.json) >= {"code", "title", "message"}

    assert _work_the_queue(retry_app) == [{"id": retry["executionId"], "status": "completed"}]
    new_id = retry["executionId"]
    # one and two were not called again; three was, with the retry's own key.
    assert _calls(service_stub) == [
        ("/one", f"{original}:one"),
        ("/two", f"{original}:two"),
        ("/three", f"{original}:three"),
        ("/three", f"{new_id}:three"),
    ]
    # Linked both ways.
    assert admin.simulate_get(f"/v1/executions/{original}").json["retriedBy"] == new_id
    view = admin.simulate_get(f"/v1/executions/{new_id}").json
    assert view["status"] == "completed" and view["retryOf"] == original and "retriedBy" not in view
    results = admin.simulate_get(f"/v1/executions/{new_id}/results").json
    assert results["retryOf"] == original and results["finalOutput"] == {"one": "/one", "three": "/three"}
    assert [(s["nodeId"], s["status"]) for s in results["stepResults"]] == [
        ("start", "completed"),
        ("one", "completed"),
        ("two", "completed"),
        ("three", "completed"),
        ("out", "completed"),
    ]
    original_results = admin.simulate_get(f"/v1/executions/{original}/results").json
    assert results["stepResults"][:3] == original_results["stepResults"][:3]  # the reused records
    assert original_results["retriedBy"] == new_id
    listed = admin.simulate_get("/v1/executions", params={"workflowId": workflow_id, "limit": 10}).json["items"]
    assert {item["executionId"]: item.get("retryOf") for item in listed} == {original: None, new_id: original}

    # Audited on both: the original names its retry, the retry its original, by the operator.
    retried_meta, actor = _metadata(original, "EXECUTION_RETRIED")
    assert retried_meta["retriedBy"] == new_id and actor == "operator-caller"
    assert (retried_meta["reusedSteps"], retried_meta["fromStep"]) == (3, 4)
    queued_meta, actor = _metadata(new_id, "EXECUTION_QUEUED")
    assert queued_meta["retryOf"] == original and queued_meta["reusedSteps"] == 3 and actor == "operator-caller"
    assert verify_chain().is_valid


def test_only_a_failed_execution_can_be_retried(retry_app, service_stub):
    admin = _client(retry_app, API_KEY)
    workflow_id = _chain_workflow(admin, service_stub.url)
    service_stub.handler_state.fixed = True
    completed = admin.simulate_post(f"/v1/workflows/{workflow_id}/executions", json={"inputData": {}}).json
    assert completed["status"] == "completed"
    before = AuditEntry.select().count()
    refused = admin.simulate_post(f"/v1/executions/{completed['executionId']}/retry")
    assert refused.status_code == 422 and refused.json["code"] == "FLK-0530", refused.text
    assert "completed" in refused.json["message"] and refused.json["title"]
    missing = admin.simulate_post(f"/v1/executions/{uuid.uuid4()}/retry")
    assert missing.status_code == 404 and missing.json["code"] == "FLK-0500"
    assert admin.simulate_post("/v1/executions/not-an-id/retry").status_code == 400
    assert AuditEntry.select().count() == before  # nothing written


def test_an_interrupted_run_is_retried_from_its_first_unrecorded_step(retry_app, service_stub):
    """onInterrupt: fail leaves a failed run without a failed step: the retry reuses what
    is on record and runs the rest."""
    from flowker.storage.models import Execution, StepResult

    admin = _client(retry_app, API_KEY)
    workflow_id = _chain_workflow(admin, service_stub.url)
    service_stub.handler_state.fixed = True
    run = admin.simulate_post(f"/v1/workflows/{workflow_id}/executions", json={"inputData": {}}).json
    # As recovery leaves a run interrupted after `one`: the rest never recorded.
    StepResult.delete().where((StepResult.execution == run["executionId"]) & (StepResult.step_number > 2)).execute()
    Execution.update(status="failed", error_message="interrupted: test").where(
        Execution.id == run["executionId"]
    ).execute()
    calls_before = len(service_stub.requests)
    retry = admin.simulate_post(f"/v1/executions/{run['executionId']}/retry").json
    assert retry["currentStepNumber"] == 2
    assert _work_the_queue(retry_app) == [{"id": retry["executionId"], "status": "completed"}]
    assert [path for path, _ in _calls(service_stub)[calls_before:]] == ["/two", "/three"]


def test_two_retries_racing_make_one(retry_app, service_stub):
    import threading

    from flowker.audit.chain import Actor
    from flowker.errors import Conflict
    from flowker.runner.retry import retry_execution

    admin = _client(retry_app, API_KEY)
    workflow_id = _chain_workflow(admin, service_stub.url)
    original = admin.simulate_post(f"/v1/workflows/{workflow_id}/executions", json={"inputData": {}}).json
    assert original["status"] == "failed"
    service = retry_app.state.execution_service
    barrier, outcomes = threading.Barrier(4), []

    def race():
        barrier.wait(5)
        try:
            started = retry_execution(service, original["executionId"], actor=Actor("user", "racer", "127.0.0.1"))
            outcomes.append(("created", started.execution.id))
        except Conflict as exc:
            outcomes.append(("refused", exc.code))

    threads = [threading.Thread(target=race) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(kind for kind, _ in outcomes) == ["created", "refused", "refused", "refused"], outcomes
    assert {value for kind, value in outcomes if kind == "refused"} == {"FLK-0531"}
    assert AuditEntry.select().where(AuditEntry.event_type == "EXECUTION_RETRIED").count() == 1

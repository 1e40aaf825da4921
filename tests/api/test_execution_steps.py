"""``GET /v1/executions/{id}/steps`` on both backends: the steps on record while a run is
held in a slow executor call (the steps before the call are committed once the call has
lasted a second), the step in flight, paging with ``after`` and ``limit``, refusals."""

from __future__ import annotations

import uuid

import falcon.testing

from api_helpers import API_KEY, create_executor, create_workflow, wait_for

VIEWER_KEY = f"viewer-{uuid.uuid4().hex}"
KEYS = f"ci-bot:{API_KEY},viewer-caller:{VIEWER_KEY}:viewer"


def test_steps_show_progress_while_a_call_is_held_then_every_step(make_app, stub):
    app = make_app(queue_concurrency=1, settings={"api_keys": KEYS})
    client = falcon.testing.TestClient(app, headers={"X-API-Key": API_KEY})
    viewer = falcon.testing.TestClient(app, headers={"X-API-Key": VIEWER_KEY})
    create_executor(client, stub.url)
    workflow_id = create_workflow(client, activate=True)
    stub.gate.clear()  # hold the executor call
    try:
        started = client.simulate_post(
            f"/v1/workflows/{workflow_id}/executions",
            json={"inputData": {"amount": 3}},
            headers={"Prefer": "respond-async"},
        )
        assert started.status_code == 202, started.text
        steps_path = f"/v1/executions/{started.json['executionId']}/steps"

        def held_in_the_call():
            view = viewer.simulate_get(steps_path).json
            running = view.get("runningStep") or {}
            return view if running.get("nodeId") == "score" and view["items"] else None

        during = wait_for(held_in_the_call, timeout=8)
        assert during["status"] == "running" and during["hasMore"] is False
        assert [(s["nodeId"], s["status"]) for s in during["items"]] == [("start", "completed")]
        running = during["runningStep"]
        assert (running["stepNumber"], running["nodeType"]) == (2, "executor")
        assert during["currentStepNumber"] == 1 and during["totalSteps"] == 3
    finally:
        stub.gate.set()
    wait_for(lambda: client.simulate_get(steps_path).json["status"] == "completed")
    after = client.simulate_get(steps_path).json
    assert "runningStep" not in after
    assert [(s["nodeId"], s["status"]) for s in after["items"]] == [
        ("start", "completed"),
        ("score", "completed"),
        ("out", "completed"),
    ]
    results = client.simulate_get(steps_path.replace("/steps", "/results")).json
    assert after["items"] == results["stepResults"]  # the same step view
    page = client.simulate_get(steps_path, params={"after": "1", "limit": "1"}).json
    assert [s["stepNumber"] for s in page["items"]] == [2] and page["hasMore"] is True
    last = client.simulate_get(steps_path, params={"after": "2"}).json
    assert [s["stepNumber"] for s in last["items"]] == [3] and last["hasMore"] is False


def test_steps_refusals(client, active_workflow, stub):
    workflow_id, _ = active_workflow
    done = client.simulate_post(f"/v1/workflows/{workflow_id}/executions", json={"inputData": {"amount": 1}}).json
    path = f"/v1/executions/{done['executionId']}/steps"
    for params, code in (({"after": "-1"}, "FLK-0304"), ({"after": "x"}, "FLK-0304"), ({"limit": "0"}, "FLK-0309")):
        answer = client.simulate_get(path, params=params)
        assert answer.status_code == 400 and answer.json["code"] == code, (params, answer.text)
    assert client.simulate_get(f"/v1/executions/{uuid.uuid4()}/steps").json["code"] == "FLK-0500"
    assert client.simulate_get("/v1/executions/nope/steps").json["code"] == "FLK-0002"
    assert len(client.simulate_get(path).json["items"]) == 3

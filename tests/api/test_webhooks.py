"""``ANY /v1/webhooks/{path}`` on both backends."""

from __future__ import annotations

import falcon.testing

from api_helpers import API_KEY, create_executor, create_workflow, wait_for, workflow_body


def test_webhook_runs_the_owning_workflow_with_the_body_as_input(client, active_workflow, stub):
    workflow_id, _ = active_workflow
    response = client.simulate_post(
        "/v1/webhooks/payments",
        json={"amount": 99},
        params={"source": "shop"},
        headers={"Authorization": "Bearer caller-secret", "X-Trace": "t-1"},
    )
    assert response.status_code == 201, response.text
    execution_id = response.json["executionId"]
    assert response.headers["X-Webhook-Workflow-ID"] == workflow_id
    assert response.headers["X-Webhook-Execution-ID"] == execution_id
    assert stub.requests[-1].json() == {"amount": 99}
    results = client.simulate_get(f"/v1/executions/{execution_id}/results").json
    trigger_output = results["stepResults"][0]["output"]
    webhook = trigger_output["_webhook"]
    assert webhook["method"] == "POST" and webhook["path"] == "payments"
    assert webhook["query"] == {"source": "shop"} and webhook["headers"]["x-trace"] == "t-1"
    for dropped in ("authorization", "x-api-key"):
        assert dropped not in webhook["headers"]
    assert "caller-secret" not in str(results) and API_KEY not in str(results)
    # Trailing slashes do not matter; other methods and paths have no route.
    assert client.simulate_post("/v1/webhooks/payments/", json={"amount": 1}).status_code == 201
    missing = client.simulate_put("/v1/webhooks/payments", json={})
    assert missing.status_code == 404 and missing.json["code"] == "FLK-0361"
    assert client.simulate_post("/v1/webhooks/elsewhere", json={}).json["code"] == "FLK-0361"


def test_webhook_bodies(client, active_workflow):
    assert client.simulate_post("/v1/webhooks/payments").status_code == 201  # empty body: {}
    bad = client.simulate_post("/v1/webhooks/payments", body="[1, 2]", headers={"Content-Type": "application/json"})
    assert bad.status_code == 400 and bad.json["code"] == "FLK-0001"
    assert client.simulate_post("/v1/webhooks/payments", body="{oops").status_code == 400


def test_webhook_idempotent_replay_ignores_request_metadata(client, active_workflow, stub):
    first = client.simulate_post(
        "/v1/webhooks/payments", json={"amount": 5}, headers={"Idempotency-Key": "evt-1", "X-Attempt": "1"}
    )
    calls = len(stub.requests)
    again = client.simulate_post(
        "/v1/webhooks/payments", json={"amount": 5}, headers={"Idempotency-Key": "evt-1", "X-Attempt": "2"}
    )
    assert again.status_code == 200 and again.json["executionId"] == first.json["executionId"]
    assert again.headers["X-Webhook-Execution-ID"] == first.json["executionId"]
    assert len(stub.requests) == calls
    other = client.simulate_post("/v1/webhooks/payments", json={"amount": 6}, headers={"Idempotency-Key": "evt-1"})
    assert other.status_code == 422 and other.json["code"] == "FLK-0508"


def test_verify_token(client, stub, monkeypatch):
    create_executor(client, stub.url)
    create_workflow(client, workflow_body(verify_token="hook-secret-123456"), activate=True)
    env_body = workflow_body(name="env-token", path="/env-hook", verify_token={"$env": "HOOK_TOKEN"})
    create_workflow(client, env_body, activate=True)
    monkeypatch.setenv("HOOK_TOKEN", "from-the-environment")
    shown = client.simulate_get("/v1/workflows", params={"limit": 10}).text
    assert "hook-secret-123456" not in shown
    refused = client.simulate_post("/v1/webhooks/payments", json={})
    assert refused.status_code == 401 and refused.json["code"] == "FLK-0362"
    wrong = client.simulate_post("/v1/webhooks/payments", json={}, headers={"X-Webhook-Token": "nope"})
    assert wrong.status_code == 401
    accepted = client.simulate_post("/v1/webhooks/payments", json={}, headers={"X-Webhook-Token": "hook-secret-123456"})
    assert accepted.status_code == 201
    assert "hook-secret-123456" not in str(
        client.simulate_get(f"/v1/executions/{accepted.json['executionId']}/results").json
    )
    env = client.simulate_post("/v1/webhooks/env-hook", json={}, headers={"X-Webhook-Token": "from-the-environment"})
    assert env.status_code == 201


def test_routes_come_from_the_database_so_any_app_serves_them(make_app, client, active_workflow):
    other_process = falcon.testing.TestClient(make_app(), headers={"X-API-Key": API_KEY})
    assert other_process.simulate_post("/v1/webhooks/payments", json={"amount": 3}).status_code == 201
    workflow_id, _ = active_workflow
    client.simulate_post(f"/v1/workflows/{workflow_id}/deactivate")
    assert other_process.simulate_post("/v1/webhooks/payments", json={}).json["code"] == "FLK-0361"


def test_async_webhook(client, active_workflow):
    response = client.simulate_post("/v1/webhooks/payments", json={"amount": 1}, headers={"Prefer": "respond-async"})
    assert response.status_code == 202 and response.headers["X-Webhook-Execution-ID"]
    assert response.json["status"] == "queued"


def test_a_trigger_declared_mode_async_queues_every_call_and_the_worker_runs_it(make_app, stub):
    app = make_app(queue_concurrency=1)
    client = falcon.testing.TestClient(app, headers={"X-API-Key": API_KEY})
    create_executor(client, stub.url)
    create_workflow(client, workflow_body(name="async-hook", path="/async-hook", mode="async"), activate=True)
    response = client.simulate_post("/v1/webhooks/async-hook", json={"amount": 5})
    assert response.status_code == 202 and response.json["status"] == "queued", response.text
    assert "Preference-Applied" not in response.headers  # nothing was asked: the trigger says so
    execution_id = response.headers["X-Webhook-Execution-ID"]
    assert response.headers["Location"] == f"/v1/executions/{execution_id}"
    wait_for(lambda: client.simulate_get(f"/v1/executions/{execution_id}").json["status"] == "completed")
    assert stub.requests[-1].json() == {"amount": 5}
    replay = client.simulate_post("/v1/webhooks/async-hook", json={"amount": 5}, headers={"Idempotency-Key": "a"})
    again = client.simulate_post("/v1/webhooks/async-hook", json={"amount": 5}, headers={"Idempotency-Key": "a"})
    assert (replay.status_code, again.status_code) == (202, 200)
    assert again.headers["X-Webhook-Execution-ID"] == replay.headers["X-Webhook-Execution-ID"]

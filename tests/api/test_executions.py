"""Executions on both backends: synchronous and queued (asynchronous) runs, idempotency,
results, lists, work waiting in the queue and draining."""

from __future__ import annotations

import uuid

import falcon.testing

from api_helpers import API_KEY, create_executor, create_workflow, wait_for, workflow_body


def execute(client, workflow_id: str, input_data=None, **request):
    return client.simulate_post(
        f"/v1/workflows/{workflow_id}/executions", json={"inputData": input_data or {"amount": 10}}, **request
    )


def test_synchronous_run_returns_201_with_the_finished_execution(client, active_workflow, stub):
    workflow_id, _ = active_workflow
    response = execute(client, workflow_id, {"amount": 12})
    assert response.status_code == 201, response.text
    execution = response.json
    assert execution["status"] == "completed" and execution["workflowId"] == workflow_id
    assert execution["completedAt"] and response.headers["Location"] == f"/v1/executions/{execution['executionId']}"
    assert stub.requests[-1].json() == {"amount": 12}
    results = client.simulate_get(f"/v1/executions/{execution['executionId']}/results").json
    assert results["finalOutput"] == {"score": 42}
    assert [step["nodeId"] for step in results["stepResults"]] == ["start", "score", "out"]
    assert client.simulate_get(f"/v1/executions/{execution['executionId']}").json["status"] == "completed"


def test_asynchronous_run_returns_202_queued_and_the_apps_worker_runs_it(make_app, stub):
    app = make_app(queue_concurrency=1)
    client = falcon.testing.TestClient(app, headers={"X-API-Key": API_KEY})
    create_executor(client, stub.url)
    workflow_id = create_workflow(client, activate=True)
    stub.gate.clear()  # hold the executor call so the run is still going when we look
    try:
        response = execute(client, workflow_id, headers={"Prefer": "respond-async"})
        assert response.status_code == 202, response.text
        assert response.json["status"] == "queued" and response.json["queuedAt"]
        assert response.headers["Preference-Applied"] == "respond-async"
        execution_id = response.json["executionId"]
        assert response.headers["Location"] == f"/v1/executions/{execution_id}"
        early = client.simulate_get(f"/v1/executions/{execution_id}/results")
        assert early.status_code == 422 and early.json["code"] == "FLK-0502"
        wait_for(lambda: client.simulate_get(f"/v1/executions/{execution_id}").json["status"] == "running")
    finally:
        stub.gate.set()
    wait_for(lambda: client.simulate_get(f"/v1/executions/{execution_id}").json["status"] == "completed")
    assert client.simulate_get(f"/v1/executions/{execution_id}/results").json["finalOutput"] == {"score": 42}
    events = client.simulate_get("/v1/audit-events", params={"resourceId": execution_id, "limit": 100}).json["items"]
    types = [event["eventType"] for event in events]
    assert types.count("EXECUTION_QUEUED") == 1 and types.count("EXECUTION_STARTED") == 1


def test_idempotency_key_replays_the_first_execution(client, active_workflow, stub):
    workflow_id, _ = active_workflow
    headers = {"Idempotency-Key": "order-77"}
    first = execute(client, workflow_id, {"amount": 1}, headers=headers)
    assert first.status_code == 201
    calls = len(stub.requests)
    again = execute(client, workflow_id, {"amount": 1}, headers=headers)
    assert again.status_code == 200 and again.json["executionId"] == first.json["executionId"]
    async_again = execute(client, workflow_id, {"amount": 1}, headers={**headers, "Prefer": "respond-async"})
    assert async_again.status_code == 200 and async_again.json["executionId"] == first.json["executionId"]
    assert len(stub.requests) == calls  # never a second run
    different = execute(client, workflow_id, {"amount": 2}, headers=headers)
    assert different.status_code == 422 and different.json["code"] == "FLK-0508"
    bad_key = execute(client, workflow_id, headers={"Idempotency-Key": "has space"})
    assert bad_key.status_code == 400 and bad_key.json["code"] == "FLK-0509"


def test_start_errors(client, active_workflow, stub):
    workflow_id, _ = active_workflow
    assert execute(client, str(uuid.uuid4())).json["code"] == "FLK-0100"
    assert execute(client, "nope").json["code"] == "FLK-0002"
    draft = create_workflow(client, workflow_body(name="draft-one", path="/d"))
    not_active = execute(client, draft)
    assert not_active.status_code == 422 and not_active.json["code"] == "FLK-0501"
    unknown = client.simulate_post(f"/v1/workflows/{workflow_id}/executions", json={"input": {}})
    assert unknown.status_code == 422 and unknown.json["code"] == "FLK-0510"  # an invalid execution body
    not_object = client.simulate_post(f"/v1/workflows/{workflow_id}/executions", json={"inputData": [1]})
    assert not_object.status_code == 422 and not_object.json["code"] == "FLK-0510"
    empty = client.simulate_post(f"/v1/workflows/{workflow_id}/executions")
    assert empty.status_code == 201  # no body: empty input


def test_failed_runs_are_completed_requests_with_failed_executions(client, stub):
    create_executor(client, stub.url + "/unauthorized")
    workflow_id = create_workflow(client, activate=True)
    response = execute(client, workflow_id)
    assert response.status_code == 201 and response.json["status"] == "failed"
    results = client.simulate_get(f"/v1/executions/{response.json['executionId']}/results").json
    assert [step["status"] for step in results["stepResults"]] == ["completed", "failed", "skipped"]


def test_list_filters_and_cursors(client, active_workflow):
    workflow_id, _ = active_workflow
    ids = [execute(client, workflow_id, {"amount": n}).json["executionId"] for n in range(5)]
    page = client.simulate_get("/v1/executions", params={"limit": 2, "workflowId": workflow_id}).json
    collected = [item["executionId"] for item in page["items"]]
    for _ in range(10):
        if not page["hasMore"]:
            break
        page = client.simulate_get("/v1/executions", params={"limit": 2, "cursor": page["nextCursor"]}).json
        collected += [item["executionId"] for item in page["items"]]
    assert collected == list(reversed(ids))
    assert len(client.simulate_get("/v1/executions", params={"status": "completed"}).json["items"]) == 5
    assert client.simulate_get("/v1/executions", params={"status": "failed"}).json["items"] == []
    assert client.simulate_get("/v1/executions", params={"workflowId": str(uuid.uuid4())}).json["items"] == []
    for params, code in (
        ({"status": "pending-ish"}, "FLK-0304"),
        ({"workflowId": "x"}, "FLK-0002"),
        ({"limit": 500}, "FLK-0309"),
        ({"sortBy": "completedAt"}, "FLK-0304"),
    ):
        response = client.simulate_get("/v1/executions", params=params)
        assert response.status_code == 400 and response.json["code"] == code, params
    assert client.simulate_get(f"/v1/executions/{uuid.uuid4()}").json["code"] == "FLK-0500"
    assert client.simulate_get(f"/v1/executions/{uuid.uuid4()}/results").json["code"] == "FLK-0500"


def test_work_beyond_the_workers_threads_waits_in_the_queue_never_503(make_app, stub):
    """The old bounded pool answered 503 when full; the queue takes every run, and the
    one run thread works through them."""
    app = make_app(queue_concurrency=1)
    client = falcon.testing.TestClient(app, headers={"X-API-Key": API_KEY})
    create_executor(client, stub.url)
    workflow_id = create_workflow(client, activate=True)
    stub.gate.clear()
    try:
        responses = [execute(client, workflow_id, {"amount": n}, headers={"Prefer": "respond-async"}) for n in range(5)]
        assert [r.status_code for r in responses] == [202] * 5
        wait_for(lambda: len(client.simulate_get("/v1/executions", params={"status": "queued"}).json["items"]) == 4)
        assert len(client.simulate_get("/v1/executions", params={"status": "running"}).json["items"]) == 1
        queue = client.simulate_get("/v1/dashboards/executions").json["queue"]
        assert queue["depth"] == 4 and queue["oldestAgeSeconds"] >= 0
    finally:
        stub.gate.set()
    for response in responses:
        execution_id = response.json["executionId"]
        wait_for(lambda: client.simulate_get(f"/v1/executions/{execution_id}").json["status"] == "completed")
    assert client.simulate_get("/v1/dashboards/executions").json["queue"] == {"depth": 0, "oldestAgeSeconds": None}


def test_an_app_without_a_worker_leaves_runs_queued_for_another_processs_worker(make_app, stub):
    from flowker.queue.worker import QueueWorker

    app = make_app()  # queue_concurrency=0: like `flowker serve --no-worker`
    client = falcon.testing.TestClient(app, headers={"X-API-Key": API_KEY})
    create_executor(client, stub.url)
    workflow_id = create_workflow(client, activate=True)
    execution_id = execute(client, workflow_id, headers={"Prefer": "respond-async"}).json["executionId"]
    assert app.state.queue_worker is None
    assert client.simulate_get(f"/v1/executions/{execution_id}").json["status"] == "queued"
    worker = QueueWorker(app.state.execution_service, concurrency=1, sweep=False).start()
    try:
        wait_for(lambda: client.simulate_get(f"/v1/executions/{execution_id}").json["status"] == "completed")
    finally:
        assert worker.stop(grace=5) == 0
    assert worker.claimed == 1 and worker.finished == 1


def test_draining_refuses_new_runs_and_fails_readiness(client, app, active_workflow):
    probe = "/health/ready"
    workflow_id, _ = active_workflow
    assert client.simulate_get(probe).status_code == 200
    app.state.start_draining()
    draining = client.simulate_get(probe)
    assert draining.status_code == 503 and draining.json["status"] == "draining"
    refused = execute(client, workflow_id)
    assert refused.status_code == 503 and refused.json["code"] == "FLK-0801"
    assert client.simulate_get("/health/live").status_code == 200


def test_the_synchronous_answer_is_what_was_stored(client, active_workflow, stub, database):
    # The run returns the execution it wrote without reading it back: the two must agree.
    workflow_id, _ = active_workflow
    answer = execute(client, workflow_id, {"amount": 7}).json
    stored = client.simulate_get(f"/v1/executions/{answer['executionId']}").json
    assert answer == stored
    assert answer["currentStepNumber"] == answer["totalSteps"] == 3


def test_connections_stay_open_per_thread_on_sqlite_and_go_back_to_the_pool_on_postgresql(
    client, active_workflow, database
):
    from flowker.storage.database import is_postgres

    database.close()
    workflow_id, _ = active_workflow
    assert client.simulate_get(f"/v1/workflows/{workflow_id}").status_code == 200
    # SQLite: opening a connection (and the WAL checkpoint when the last one closes) costs
    # more than a whole execution, so the request thread keeps its own.
    assert database.is_closed() is is_postgres(database)


def test_list_filters_by_start_time(client, active_workflow, database):
    """dateFrom and dateTo bound the start (both included); the console's day filter uses them."""
    import datetime as dt

    from flowker.storage.models import Execution

    workflow_id, _ = active_workflow
    ids = [execute(client, workflow_id, {"amount": n}).json["executionId"] for n in range(3)]
    days = [dt.datetime(2026, 3, 1, 12), dt.datetime(2026, 3, 2, 0, 0), dt.datetime(2026, 3, 3, 23, 59, 59)]
    for execution_id, started in zip(ids, days):
        Execution.update(started_at=started).where(Execution.id == execution_id).execute()

    def listed(**params):
        answer = client.simulate_get("/v1/executions", params={"limit": 100, **params})
        assert answer.status_code == 200, answer.json
        return {item["executionId"] for item in answer.json["items"]}

    assert listed(dateFrom="2026-03-02T00:00:00Z") == set(ids[1:])
    assert listed(dateTo="2026-03-02T00:00:00Z") == set(ids[:2])
    assert listed(dateFrom="2026-03-02T00:00:00Z", dateTo="2026-03-02T23:59:59.999Z") == {ids[1]}
    # An offset is read as the same instant in UTC: 2026-03-03T23:59:59Z is 2026-03-04T01:59:59+02:00.
    assert listed(dateFrom="2026-03-04T01:59:59+02:00") == {ids[2]}
    for params, code in (
        ({"dateFrom": "yesterday"}, "FLK-0305"),
        ({"dateFrom": "2026-03-03T00:00:00Z", "dateTo": "2026-03-02T00:00:00Z"}, "FLK-0308"),
    ):
        response = client.simulate_get("/v1/executions", params=params)
        assert response.status_code == 400 and response.json["code"] == code, (params, response.json)

"""Shared nothing but PostgreSQL: two ``flowker serve`` processes (separate ports, as
separate hosts would be) on one schema. Any of them serves any request, webhook routes
and workflow state come from the database, idempotency keys hold across processes, runs
left by a killed server are recovered by the live ones or on restart, and the audit chain
stays one chain."""

from __future__ import annotations

import threading
import time

import pytest

from scale_helpers import (
    LEASE_SECONDS,
    YAML,
    api_session,
    assert_one_linear_chain,
    create_workflow,
    database_report,
    executor_yaml,
    wait_for,
)

pytestmark = pytest.mark.postgres


def test_any_server_serves_any_request(cluster, stub):
    a, b = cluster.start(2)
    api = api_session()
    response = api.post(f"{a.url}/v1/executors", data=executor_yaml(stub.url), headers=YAML)
    assert response.status_code == 201, response.text
    workflow_id = create_workflow(api, a.url, "shared-state", path="/scale/shared")

    # Created on A, read and activated on B, seen active on A: the state is the database's.
    assert api.get(f"{b.url}/v1/workflows/{workflow_id}").json()["status"] == "draft"
    assert api.post(f"{b.url}/v1/workflows/{workflow_id}/activate").status_code == 200
    assert api.get(f"{a.url}/v1/workflows/{workflow_id}").json()["status"] == "active"

    # Activated on B, the webhook answers on A (and on B): routes come from the database.
    runs = []
    for server in (a, b):
        response = api.post(f"{server.url}/v1/webhooks/scale/shared", json={"amount": 7})
        assert response.status_code == 201, response.text
        assert response.headers["X-Webhook-Workflow-ID"] == workflow_id
        assert response.json()["status"] == "completed"
        runs.append(response.json()["executionId"])
    response = api.post(f"{a.url}/v1/workflows/{workflow_id}/executions", json={"inputData": {"amount": 3}})
    assert response.status_code == 201 and response.json()["status"] == "completed", response.text
    runs.append(response.json()["executionId"])

    # Every run is readable on the other server, with its steps.
    for run_id in runs:
        results = api.get(f"{b.url}/v1/executions/{run_id}/results")
        assert results.status_code == 200, results.text
        assert [step["nodeId"] for step in results.json()["stepResults"]] == ["start", "score", "done"]
    listed = api.get(f"{b.url}/v1/executions", params={"workflowId": workflow_id, "limit": 10}).json()
    assert {item["executionId"] for item in listed["items"]} == set(runs)

    # Deactivated on A: B stops serving the webhook at once (no per-process route cache).
    assert api.post(f"{a.url}/v1/workflows/{workflow_id}/deactivate").status_code == 200
    response = api.post(f"{b.url}/v1/webhooks/scale/shared", json={"amount": 1})
    assert response.status_code == 404 and response.json()["code"] == "FLK-0361", response.text

    # One chain, verified through either server.
    newest = api.get(f"{a.url}/v1/audit-events", params={"limit": 1, "sortOrder": "DESC"}).json()["items"][0]
    verification = api.get(f"{b.url}/v1/audit-events/{newest['eventId']}/verify").json()
    assert verification["isValid"] is True, verification
    report = database_report(cluster.url)
    assert_one_linear_chain(report)
    assert verification["totalChecked"] == report["sequences"][0]


def _simultaneous(calls):
    """Run the calls at the same moment from one thread each; their responses in order."""
    barrier = threading.Barrier(len(calls))
    responses = [None] * len(calls)

    def run(index, call):
        barrier.wait(timeout=10)
        responses[index] = call()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return responses


def test_idempotency_key_holds_across_servers(cluster, stub):
    a, b = cluster.start(2)
    api_a, api_b = api_session(), api_session()
    assert api_a.post(f"{a.url}/v1/executors", data=executor_yaml(stub.url), headers=YAML).status_code == 201
    workflow_id = create_workflow(api_a, a.url, "keyed", path="/scale/keyed", activate_via=b.url)
    path = f"/v1/workflows/{workflow_id}/executions"

    rounds = 16
    for number in range(rounds):
        key = f"key-{number}"
        headers = {"Idempotency-Key": key}
        if number % 2:
            headers["Prefer"] = "respond-async"
        body = {"inputData": {"amount": number}}
        first, second = _simultaneous(
            [
                lambda: api_a.post(a.url + path, json=body, headers=headers, timeout=30),
                lambda: api_b.post(b.url + path, json=body, headers=headers, timeout=30),
            ]
        )
        created = 202 if number % 2 else 201
        assert sorted([first.status_code, second.status_code]) == sorted([200, created]), (first.text, second.text)
        assert first.json()["executionId"] == second.json()["executionId"]

    # The same key with another body is refused on the other server too.
    response = api_b.post(b.url + path, json={"inputData": {"amount": 999}}, headers={"Idempotency-Key": "key-0"})
    assert response.status_code == 422 and response.json()["code"] == "FLK-0508", response.text

    wait_for(
        lambda: all(
            row["status"] not in ("queued", "running") for row in database_report(cluster.url)["executions"].values()
        ),
        "the async runs to finish",
        30,
        interval=0.2,
    )
    report = database_report(cluster.url)
    assert report["duplicate_keys"] == []
    keyed = [row for row in report["executions"].values() if row["key"]]
    assert sorted(row["key"] for row in keyed) == sorted(f"key-{n}" for n in range(rounds))
    assert all(row["status"] == "completed" for row in keyed)
    assert_one_linear_chain(report)


def test_simultaneous_webhook_deliveries_with_one_key(cluster, stub):
    a, b = cluster.start(2)
    api_a, api_b = api_session(), api_session()
    assert api_a.post(f"{a.url}/v1/executors", data=executor_yaml(stub.url), headers=YAML).status_code == 201
    create_workflow(api_a, a.url, "keyed-hook", path="/scale/keyed-hook", activate_via=b.url)
    statuses = []
    for number in range(20):
        headers = {"Idempotency-Key": f"hook-{number}"}
        first, second = _simultaneous(
            [
                lambda: api_a.post(f"{a.url}/v1/webhooks/scale/keyed-hook", json={"amount": 1}, headers=headers),
                lambda: api_b.post(f"{b.url}/v1/webhooks/scale/keyed-hook", json={"amount": 1}, headers=headers),
            ]
        )
        statuses.append(sorted([first.status_code, second.status_code]))
    # A sender's retry of the same delivery is the same request: one 201, the other 200.
    assert all(pair == [200, 201] for pair in statuses), statuses


def _start_slow_runs(api, server, slow_id, stub, count: int = 3) -> list[str]:
    """``count`` async runs queued through ``server``, claimed by its queue worker (the
    other servers run none) and caught inside their executor call."""
    accepted = []
    for number in range(count):
        response = api.post(
            f"{server.url}/v1/workflows/{slow_id}/executions",
            json={"inputData": {"amount": number}},
            headers={"Prefer": "respond-async"},
        )
        assert response.status_code == 202 and response.json()["status"] == "queued", response.text
        accepted.append(response.json()["executionId"])
    wait_for(lambda: stub.service.slow_calls >= count, "the slow calls to reach the stub", 30)
    return accepted


def _assert_interrupted(api, url: str, report: dict, accepted: list[str]) -> None:
    for run_id in accepted:
        row = report["executions"][run_id]
        assert row["status"] == "failed" and row["error"].startswith("interrupted:"), row
        assert report["events"].get((run_id, "EXECUTION_INTERRUPTED")) == 1  # once, however many sweep
        assert report["events"].get((run_id, "EXECUTION_STARTED")) == 1
        assert api.get(f"{url}/v1/executions/{run_id}").json()["status"] == "failed"
    assert_one_linear_chain(report)


def test_killed_server_runs_are_resumed_by_the_live_server(cluster, stub):
    (a,) = cluster.start(1)
    api = api_session()
    assert api.post(f"{a.url}/v1/executors", data=executor_yaml(stub.url), headers=YAML).status_code == 201
    slow_id = create_workflow(api, a.url, "slow", path="/scale/slow", endpoint="slow", activate_via=a.url)
    fast_id = create_workflow(api, a.url, "fast", path="/scale/fast", activate_via=a.url)
    accepted = _start_slow_runs(api, a, slow_id, stub)  # claimed by A's workers: the only ones yet
    (b,) = cluster.start(1)
    killed_at = time.monotonic()
    a.kill_hard()

    # B goes on serving; A's runs are still `running` (their lease has not expired).
    response = api.post(f"{b.url}/v1/workflows/{fast_id}/executions", json={"inputData": {"amount": 5}})
    assert response.status_code == 201 and response.json()["status"] == "completed", response.text
    rows = database_report(cluster.url)["executions"]
    assert [rows[run_id]["status"] for run_id in accepted] == ["running"] * 3

    # A is never restarted: B's workers sweep expired leases every half lease, queue A's
    # runs again and resume them: the slow call is sent again (same key) and answers.
    stub.service.release()
    wait_for(
        lambda: all(database_report(cluster.url)["executions"][run_id]["status"] == "completed" for run_id in accepted),
        "B to resume A's runs",
        LEASE_SECONDS * 4 + 20,
        interval=0.2,
    )
    assert time.monotonic() - killed_at >= LEASE_SECONDS * 0.9  # not before their lease expired
    report = database_report(cluster.url)
    for run_id in accepted:
        assert report["events"].get((run_id, "EXECUTION_RESUMED")) == 1  # once, however many sweep
        assert report["events"].get((run_id, "EXECUTION_STARTED")) == 2  # claimed by A, then by B
        assert report["events"].get((run_id, "EXECUTION_COMPLETED")) == 1
        assert api.get(f"{b.url}/v1/executions/{run_id}").json()["resumes"] == 1
    assert stub.service.slow_calls == 6  # A's three in flight, sent again by B
    assert_one_linear_chain(report)
    assert "resumed (queued again)" in b.output, b.output


def test_killed_server_runs_are_failed_on_restart_with_on_interrupt_fail(cluster, stub):
    (a,) = cluster.start(1)
    api = api_session()
    assert api.post(f"{a.url}/v1/executors", data=executor_yaml(stub.url), headers=YAML).status_code == 201
    slow_id = create_workflow(
        api, a.url, "slow", path="/scale/slow", endpoint="slow", activate_via=a.url, on_interrupt="fail"
    )
    accepted = _start_slow_runs(api, a, slow_id, stub)
    a.kill_hard()
    rows = database_report(cluster.url)["executions"]
    assert [rows[run_id]["status"] for run_id in accepted] == ["running"] * 3

    # Restarted once the lease has expired: its start-up recovery fails them, audited.
    time.sleep(LEASE_SECONDS + 1.0)
    (restarted,) = cluster.start(1)
    assert "Recovered 3 interrupted execution(s): 3 failed as interrupted" in restarted.output, restarted.output
    _assert_interrupted(api, restarted.url, database_report(cluster.url), accepted)


def test_execution_lease_is_a_setting():
    from flowker.plugins import load_registry
    from flowker.runner.service import ExecutionService
    from flowker.settings import Settings

    settings = Settings.load(environ={"FLOWKER_EXECUTION_LEASE_SECONDS": "7", "FLOWKER_DATABASE_URL": "sqlite:///x.db"})
    service = ExecutionService(settings, load_registry(settings))
    try:
        assert service.lease_seconds == 7.0
    finally:
        service.close()


def test_a_queued_run_waits_for_a_free_worker_and_is_never_taken_for_interrupted(cluster, stub):
    (a,) = cluster.start(1, workers=1, extra_args=("--queue-concurrency", "4"))
    api = api_session()
    assert api.post(f"{a.url}/v1/executors", data=executor_yaml(stub.url), headers=YAML).status_code == 201
    slow_id = create_workflow(api, a.url, "busy", path="/scale/busy", endpoint="slow", activate_via=a.url)
    fast_id = create_workflow(api, a.url, "queued", path="/scale/queued", activate_via=a.url)
    for number in range(4):  # the worker's 4 queue threads, each held in a call
        response = api.post(
            f"{a.url}/v1/workflows/{slow_id}/executions",
            json={"inputData": {"amount": number}},
            headers={"Prefer": "respond-async"},
        )
        assert response.status_code == 202, response.text
    wait_for(lambda: stub.service.slow_calls >= 4, "the queue threads to be busy", 30)
    response = api.post(
        f"{a.url}/v1/workflows/{fast_id}/executions",
        json={"inputData": {"amount": 1}},
        headers={"Prefer": "respond-async"},
    )
    assert response.status_code == 202, response.text
    queued = response.json()["executionId"]

    time.sleep(LEASE_SECONDS + 1.0)  # longer than a lease: a queued run has none to expire
    assert database_report(cluster.url)["executions"][queued]["status"] == "queued"
    cluster.start(1)  # another server starts (a deploy): its start-up recovery runs, its worker claims
    wait_for(
        lambda: database_report(cluster.url)["executions"][queued]["status"] == "completed",
        "the queued run to be run by the new server's worker",
        30,
        interval=0.2,
    )
    stub.service.release()
    report = database_report(cluster.url)
    assert report["events"].get((queued, "EXECUTION_INTERRUPTED")) is None
    assert report["events"].get((queued, "EXECUTION_STARTED")) == 1

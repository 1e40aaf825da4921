"""Audit events (list, filters, get, verify), changes committing with their audit
entries, the catalog, dashboards and the probes - on both backends."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from api_helpers import audit_count, create_executor, create_workflow, executor_body, workflow_body
from flowker.errors import AuditChainError
from flowker.storage.models import Executor, WebhookRoute, Workflow, WorkflowVersion


def test_audit_list_filters_and_pages(client, active_workflow):
    workflow_id, executor_id = active_workflow
    items = client.simulate_get("/v1/audit-events", params={"resourceId": workflow_id, "sortOrder": "ASC"}).json[
        "items"
    ]
    assert [item["eventType"] for item in items] == ["WORKFLOW_CREATED", "WORKFLOW_ACTIVATED"]
    assert (
        client.simulate_get("/v1/audit-events", params={"eventType": "EXECUTOR_CREATED"}).json["items"][0]["resourceId"]
        == executor_id
    )
    assert audit_count(client, action="ACTIVATE") == 1
    assert audit_count(client, resourceType="executor") == 1
    assert audit_count(client, result="FAILED") == 0
    total = audit_count(client)
    sequences, cursor = [], None
    for _ in range(20):
        params = {"limit": 1} if cursor is None else {"limit": 1, "cursor": cursor}
        page = client.simulate_get("/v1/audit-events", params=params).json
        sequences += [item["sequence"] for item in page["items"]]
        if not page["hasMore"]:
            break
        cursor = page["nextCursor"]
    assert sequences == sorted(sequences, reverse=True) and len(sequences) == total


def test_audit_date_range(client, active_workflow):
    now = dt.datetime.now(dt.timezone.utc)
    later = (now + dt.timedelta(hours=1)).isoformat()
    earlier = (now - dt.timedelta(hours=1)).isoformat()
    assert audit_count(client, dateFrom=earlier, dateTo=later) == audit_count(client) > 0
    assert audit_count(client, dateFrom=later) == 0
    assert audit_count(client, dateTo=earlier.replace("+00:00", "Z")) == 0
    for params, code in (
        ({"dateFrom": "yesterday"}, "FLK-0305"),
        ({"dateFrom": later, "dateTo": earlier}, "FLK-0308"),
        ({"result": "MAYBE"}, "FLK-0304"),
        ({"eventType": "lower"}, "FLK-0304"),
        ({"limit": 0}, "FLK-0309"),
        ({"sortOrder": "sideways"}, "FLK-0310"),
        ({"cursor": "eyJpZCI6MSwidiI6MX0"}, "FLK-0311"),
    ):
        response = client.simulate_get("/v1/audit-events", params=params)
        assert response.status_code == 400 and response.json["code"] == code, params


def test_audit_get_and_verify(client, active_workflow):
    entry = client.simulate_get("/v1/audit-events", params={"limit": 1}).json["items"][0]
    fetched = client.simulate_get(f"/v1/audit-events/{entry['eventId']}").json
    assert fetched == entry
    verified = client.simulate_get(f"/v1/audit-events/{entry['eventId']}/verify").json
    assert verified["isValid"] is True and verified["totalChecked"] == entry["sequence"]
    assert client.simulate_get(f"/v1/audit-events/{uuid.uuid4()}").json["code"] == "FLK-0600"
    assert client.simulate_get(f"/v1/audit-events/{uuid.uuid4()}/verify").json["code"] == "FLK-0600"
    assert client.simulate_get("/v1/audit-events/42").json["code"] == "FLK-0002"


@pytest.fixture
def failing_audit(monkeypatch):
    from flowker.audit import chain

    def refuse(*args, **kwargs):
        raise AuditChainError("audit store refused the entry")

    def install():
        monkeypatch.setattr(chain.AuditLog, "append", refuse)

    return install


def test_a_change_and_its_audit_entry_commit_together(client, stub, failing_audit):
    executor_id = create_executor(client, stub.url)
    workflow_id = create_workflow(client)
    entries = audit_count(client)
    failing_audit()
    assert client.simulate_post("/v1/workflows", json=workflow_body(name="lost")).status_code == 500
    assert Workflow.select().where(Workflow.name == "lost").count() == 0
    assert client.simulate_post("/v1/executors", json=executor_body(stub.url, name="lost")).status_code == 500
    assert Executor.select().where(Executor.name == "lost").count() == 0
    changed = workflow_body()
    changed["description"] = "not saved"
    assert client.simulate_put(f"/v1/workflows/{workflow_id}", json=changed).status_code == 500
    assert Workflow.get_by_id(workflow_id).version == 1
    assert WorkflowVersion.select().where(WorkflowVersion.workflow_id == workflow_id).count() == 1
    assert client.simulate_post(f"/v1/workflows/{workflow_id}/activate").status_code == 500
    assert Workflow.get_by_id(workflow_id).status == "draft" and WebhookRoute.select().count() == 0
    assert client.simulate_post(f"/v1/executors/{executor_id}/disable").status_code == 500
    assert Executor.get_by_id(executor_id).status == "active"
    assert client.simulate_delete(f"/v1/workflows/{workflow_id}").status_code == 500
    assert Workflow.get_or_none(Workflow.id == workflow_id) is not None
    assert client.simulate_delete(f"/v1/executors/{executor_id}").status_code == 500
    assert Executor.get_or_none(Executor.id == executor_id) is not None
    from flowker.storage.models import AuditEntry

    assert AuditEntry.select().count() == entries


def test_catalog(client, registry):
    auth_types = client.simulate_get("/v1/catalog/auth-types").json["items"]
    names = [item["name"] for item in auth_types]
    assert {"none", "api_key", "bearer", "basic", "oidc_client_credentials", "oidc_user"} <= set(names)
    bearer = client.simulate_get("/v1/catalog/auth-types/bearer").json
    assert bearer["provider"] == "flowker" and bearer["configSchema"]["required"] == ["token"]
    missing = client.simulate_get("/v1/catalog/auth-types/nope")
    assert missing.status_code == 404 and missing.json["code"] == "FLK-0200"
    actions = {item["name"] for item in client.simulate_get("/v1/catalog/action-types").json["items"]}
    assert {"set_output", "transform", "log", "fail"} <= actions


def test_dashboards(client, active_workflow):
    workflow_id, _ = active_workflow
    create_workflow(client, workflow_body(name="draft", path="/draft"))
    client.simulate_post(f"/v1/workflows/{workflow_id}/executions", json={"inputData": {"amount": 1}})
    summary = client.simulate_get("/v1/dashboards/workflows/summary").json
    assert summary["total"] == 2 and summary["active"] == 1
    assert {"status": "draft", "count": 1} in summary["byStatus"]
    counts = client.simulate_get("/v1/dashboards/executions").json
    assert counts == {"total": 1, "queued": 0, "running": 0, "completed": 1, "failed": 0}
    future = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert client.simulate_get("/v1/dashboards/executions", params={"startTime": future}).json["total"] == 0
    assert (
        client.simulate_get("/v1/dashboards/executions", params={"endTime": future, "status": "failed"}).json["total"]
        == 0
    )
    for params in (
        {"startTime": "nope"},
        {"status": "weird"},
        {"startTime": future, "endTime": "2000-01-01T00:00:00Z"},
    ):
        response = client.simulate_get("/v1/dashboards/executions", params=params)
        assert response.status_code == 400 and response.json["code"] == "FLK-0302", params


def test_probes(anonymous, client):
    health = anonymous.simulate_get("/health")
    assert health.status_code == 200 and health.json["checks"]["database"]["status"] == "up"
    assert client.simulate_get("/readyz").status_code == 404  # folded into /health/ready
    assert anonymous.simulate_get("/health/ready").json["status"] == "ready"
    assert anonymous.simulate_get("/health/live").json["status"] == "alive"
    from flowker import __version__

    assert anonymous.simulate_get("/version").status_code == 401
    assert client.simulate_get("/version").json["version"] == __version__


def test_probes_report_a_database_that_does_not_answer(make_app, monkeypatch):
    import falcon.testing

    app = make_app()
    client = falcon.testing.TestClient(app)

    def down(*args, **kwargs):
        raise OSError("connection refused")

    monkeypatch.setattr(app.state.database, "execute_sql", down)
    health = client.simulate_get("/health")
    assert health.status_code == 503 and health.json["status"] == "unhealthy"
    not_ready = client.simulate_get("/health/ready")
    assert not_ready.status_code == 503 and not_ready.json["status"] == "not_ready"

"""A key limited to named workflows sees and triggers only those: in lists, dashboards and
audit queries too. Another workflow, its executions and its audit entries answer 404 by
id (never 403: the answer must not say the id exists)."""

from __future__ import annotations

import falcon.testing
import pytest

from api_helpers import create_workflow, workflow_body


def stored_key(client, name: str, role: str, workflows=None) -> str:
    body = {"name": name, "role": role, **({"workflows": workflows} if workflows else {})}
    response = client.simulate_post("/v1/api-keys", json=body)
    assert response.status_code == 201, response.text
    return response.json["key"]


@pytest.fixture
def two_workflows(app, client, active_workflow):
    """payments (in scope) and refunds (not), each run once; the ids of both and their runs."""
    payments_id, _ = active_workflow
    refunds_id = create_workflow(client, workflow_body(name="refunds", path="/refunds"), activate=True)
    runs = {}
    for name, workflow_id in (("payments", payments_id), ("refunds", refunds_id)):
        run = client.simulate_post(f"/v1/workflows/{workflow_id}/executions", json={"inputData": {"amount": 1}})
        assert run.status_code == 201, run.text
        runs[name] = run.json["executionId"]
    return {"payments": payments_id, "refunds": refunds_id}, runs


def test_a_scoped_operator_sees_and_runs_only_its_workflow(app, client, two_workflows):
    ids, runs = two_workflows
    scoped = falcon.testing.TestClient(
        app, headers={"X-API-Key": stored_key(client, "payments-ci", "operator", ["payments"])}
    )
    listed = scoped.simulate_get("/v1/workflows").json["items"]
    assert [item["name"] for item in listed] == ["payments"]
    assert scoped.simulate_get(f"/v1/workflows/{ids['payments']}").status_code == 200

    hidden = scoped.simulate_get(f"/v1/workflows/{ids['refunds']}")
    missing = scoped.simulate_get("/v1/workflows/00000000-0000-7000-8000-000000000000")
    assert (hidden.status_code, hidden.json["code"]) == (missing.status_code, missing.json["code"]) == (404, "FLK-0100")

    # Another workflow's execution by id: 404 exactly like an execution that does not exist.
    for suffix in ("", "/results"):
        other = scoped.simulate_get(f"/v1/executions/{runs['refunds']}{suffix}")
        none = scoped.simulate_get(f"/v1/executions/00000000-0000-7000-8000-000000000000{suffix}")
        assert (other.status_code, other.json["code"]) == (none.status_code, none.json["code"]) == (404, "FLK-0500")
        assert runs["refunds"] in other.json["message"]  # the id asked about, nothing more
        assert scoped.simulate_get(f"/v1/executions/{runs['payments']}{suffix}").status_code == 200

    executions = scoped.simulate_get("/v1/executions").json["items"]
    assert [item["executionId"] for item in executions] == [runs["payments"]]
    filtered = scoped.simulate_get("/v1/executions", params={"workflowId": ids["refunds"]}).json["items"]
    assert filtered == []

    assert scoped.simulate_get("/v1/dashboards/workflows/summary").json["total"] == 1
    assert scoped.simulate_get("/v1/dashboards/executions").json["total"] == 1
    assert client.simulate_get("/v1/dashboards/executions").json["total"] == 2

    # Triggering: its own workflow runs; the other answers as if it did not exist.
    assert scoped.simulate_post(f"/v1/workflows/{ids['payments']}/executions", json={}).status_code == 201
    refused = scoped.simulate_post(f"/v1/workflows/{ids['refunds']}/executions", json={})
    assert (refused.status_code, refused.json["code"]) == (404, "FLK-0100")
    assert scoped.simulate_post("/v1/webhooks/payments", json={"amount": 2}).status_code == 201
    hook = scoped.simulate_post("/v1/webhooks/refunds", json={"amount": 2})
    assert (hook.status_code, hook.json["code"]) == (404, "FLK-0361")
    # Runs it did not start on the other workflow: none were made.
    refunds_runs = client.simulate_get("/v1/executions", params={"workflowId": ids["refunds"]}).json["items"]
    assert len(refunds_runs) == 1


def test_a_scoped_auditor_reads_only_its_workflows_audit_entries(app, client, two_workflows):
    ids, runs = two_workflows
    scoped = falcon.testing.TestClient(
        app, headers={"X-API-Key": stored_key(client, "payments-audit", "auditor", ["payments"])}
    )
    seen = scoped.simulate_get("/v1/audit-events", params={"limit": 100}).json["items"]
    everything = client.simulate_get("/v1/audit-events", params={"limit": 100}).json["items"]
    assert seen and len(seen) < len(everything)
    allowed = {ids["payments"], runs["payments"]}
    assert {entry["resourceId"] for entry in seen} == allowed
    other = next(entry for entry in everything if entry["resourceId"] in (ids["refunds"], runs["refunds"]))
    answer = scoped.simulate_get(f"/v1/audit-events/{other['eventId']}")
    assert (answer.status_code, answer.json["code"]) == (404, "FLK-0600")
    own = seen[0]
    assert scoped.simulate_get(f"/v1/audit-events/{own['eventId']}").status_code == 200
    # Verifying walks the whole chain: refused to a scoped caller (and audited).
    assert scoped.simulate_get(f"/v1/audit-events/{own['eventId']}/verify").status_code == 403


def test_a_scoped_editor_writes_only_workflows_named_in_its_scope(app, client, two_workflows, stub):
    ids, _ = two_workflows
    scoped = falcon.testing.TestClient(
        app, headers={"X-API-Key": stored_key(client, "payments-editor", "editor", ["payments", "payments-v2"])}
    )
    created = scoped.simulate_post("/v1/workflows", json=workflow_body(name="payments-v2", path="/payments-v2"))
    assert created.status_code == 201, created.text
    outside = scoped.simulate_post("/v1/workflows", json=workflow_body(name="elsewhere", path="/elsewhere"))
    assert (outside.status_code, outside.json["code"]) == (403, "FLK-0403")
    renamed = scoped.simulate_put(
        f"/v1/workflows/{created.json['workflowId']}", json=workflow_body(name="elsewhere", path="/p2")
    )
    assert renamed.status_code == 403
    clone = scoped.simulate_post(f"/v1/workflows/{ids['payments']}/clone", json={"name": "stolen"})
    assert clone.status_code == 403
    for verb in ("deactivate", "activate", "draft"):
        answer = scoped.simulate_post(f"/v1/workflows/{ids['refunds']}/{verb}")
        assert (answer.status_code, answer.json["code"]) == (404, "FLK-0100")
    assert scoped.simulate_delete(f"/v1/workflows/{ids['refunds']}").status_code == 404
    # Executors are shared by every workflow: a scoped key reads them but does not change them.
    assert scoped.simulate_get("/v1/executors").status_code == 200
    assert scoped.simulate_post("/v1/executors", json={}).status_code == 403
    names = {item["name"] for item in client.simulate_get("/v1/workflows").json["items"]}
    assert names == {"payments", "refunds", "payments-v2"}
    denied = client.simulate_get("/v1/audit-events", params={"eventType": "ACCESS_DENIED", "actor": "payments-editor"})
    assert {entry["resourceId"] for entry in denied.json["items"]} == {
        "createWorkflow",
        "replaceWorkflow",
        "cloneWorkflow",
        "createExecutor",
    }

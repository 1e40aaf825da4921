"""``/v1/workflows`` on both backends: bodies, lifecycle, versions, lists, clone."""

from __future__ import annotations

import uuid

from api_helpers import audit_count, create_executor, create_workflow, workflow_body
from flowker.storage.models import WebhookRoute, Workflow, WorkflowVersion

YAML_WORKFLOW = """\
kind: Workflow
name: yaml-flow
nodes:
  - id: start
    type: trigger
    data: {triggerType: manual}
  - id: out
    type: action
    data: {actionType: set_output, output: {ok: true}}
edges:
  - {source: start, target: out}
"""


def test_create_from_json_and_read_it_back(client):
    response = client.simulate_post("/v1/workflows", json=workflow_body())
    assert response.status_code == 201
    created = response.json
    assert set(created) == {"workflowId", "version", "status", "createdAt"}
    assert created["status"] == "draft" and created["version"] == 1
    assert response.headers["Location"] == f"/v1/workflows/{created['workflowId']}"
    workflow = client.simulate_get(f"/v1/workflows/{created['workflowId']}").json
    assert workflow["name"] == "payments" and workflow["description"] == "score a payment"
    assert [node["id"] for node in workflow["nodes"]] == ["start", "score", "out"]
    assert WorkflowVersion.select().where(WorkflowVersion.workflow_id == created["workflowId"]).count() == 1
    assert audit_count(client, resourceId=created["workflowId"], eventType="WORKFLOW_CREATED") == 1


def test_create_from_yaml_and_kind_checks(client):
    response = client.simulate_post("/v1/workflows", body=YAML_WORKFLOW, headers={"Content-Type": "application/yaml"})
    assert response.status_code == 201, response.text
    wrong_kind = client.simulate_post(
        "/v1/workflows",
        body=YAML_WORKFLOW.replace("kind: Workflow", "kind: Executor"),
        headers={"Content-Type": "application/yaml"},
    )
    assert wrong_kind.status_code == 422
    json_kind = client.simulate_post("/v1/workflows", json={**workflow_body(name="k"), "kind": "Executor"})
    assert json_kind.status_code == 422 and "kind" in json_kind.text
    with_kind = client.simulate_post("/v1/workflows", json={**workflow_body(name="k2", path="/k2"), "kind": "Workflow"})
    assert with_kind.status_code == 201


def test_yaml_alias_bombs_and_malformed_yaml_are_refused_with_locations(client):
    bomb = 'kind: Workflow\nname: &a ["x","x"]\nb: &b [*a,*a]\nc: [*b,*b]\n'
    response = client.simulate_post("/v1/workflows", body=bomb, headers={"Content-Type": "application/yaml"})
    assert response.status_code == 422
    assert "alias" in response.text.lower() or "anchor" in response.text.lower()
    broken = client.simulate_post(
        "/v1/workflows", body="name: [unclosed\n", headers={"Content-Type": "application/x-yaml"}
    )
    assert broken.status_code == 422
    assert broken.json["details"][0]["line"] is not None
    assert Workflow.select().count() == 0


def test_bad_bodies(client):
    assert (
        client.simulate_post("/v1/workflows", body="{not json", headers={"Content-Type": "application/json"}).json[
            "code"
        ]
        == "FLK-0001"
    )
    assert (
        client.simulate_post("/v1/workflows", body="[1]", headers={"Content-Type": "application/json"}).status_code
        == 400
    )
    assert client.simulate_post("/v1/workflows", body="x", headers={"Content-Type": "text/plain"}).status_code == 415
    unknown = client.simulate_post("/v1/workflows", json={**workflow_body(), "extra": 1})
    assert unknown.status_code == 422 and unknown.json["code"] == "FLK-0120"
    assert any("unknown field 'extra'" in d["message"] for d in unknown.json["details"])
    invalid = workflow_body()
    invalid["edges"].append({"source": "out", "target": "start"})  # a cycle
    assert client.simulate_post("/v1/workflows", json=invalid).status_code == 422
    assert Workflow.select().count() == 0


def test_duplicate_names_conflict(client):
    create_workflow(client)
    response = client.simulate_post("/v1/workflows", json=workflow_body())
    assert response.status_code == 409 and response.json["code"] == "FLK-0101"


def test_ids_are_checked(client):
    assert client.simulate_get("/v1/workflows/not-a-uuid").json["code"] == "FLK-0002"
    missing = client.simulate_get(f"/v1/workflows/{uuid.uuid4()}")
    assert missing.status_code == 404 and missing.json["code"] == "FLK-0100"


def test_put_replaces_drafts_with_a_new_version_and_unchanged_specs_change_nothing(client):
    workflow_id = create_workflow(client)
    body = workflow_body()
    body["description"] = "changed"
    response = client.simulate_put(f"/v1/workflows/{workflow_id}", json=body)
    assert response.status_code == 200 and response.json["version"] == 2
    assert response.json["description"] == "changed"
    entries = audit_count(client, resourceId=workflow_id)
    again = client.simulate_put(f"/v1/workflows/{workflow_id}", json=body)
    assert again.status_code == 200 and again.json["version"] == 2
    assert audit_count(client, resourceId=workflow_id) == entries
    assert WorkflowVersion.select().where(WorkflowVersion.workflow_id == workflow_id).count() == 2
    yaml_put = client.simulate_put(
        f"/v1/workflows/{workflow_id}",
        body=YAML_WORKFLOW.replace("yaml-flow", "payments"),
        headers={"Content-Type": "application/yaml"},
    )
    assert yaml_put.status_code == 200 and yaml_put.json["version"] == 3


def test_lifecycle(client, stub):
    create_executor(client, stub.url)
    workflow_id = create_workflow(client)
    base = f"/v1/workflows/{workflow_id}"
    assert client.simulate_post(base + "/deactivate").json["code"] == "FLK-0102"
    assert client.simulate_post(base + "/draft").json["code"] == "FLK-0102"
    active = client.simulate_post(base + "/activate")
    assert active.status_code == 200 and active.json["status"] == "active"
    assert WebhookRoute.get(WebhookRoute.workflow_id == workflow_id).path == "/payments"
    assert client.simulate_post(base + "/activate").status_code == 422
    put = client.simulate_put(base, json=workflow_body())
    assert put.status_code == 422 and put.json["code"] == "FLK-0103"
    delete = client.simulate_delete(base)
    assert delete.status_code == 422 and delete.json["code"] == "FLK-0103"
    assert client.simulate_post(base + "/deactivate").json["status"] == "inactive"
    assert WebhookRoute.select().count() == 0
    assert client.simulate_post(base + "/draft").json["status"] == "draft"
    assert client.simulate_delete(base).status_code == 204
    assert client.simulate_get(base).status_code == 404
    for event in ("WORKFLOW_ACTIVATED", "WORKFLOW_DEACTIVATED", "WORKFLOW_DRAFTED", "WORKFLOW_DELETED"):
        assert audit_count(client, resourceId=workflow_id, eventType=event) == 1, event


def test_activation_runs_every_check_against_stored_executors(client, stub):
    workflow_id = create_workflow(client)
    response = client.simulate_post(f"/v1/workflows/{workflow_id}/activate")
    assert response.status_code == 422 and "unknown executor 'scorer'" in response.text
    executor_id = create_executor(client, stub.url)
    client.simulate_post(f"/v1/executors/{executor_id}/disable")
    disabled = client.simulate_post(f"/v1/workflows/{workflow_id}/activate")
    assert disabled.status_code == 422 and "disabled" in disabled.text
    client.simulate_post(f"/v1/executors/{executor_id}/enable")
    wrong_endpoint = workflow_body(name="other", path="/other")
    wrong_endpoint["nodes"][1]["data"]["endpoint"] = "nope"
    other_id = create_workflow(client, wrong_endpoint)
    assert "has no endpoint 'nope'" in client.simulate_post(f"/v1/workflows/{other_id}/activate").text
    # By id works as well as by name.
    by_id = workflow_body(name="by-id", executor=executor_id, path="/by-id")
    assert client.simulate_post(f"/v1/workflows/{create_workflow(client, by_id)}/activate").status_code == 200
    assert client.simulate_post(f"/v1/workflows/{workflow_id}/activate").status_code == 200


def test_webhook_route_conflicts_fail_activation(client, stub):
    create_executor(client, stub.url)
    create_workflow(client, activate=True)
    second = create_workflow(client, workflow_body(name="second"))  # same POST /payments
    response = client.simulate_post(f"/v1/workflows/{second}/activate")
    assert response.status_code == 409 and response.json["code"] == "FLK-0360"
    assert client.simulate_get(f"/v1/workflows/{second}").json["status"] == "draft"


def test_clone_makes_a_new_draft(client, stub):
    create_executor(client, stub.url)
    source = create_workflow(client, activate=True)
    response = client.simulate_post(f"/v1/workflows/{source}/clone", json={"name": "payments-copy"})
    assert response.status_code == 201 and response.json["status"] == "draft"
    clone = client.simulate_get(f"/v1/workflows/{response.json['workflowId']}").json
    assert clone["name"] == "payments-copy" and len(clone["nodes"]) == 3
    assert client.simulate_post(f"/v1/workflows/{source}/clone", json={"name": "payments"}).status_code == 409
    assert client.simulate_post(f"/v1/workflows/{source}/clone", json={}).status_code == 422
    assert client.simulate_post(f"/v1/workflows/{source}/clone", json={"name": "x", "more": 1}).status_code == 422
    assert audit_count(client, eventType="WORKFLOW_CLONED") == 1


def test_list_filters_sorting_and_cursors(client):
    ids = [create_workflow(client, workflow_body(name=f"wf-{index:02d}", path=f"/p{index}")) for index in range(7)]
    seen, cursor = [], None
    for _ in range(10):
        params = {"limit": 3, "sortBy": "name", "sortOrder": "ASC"}
        if cursor:
            params = {"limit": 3, "cursor": cursor}
        page = client.simulate_get("/v1/workflows", params=params).json
        seen += [item["name"] for item in page["items"]]
        if not page["hasMore"]:
            assert page["nextCursor"] == ""
            break
        cursor = page["nextCursor"]
    assert seen == [f"wf-{index:02d}" for index in range(7)]
    newest_first = client.simulate_get("/v1/workflows", params={"limit": 100}).json["items"]
    assert [item["id"] for item in newest_first] == list(reversed(ids))
    assert client.simulate_get("/v1/workflows", params={"status": "active"}).json["items"] == []
    for params, code in (
        ({"limit": 0}, "FLK-0309"),
        ({"limit": 101}, "FLK-0309"),
        ({"limit": "x"}, "FLK-0309"),
        ({"status": "weird"}, "FLK-0304"),
        ({"status": ""}, "FLK-0304"),
        ({"sortBy": "id"}, "FLK-0304"),
        ({"sortOrder": "up"}, "FLK-0310"),
        ({"limit": ""}, "FLK-0309"),
        ({"cursor": "!!!"}, "FLK-0311"),
        ({"cursor": "eyJ4IjoxfQ"}, "FLK-0311"),
        ({"cursor": cursor, "sortBy": "createdAt"}, "FLK-0304"),
    ):
        response = client.simulate_get("/v1/workflows", params=params)
        assert response.status_code == 400 and response.json["code"] == code, params

"""``/v1/executors`` on both backends: secrets at rest and in responses, PUT/PATCH,
lifecycle, deletion rules and the connectivity test."""

from __future__ import annotations

import uuid

import falcon.testing

from api_helpers import API_KEY, SECRET_KEY, audit_count, create_executor, create_workflow, executor_body, workflow_body
from flowker.storage.models import Executor

TOKEN = "stub-token-1234567"


def test_create_get_and_secrets_never_leave(client, stub):
    response = client.simulate_post("/v1/executors", json=executor_body(stub.url))
    assert response.status_code == 201
    assert set(response.json) == {"id", "name", "status", "createdAt"}
    assert response.json["status"] == "active"
    executor_id = response.json["id"]
    shown = client.simulate_get(f"/v1/executors/{executor_id}")
    assert shown.json["authentication"]["config"]["token"] == "****" + TOKEN[-4:]
    assert TOKEN not in shown.text
    assert TOKEN not in client.simulate_get("/v1/executors").text
    row = Executor.get_by_id(executor_id)
    assert TOKEN not in row.spec_hash and TOKEN not in str(row.spec)
    assert "$encrypted" in row.spec["authentication"]["config"]["token"]
    assert TOKEN not in client.simulate_get("/v1/audit-events", params={"limit": 100}).text


def test_secret_references_are_kept_and_shown(client, stub):
    body = executor_body(stub.url, authentication={"type": "bearer", "config": {"token": {"$env": "SCORER_TOKEN"}}})
    executor_id = client.simulate_post("/v1/executors", json=body).json["id"]
    shown = client.simulate_get(f"/v1/executors/{executor_id}").json
    assert shown["authentication"]["config"]["token"] == {"$env": "SCORER_TOKEN"}


def test_yaml_executor_and_bad_specs(client, stub):
    yaml_body = f"""kind: Executor
name: yaml-exec
baseUrl: {stub.url}
endpoints:
  - {{name: analyze, path: /analyze, method: POST}}
authentication: {{type: none}}
"""
    response = client.simulate_post("/v1/executors", body=yaml_body, headers={"Content-Type": "application/yaml"})
    assert response.status_code == 201, response.text
    unknown_auth = executor_body(stub.url, name="x", authentication={"type": "magic"})
    assert "unknown auth type 'magic'" in client.simulate_post("/v1/executors", json=unknown_auth).text
    missing = executor_body(stub.url, name="y", authentication={"type": "bearer", "config": {}})
    assert client.simulate_post("/v1/executors", json=missing).status_code == 422
    metadata = executor_body("http://169.254.169.254", name="z")
    refused = client.simulate_post("/v1/executors", json=metadata)
    assert refused.status_code == 422 and refused.json["code"] == "FLK-0341"
    assert (
        client.simulate_post("/v1/executors", json=executor_body(stub.url, name="yaml-exec")).json["code"] == "FLK-0251"
    )
    assert client.simulate_get(f"/v1/executors/{uuid.uuid4()}").json["code"] == "FLK-0250"


def test_production_refuses_plain_http_base_urls(make_app, stub):
    app = make_app(settings={"env": "production"})
    client = falcon.testing.TestClient(app, headers={"X-API-Key": API_KEY})
    response = client.simulate_post("/v1/executors", json=executor_body("http://api.example.com"), protocol="https")
    assert response.status_code == 422 and response.json["code"] == "FLK-0341"
    assert "https" in response.json["message"]


def test_put_keeps_masked_secrets_and_unchanged_puts_do_nothing(client, stub):
    executor_id = create_executor(client, stub.url)
    shown = client.simulate_get(f"/v1/executors/{executor_id}").json
    body = executor_body(stub.url, description="now described")
    body["authentication"]["config"]["token"] = shown["authentication"]["config"]["token"]  # "****4567"
    response = client.simulate_put(f"/v1/executors/{executor_id}", json=body)
    assert response.status_code == 200 and response.json["version"] == 2
    from flowker.security.secrets import SecretBox

    row = Executor.get_by_id(executor_id)
    assert SecretBox([SECRET_KEY]).decrypt_fields(row.spec)["authentication"]["config"]["token"] == TOKEN
    before = audit_count(client, resourceId=executor_id)
    body["authentication"]["config"]["token"] = TOKEN
    assert client.simulate_put(f"/v1/executors/{executor_id}", json=body).json["version"] == 2
    assert audit_count(client, resourceId=executor_id) == before


def test_patch_merges(client, stub):
    executor_id = create_executor(client, stub.url)
    response = client.simulate_patch(
        f"/v1/executors/{executor_id}",
        json={"description": "patched", "metadata": {"team": "risk"}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert response.status_code == 200, response.text
    assert response.json["description"] == "patched" and response.json["metadata"] == {"team": "risk"}
    assert response.json["authentication"]["config"]["token"] == "****" + TOKEN[-4:]
    removed = client.simulate_patch(f"/v1/executors/{executor_id}", json={"description": None})
    assert "description" not in removed.json
    assert client.simulate_patch(f"/v1/executors/{executor_id}", json={"bogus": 1}).status_code == 422
    assert client.simulate_patch(f"/v1/executors/{executor_id}", json={"endpoints": []}).status_code == 422


def test_enable_disable_and_delete_rules(client, stub):
    executor_id = create_executor(client, stub.url)
    base = f"/v1/executors/{executor_id}"
    assert client.simulate_post(base + "/enable").json["code"] == "FLK-0252"
    assert client.simulate_post(base + "/disable").json["status"] == "disabled"
    assert client.simulate_post(base + "/disable").status_code == 422
    assert client.simulate_post(base + "/enable").json["status"] == "active"
    assert client.simulate_get("/v1/executors", params={"status": "disabled"}).json["items"] == []
    workflow_id = create_workflow(client, workflow_body(), activate=True)
    in_use = client.simulate_delete(base)
    assert in_use.status_code == 409 and in_use.json["code"] == "FLK-0253"
    renamed = client.simulate_patch(base, json={"name": "renamed"})
    assert renamed.status_code == 409
    client.simulate_post(f"/v1/workflows/{workflow_id}/deactivate")
    assert client.simulate_delete(base).status_code == 204
    assert client.simulate_get(base).status_code == 404
    for event in ("EXECUTOR_CREATED", "EXECUTOR_DISABLED", "EXECUTOR_ENABLED", "EXECUTOR_DELETED"):
        assert audit_count(client, resourceId=executor_id, eventType=event) == 1, event


def test_connectivity_test_passes_against_a_live_service(client, stub):
    executor_id = create_executor(client, stub.url + "/protected")
    report = client.simulate_post(f"/v1/executors/{executor_id}/test")
    assert report.status_code == 200, report.text
    body = report.json
    assert body["overallStatus"] == "passed", body
    assert [stage["status"] for stage in body["stages"]] == ["passed", "passed", "passed"]
    assert TOKEN not in report.text
    authorized = [r for r in stub.requests if r.header("Authorization")]
    assert authorized and all(r.header("Authorization") == f"Bearer {TOKEN}" for r in authorized)
    assert client.simulate_get(f"/v1/executors/{executor_id}").json["lastTestedAt"]


def test_connectivity_test_reports_refused_credentials(client, stub):
    executor_id = create_executor(client, stub.url + "/unauthorized")
    body = client.simulate_post(f"/v1/executors/{executor_id}/test").json
    assert [stage["status"] for stage in body["stages"]] == ["passed", "failed", "skipped"]
    assert body["overallStatus"] == "partial"
    assert body["stages"][2]["message"] == "Skipped due to authentication failure"


def test_connectivity_test_reports_an_unreachable_service(client, stub):
    from flowker.local_server import LocalHTTPServer

    with LocalHTTPServer() as gone:
        url = gone.url
    executor_id = create_executor(client, url)
    body = client.simulate_post(f"/v1/executors/{executor_id}/test").json
    assert body["overallStatus"] == "failed"
    assert body["stages"][0]["status"] == "failed" and body["stages"][1]["status"] == "skipped"

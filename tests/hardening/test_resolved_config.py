"""Secrets as the runner and the probe really use them, on both databases:

* a ``{$env}``/``{$file}`` reference passes the schema as a placeholder when the spec is
  saved; its value is checked against the type's schema before ``build`` - a too-short
  hmac secret fails the step (FLK-0521) and the probe's authentication stage, naming the
  field and the rule, never the value, and no request is sent;
* the probe registers a literal (encrypted at rest) query-string key with the redactor
  before its first request, so urllib3's DEBUG request line shows it scrubbed.
"""

from __future__ import annotations

import json

from flowker.local_server import LocalHTTPServer

SHORT_SECRET = "Qzshortx"  # 8 characters; the hmac plugin wants at least 16


def _workflow(client, executor_body: dict) -> tuple[str, str]:
    created = client.simulate_post("/v1/executors", json=executor_body)
    assert created.status_code == 201, created.text
    workflow = {
        "name": "wf",
        "nodes": [
            {"id": "start", "type": "trigger", "data": {"triggerType": "manual"}},
            {"id": "call", "type": "executor", "data": {"executor": executor_body["name"], "endpoint": "call"}},
        ],
        "edges": [{"source": "start", "target": "call"}],
    }
    workflow_id = client.simulate_post("/v1/workflows", json=workflow).json["workflowId"]
    assert client.simulate_post(f"/v1/workflows/{workflow_id}/activate").status_code == 200
    return created.json["id"], workflow_id


def test_a_reference_whose_value_breaks_the_schema_fails_before_any_request(make_app, monkeypatch, debug_logs):
    monkeypatch.setenv("PARTNER_HMAC_SECRET", SHORT_SECRET)
    with LocalHTTPServer() as server:
        client = make_app.client()
        executor_id, workflow_id = _workflow(
            client,
            {
                "name": "signed",
                "baseUrl": server.url,
                "endpoints": [{"name": "call", "path": "/call", "method": "GET"}],
                "authentication": {
                    "type": "hmac",
                    "config": {"key_id": "k1", "secret": {"$env": "PARTNER_HMAC_SECRET"}},
                },
            },
        )
        started = client.simulate_post(f"/v1/workflows/{workflow_id}/executions", json={"inputData": {}})
        probe = client.simulate_post(f"/v1/executors/{executor_id}/test")
        sent = [request.path for request in server.requests]

    assert started.status_code == 201 and started.json["status"] == "failed", started.text
    results = client.simulate_get(f"/v1/executions/{started.json['executionId']}/results").json
    step = next(s for s in results["stepResults"] if s["nodeId"] == "call")
    assert "authentication.config.secret must be at least 16 characters long" in step["errorMessage"], step
    assert "'hmac'" in step["errorMessage"]
    events = json.dumps(client.simulate_get("/v1/audit-events", params={"limit": 100}).json)
    assert "FLK-0521" in events

    stages = {stage["name"]: stage for stage in probe.json["stages"]}
    assert stages["authentication"]["status"] == "failed", probe.json
    assert "at least 16 characters" in stages["authentication"]["error"]
    assert "/call" not in sent  # neither the run nor the probe sent a signed request
    assert all(path == "/" for path in sent), sent  # only the probe's credential-less connectivity stage

    everything = started.text + json.dumps(results) + probe.text + events + debug_logs.text
    assert SHORT_SECRET not in everything


def test_the_probe_registers_a_literal_query_key_before_its_first_request(make_app, debug_logs):
    key = "probe-literal-key-7f3a9c"
    with LocalHTTPServer() as server:
        client = make_app.client()
        created = client.simulate_post(
            "/v1/executors",
            json={
                "name": "keyed",
                "baseUrl": server.url,
                "endpoints": [{"name": "call", "path": "/call", "method": "GET"}],
                "authentication": {
                    "type": "api_key",
                    "config": {"key": key, "location": "query", "query_param_name": "auth"},
                },
            },
        )
        assert created.status_code == 201, created.text
        probe = client.simulate_post(f"/v1/executors/{created.json['id']}/test")
        received = [request.query.get("auth") for request in server.requests]
    assert probe.json["overallStatus"] == "passed", probe.json
    assert key in received  # the key really went out, in the query string
    assert "?auth=" in debug_logs.text  # urllib3 logged the request line
    assert key not in debug_logs.text and key not in probe.text

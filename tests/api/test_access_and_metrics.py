"""Access lines, execution lines, request ids in the audit chain and /metrics (DESIGN §14), on
an app on a real database calling a real local executor service."""

from __future__ import annotations

import json
import logging
import re

import falcon.testing
import pytest

from api_helpers import API_KEY, create_executor, create_workflow, workflow_body
from flowker.observability.logs import JsonFormatter
from flowker.observability.metrics import METRIC_NAMES
from flowker.security.redaction import Redactor, install_log_redaction


class JsonLines(logging.Handler):
    """Every record, as the JSON formatter writes it."""

    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def documents(self, logger: str) -> list[dict]:
        return [doc for doc in map(json.loads, self.lines) if doc["logger"] == logger]


@pytest.fixture
def json_lines():
    handler = JsonLines()
    root = logging.getLogger()
    saved = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(saved)


def samples(text: str) -> dict[str, float]:
    """``name{labels}`` -> value, for every sample line of a Prometheus text exposition."""
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            found[key] = float(value)
    return found


def test_one_access_line_per_request_with_route_template_principal_and_request_id(client, json_lines):
    client.simulate_get("/v1/workflows/wf-does-not-exist", headers={"X-Request-ID": "req-abc.1"})
    falcon.testing.TestClient(client.app).simulate_get("/v1/workflows")  # no key: 401
    client.simulate_get("/health")
    lines = json_lines.documents("flowker.access")
    assert len(lines) == 3, lines
    first, refused, health = lines
    assert first["method"] == "GET" and first["route"] == "/v1/workflows/{workflow_id}"
    assert first["status"] in (400, 404) and first["request_id"] == "req-abc.1" and first["principal"] == "ci-bot"
    assert isinstance(first["duration_ms"], float) and first["duration_ms"] >= 0
    assert "wf-does-not-exist" not in json.dumps(lines)  # the template, never the raw path
    assert (
        refused["status"] == 401 and "principal" not in refused and re.fullmatch(r"[0-9a-f]{32}", refused["request_id"])
    )
    assert health["route"] == "/health" and health["principal"] == "anonymous"


def test_a_client_chosen_request_id_is_scrubbed_a_generated_one_written_as_is(client, json_lines):
    # A secret the redactor knows, in the request id's alphabet, sent as X-Request-ID.
    secret = "ci-secret-0123456789abcdef"
    redactor = Redactor()
    redactor.add_secret(secret)
    uninstall = install_log_redaction(redactor)
    try:
        client.simulate_get("/v1/workflows", headers={"X-Request-ID": secret})
        client.simulate_get("/v1/workflows")
    finally:
        uninstall()
    lines = json_lines.documents("flowker.access")
    assert len(lines) == 2 and secret not in json.dumps(lines)
    assert lines[0]["request_id"] == "****"
    assert re.fullmatch(r"[0-9a-f]{32}", lines[1]["request_id"])


def test_request_ids_are_bounded_echoed_and_in_the_audit_entries_metadata(client):
    for hostile in ("x" * 129, "bad id with spaces", "new\nline"):
        response = client.simulate_get("/v1/workflows", headers={"X-Request-ID": hostile})
        echoed = response.headers["X-Request-ID"]
        assert echoed != hostile and re.fullmatch(r"[0-9a-f]{32}", echoed)
    response = client.simulate_post("/v1/workflows", json=workflow_body(), headers={"X-Request-ID": "ci-run-42"})
    assert response.status_code == 201 and response.headers["X-Request-ID"] == "ci-run-42"
    workflow_id = response.json["workflowId"]
    page = client.simulate_get("/v1/audit-events", params={"resourceId": workflow_id}).json
    assert [item["metadata"].get("requestId") for item in page["items"]] == ["ci-run-42"]
    # Verification recomputes the hash from the canonical text: the metadata is part of it.
    event_id = page["items"][0]["eventId"]
    assert client.simulate_get(f"/v1/audit-events/{event_id}/verify").json["isValid"] is True
    found = samples(client.simulate_get("/metrics").text)
    assert found['flowker_audit_verifications_total{result="valid"}'] == 1


def test_execution_end_and_failed_step_lines(client, stub, json_lines):
    create_executor(client, stub.url)
    good = create_workflow(client, activate=True)
    body = workflow_body(name="refused", path="/refused")
    body["nodes"][1]["data"]["endpoint"] = "status"
    create_executor(client, stub.url + "/unauthorized", name="denied")
    body["nodes"][1]["data"]["executor"] = "denied"
    bad = create_workflow(client, body, activate=True)
    ok = client.simulate_post(f"/v1/workflows/{good}/executions", json={"inputData": {"amount": 5}})
    failed = client.simulate_post(f"/v1/workflows/{bad}/executions", json={"inputData": {"amount": 5}})
    assert ok.json["status"] == "completed" and failed.json["status"] == "failed"
    lines = json_lines.documents("flowker.executions")
    ends = {line["execution_id"]: line for line in lines if "node" not in line}
    assert (
        ends[ok.json["executionId"]]["status"] == "completed" and ends[ok.json["executionId"]]["workflow"] == "payments"
    )
    assert (
        ends[failed.json["executionId"]]["status"] == "failed"
        and ends[failed.json["executionId"]]["level"] == "WARNING"
    )
    assert all(isinstance(line["duration_ms"], float) for line in ends.values())
    (step,) = [line for line in lines if "node" in line]
    assert step["node"] == "score" and step["node_type"] == "executor" and step["attempts"] == 1
    assert step["execution_id"] == failed.json["executionId"] and step["error_code"].startswith("FLK-")


def test_metrics_need_a_key_and_count_executions_steps_calls_and_requests(client, stub):
    anonymous = falcon.testing.TestClient(client.app)
    refused = anonymous.simulate_get("/metrics")
    assert refused.status_code == 401 and refused.json["code"]
    create_executor(client, stub.url)
    workflow_id = create_workflow(client, activate=True)
    for amount in range(3):
        response = client.simulate_post(
            f"/v1/workflows/{workflow_id}/executions", json={"inputData": {"amount": amount}}
        )
        assert response.json["status"] == "completed"
    response = client.simulate_get("/metrics")
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/plain")
    found = samples(response.text)
    assert found['flowker_executions_total{status="completed",workflow="payments"}'] == 3
    assert found['flowker_execution_duration_seconds_count{workflow="payments"}'] == 3
    assert found['flowker_steps_total{node_type="executor",status="completed",workflow="payments"}'] == 3
    assert found['flowker_executor_calls_total{endpoint="analyze",executor="scorer",outcome="success"}'] == 3
    assert found['flowker_executor_call_duration_seconds_count{endpoint="analyze",executor="scorer"}'] == 3
    assert found['flowker_circuit_breaker_state{executor="scorer"}'] == 0
    route = "/v1/workflows/{workflow_id}/executions"
    assert found[f'flowker_http_requests_total{{method="POST",route="{route}",status="201"}}'] == 3
    assert found['flowker_http_requests_total{method="GET",route="/metrics",status="401"}'] == 1
    assert found["flowker_audit_appends_total"] >= 3 * 4  # start, steps, call attempts, end
    assert "flowker_queue_depth" in found
    assert found['flowker_executor_retries_total{executor="scorer"}'] == 0
    declared = set(re.findall(r"^# TYPE (\w+) ", response.text, re.MULTILINE))
    assert set(METRIC_NAMES) <= declared, declared


def test_retries_and_an_open_breaker_are_counted(make_app, stub):
    app = make_app(settings={"retry_max_attempts": "2", "cb_failure_threshold": "2", "cb_recovery_seconds": "600"})
    client = falcon.testing.TestClient(app, headers={"X-API-Key": API_KEY})
    create_executor(client, "http://127.0.0.1:9", name="down")  # nothing listens on the discard port
    body = workflow_body(executor="down")
    workflow_id = create_workflow(client, body, activate=True)
    for _ in range(2):
        response = client.simulate_post(f"/v1/workflows/{workflow_id}/executions", json={"inputData": {"amount": 1}})
        assert response.json["status"] == "failed"
    found = samples(client.simulate_get("/metrics").text)
    assert found['flowker_executor_calls_total{endpoint="analyze",executor="down",outcome="network_error"}'] == 2
    assert found['flowker_executor_calls_total{endpoint="analyze",executor="down",outcome="circuit_open"}'] == 1
    assert found['flowker_executor_retries_total{executor="down"}'] == 1
    assert found['flowker_circuit_breaker_state{executor="down"}'] == 2
    assert found['flowker_executions_total{status="failed",workflow="payments"}'] == 2


@pytest.mark.filterwarnings("ignore::wsgiref.validate.WSGIWarning")  # the made-up methods
def test_a_flood_of_distinct_paths_leaves_the_series_count_bounded(client):
    before = len(samples(client.simulate_get("/metrics").text))
    for index in range(1000):
        client.simulate_post(f"/v1/webhooks/flood-{index}", json={})
        client.simulate_get(f"/flood/{index}/x")
        client.simulate_request(f"M{index % 50}", f"/v1/workflows/{index}")
    text = client.simulate_get("/metrics").text
    after = samples(text)
    assert "flood" not in text and "M49" not in text
    # A handful of new (method, route, status) combinations, each a few series: not thousands.
    assert len(after) - before < 150, len(after) - before
    routes = {match for match in re.findall(r'route="([^"]*)"', text)}
    assert routes <= {"/metrics", "/v1/webhooks/{path}", "unmatched", "/v1/workflows/{workflow_id}"}, routes


def test_metrics_off_records_nothing(make_app, stub):
    app = make_app(settings={"metrics": "off"})
    client = falcon.testing.TestClient(app, headers={"X-API-Key": API_KEY})
    client.simulate_get("/v1/workflows")
    response = client.simulate_get("/metrics")
    assert response.status_code == 200 and "flowker_" not in response.text.replace("FLOWKER_METRICS", "")

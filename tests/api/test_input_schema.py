"""A trigger's ``inputSchema`` refuses a bad input with 422 FLK-0511 listing every problem,
before anything is stored: REST (sync and ``Prefer: respond-async``) and webhooks (sync
and async), on both backends. Counted directly in the executions table and the audit
chain."""

from __future__ import annotations

import pytest

from api_helpers import create_executor, create_workflow, workflow_body
from flowker.storage.models import AuditEntry, Execution

INPUT_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["amount", "payer"],
    "properties": {
        "amount": {"type": "number", "exclusiveMinimum": 0},
        "payer": {"type": "string", "minLength": 1},
        "currency": {"enum": ["EUR", "USD"]},
        "customer": {
            "type": "object",
            "required": ["email"],
            "properties": {"email": {"type": "string", "format": "email"}},
        },
    },
}
GOOD = {"amount": 12.5, "payer": "alice", "currency": "EUR", "customer": {"email": "a@example.com"}}
# Every problem: missing payer, amount <= 0, currency not listed, email not an email,
# and a field the schema does not allow (a near miss of "currency").
BAD = {"amount": 0, "currncy": "EUR", "currency": "GBP", "customer": {"email": "not-an-email"}}
BAD_PATHS = {"/payer", "/amount", "/currency", "/customer/email", "/currncy"}


def stored() -> tuple[int, int]:
    """(executions, audit entries) as stored."""
    return Execution.select().count(), AuditEntry.select().count()


@pytest.fixture
def schema_workflow(client, stub):
    create_executor(client, stub.url)
    return create_workflow(client, workflow_body(inputSchema=INPUT_SCHEMA), activate=True)


def assert_refused(response, paths=BAD_PATHS):
    assert response.status_code == 422, response.text
    body = response.json
    assert body["code"] == "FLK-0511" and body["title"] == "Input Invalid", body
    details = body["details"]
    assert {detail["path"] for detail in details} == paths, details
    assert all(set(detail) == {"path", "message"} for detail in details)
    by_path = {detail["path"]: detail["message"] for detail in details}
    if "/currncy" in by_path:
        assert "did you mean 'currency'?" in by_path["/currncy"]
        assert by_path["/payer"] == "is required"
        assert "not-an-email" not in response.text  # messages name the rule, not the value
    assert str(len(details)) in body["message"] and "inputSchema" in body["message"]


@pytest.mark.parametrize("prefer", [None, "respond-async"])
def test_rest_run_with_a_bad_input_is_refused_before_anything_is_stored(client, schema_workflow, prefer):
    headers = {"Prefer": prefer} if prefer else {}
    before = stored()
    response = client.simulate_post(
        f"/v1/workflows/{schema_workflow}/executions", json={"inputData": BAD}, headers=headers
    )
    assert_refused(response)
    assert stored() == before

    # A body of {} (no inputData at all) is an empty input: both required fields are missing.
    empty = client.simulate_post(f"/v1/workflows/{schema_workflow}/executions", json={}, headers=headers)
    assert_refused(empty, {"/amount", "/payer"})
    assert stored() == before

    # The same with an Idempotency-Key: nothing is kept, so the key stays free for a good input.
    keyed = {**headers, "Idempotency-Key": "order-1"}
    refused = client.simulate_post(
        f"/v1/workflows/{schema_workflow}/executions", json={"inputData": BAD}, headers=keyed
    )
    assert_refused(refused)
    assert stored() == before
    accepted = client.simulate_post(
        f"/v1/workflows/{schema_workflow}/executions", json={"inputData": GOOD}, headers=keyed
    )
    assert accepted.status_code == (202 if prefer else 201), accepted.text
    assert stored()[0] == before[0] + 1


@pytest.mark.parametrize("prefer", [None, "respond-async"])
def test_webhook_with_a_bad_body_is_refused_before_anything_is_stored(client, schema_workflow, stub, prefer):
    headers = {"Prefer": prefer} if prefer else {}
    before = stored()
    calls = len(stub.requests)
    assert_refused(client.simulate_post("/v1/webhooks/payments", json=BAD, headers=headers))
    # An empty webhook body is the input {}.
    assert_refused(client.simulate_post("/v1/webhooks/payments", headers=headers), {"/amount", "/payer"})
    assert stored() == before and len(stub.requests) == calls

    # The schema describes the body: the _webhook part Flowker adds is not an "unknown field".
    accepted = client.simulate_post("/v1/webhooks/payments", json=GOOD, headers=headers)
    assert accepted.status_code == (202 if prefer else 201), accepted.text
    assert stored()[0] == before[0] + 1


def test_a_workflow_without_input_schema_takes_any_object(client, active_workflow):
    workflow_id, _ = active_workflow
    response = client.simulate_post(f"/v1/workflows/{workflow_id}/executions", json={"inputData": BAD})
    assert response.status_code == 201 and response.json["status"] == "completed", response.text


def test_an_invalid_input_schema_is_refused_when_the_workflow_is_saved(client, stub):
    create_executor(client, stub.url)
    broken = {
        "type": "objekt",
        "properties": {"amount": {"minimum": "zero"}, "items": {"$ref": "https://example.com/item.json"}},
    }
    before = stored()
    response = client.simulate_post("/v1/workflows", json=workflow_body(inputSchema=broken))
    assert response.status_code == 422 and response.json["code"] == "FLK-0120", response.text
    messages = {detail["path"]: detail["message"] for detail in response.json["details"]}
    assert "did you mean 'object'?" in messages["$.nodes[0].data.inputSchema.type"], messages
    assert "minimum" in messages["$.nodes[0].data.inputSchema.properties.amount.minimum"], messages
    assert "not local" in messages["$.nodes[0].data.inputSchema.properties.items.$ref"], messages
    assert stored() == before


def test_unknown_spec_fields_get_a_hint_in_the_api_answer(client, stub):
    create_executor(client, stub.url)
    body = workflow_body()
    body["nodes"][1]["data"]["endpiont"] = body["nodes"][1]["data"].pop("endpoint")
    response = client.simulate_post("/v1/workflows", json=body)
    assert response.status_code == 422, response.text
    first, second = response.json["details"][:2]
    assert first["message"] == "unknown field 'endpiont' (did you mean 'endpoint'?)", response.json
    assert first["path"] == "$.nodes[1].data.endpiont"
    assert second["message"] == "missing required field 'endpoint' (is 'endpiont' a misspelling of it?)"
    assert "did you mean 'endpoint'?" in response.json["message"]

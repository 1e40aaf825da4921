"""Signed webhooks through the REST app, on SQLite and PostgreSQL: a trigger declaring
``auth: {type: signature, ...}`` runs on a valid signature without X-API-Key; a bad
signature, a skewed timestamp and a replay (also through a second app on the same
database, as another server would be) are refused with {code, title, message}, and
nothing runs. Without the declaration a webhook still needs a key."""

from __future__ import annotations

import datetime as _dt
import json
import time

import falcon.testing
import pytest

from api_helpers import create_executor, create_workflow, workflow_body
from flowker.security.webhook_signatures import sign_github, sign_standard_webhooks
from flowker.storage.models import WebhookDelivery

SW_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the Standard Webhooks test secret
GITHUB_SECRET = "It's a Secret to Everybody"
HMAC_SECRET = "plain-hmac-secret-for-tests-0001"


@pytest.fixture
def signed_workflows(client, stub, monkeypatch):
    """Three active workflows, one per scheme; secrets from the environment."""
    monkeypatch.setenv("SW_SIGNING_SECRET", SW_SECRET)
    monkeypatch.setenv("GH_SIGNING_SECRET", GITHUB_SECRET)
    monkeypatch.setenv("HMAC_SIGNING_SECRET", HMAC_SECRET)
    create_executor(client, stub.url)
    ids = {}
    for name, scheme, variable, extra in (
        ("svix-orders", "standard-webhooks", "SW_SIGNING_SECRET", {}),
        ("github-pushes", "github", "GH_SIGNING_SECRET", {}),
        ("shop-orders", "hmac-sha256", "HMAC_SIGNING_SECRET", {"header": "X-Shop-Hmac-Sha256"}),
    ):
        auth = {"type": "signature", "scheme": scheme, "secret": {"$env": variable}, **extra}
        ids[name] = create_workflow(client, workflow_body(name=name, path=f"/{name}", auth=auth), activate=True)
    return ids


def _standard(body: bytes, message_id: str = "msg_1", timestamp: int | None = None, secret: str = SW_SECRET):
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign_standard_webhooks(secret, message_id, timestamp, body),
        "Content-Type": "application/json",
    }


def _executions(client, workflow_id: str) -> int:
    return len(client.simulate_get("/v1/executions", params={"workflowId": workflow_id, "limit": 100}).json["items"])


def _refused(response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json["code"] == code
    assert response.json["title"] and response.json["message"]


def test_a_standard_webhooks_call_runs_without_a_key(signed_workflows, client, anonymous, stub):
    body = json.dumps({"amount": 42}).encode()
    response = anonymous.simulate_post("/v1/webhooks/svix-orders", body=body, headers=_standard(body))
    assert response.status_code == 201, response.text
    execution_id = response.json["executionId"]
    assert stub.requests[-1].json() == {"amount": 42}
    # The audit names the signed webhook (kind webhook_signature, the workflow), never a key.
    events = client.simulate_get("/v1/audit-events", params={"resourceId": execution_id, "limit": 10}).json["items"]
    actors = {(event["actor"]["type"], event["actor"]["id"]) for event in events}
    assert ("webhook_signature", "svix-orders") in actors
    assert SW_SECRET not in json.dumps(events)


def test_bad_signature_skewed_timestamp_and_replay_are_refused(signed_workflows, client, anonymous, make_app):
    workflow_id = signed_workflows["svix-orders"]
    body = b'{"amount": 7}'
    wrong = _standard(body, secret="whsec_" + "QUJD" * 8)
    _refused(anonymous.simulate_post("/v1/webhooks/svix-orders", body=body, headers=wrong), 401, "FLK-0364")
    tampered = _standard(body)
    _refused(
        anonymous.simulate_post("/v1/webhooks/svix-orders", body=b'{"amount": 700}', headers=tampered), 401, "FLK-0364"
    )
    skewed = _standard(body, message_id="msg_old", timestamp=int(time.time()) - 301)
    refused = anonymous.simulate_post("/v1/webhooks/svix-orders", body=body, headers=skewed)
    _refused(refused, 401, "FLK-0365")
    assert "5 minutes" in refused.json["message"]
    no_signature = {"webhook-id": "msg_2", "webhook-timestamp": str(int(time.time()))}
    _refused(anonymous.simulate_post("/v1/webhooks/svix-orders", body=body, headers=no_signature), 401, "FLK-0364")
    assert _executions(client, workflow_id) == 0

    headers = _standard(body, message_id="msg_replayed")
    assert anonymous.simulate_post("/v1/webhooks/svix-orders", body=body, headers=headers).status_code == 201
    _refused(anonymous.simulate_post("/v1/webhooks/svix-orders", body=body, headers=headers), 409, "FLK-0366")
    # Another server on the same database refuses it too.
    other_server = falcon.testing.TestClient(make_app())
    _refused(other_server.simulate_post("/v1/webhooks/svix-orders", body=body, headers=headers), 409, "FLK-0366")
    assert _executions(client, workflow_id) == 1
    # A new message id is a new message.
    fresh = _standard(body, message_id="msg_fresh")
    assert other_server.simulate_post("/v1/webhooks/svix-orders", body=body, headers=fresh).status_code == 201


def test_github_signature(signed_workflows, client, anonymous):
    body = b'{"amount": 3, "ref": "refs/heads/main"}'
    headers = {"X-Hub-Signature-256": sign_github(GITHUB_SECRET, body), "X-GitHub-Delivery": "d-0001"}
    assert anonymous.simulate_post("/v1/webhooks/github-pushes", body=body, headers=headers).status_code == 201
    _refused(anonymous.simulate_post("/v1/webhooks/github-pushes", body=body, headers=headers), 409, "FLK-0366")
    redelivered = {**headers, "X-GitHub-Delivery": "d-0002"}
    assert anonymous.simulate_post("/v1/webhooks/github-pushes", body=body, headers=redelivered).status_code == 201
    bad = {"X-Hub-Signature-256": sign_github("not the secret", body), "X-GitHub-Delivery": "d-0003"}
    _refused(anonymous.simulate_post("/v1/webhooks/github-pushes", body=body, headers=bad), 401, "FLK-0364")


def test_hmac_sha256_signature_in_the_configured_header(signed_workflows, anonymous):
    import hashlib
    import hmac

    body = b'{"amount": 11}'
    digest = hmac.new(HMAC_SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert anonymous.simulate_post("/v1/webhooks/shop-orders", body=body, headers={"X-Shop-Hmac-Sha256": digest})
    # No message id in this scheme: the same signed body again is the same message.
    _refused(
        anonymous.simulate_post("/v1/webhooks/shop-orders", body=body, headers={"X-Shop-Hmac-Sha256": digest}),
        409,
        "FLK-0366",
    )
    # The default header name is not the one this trigger declared.
    _refused(
        anonymous.simulate_post("/v1/webhooks/shop-orders", body=body, headers={"X-Signature": digest}), 401, "FLK-0364"
    )


def test_a_key_still_works_on_a_signed_route_and_undeclared_routes_still_need_one(signed_workflows, client, anonymous):
    assert client.simulate_post("/v1/webhooks/svix-orders", json={"amount": 1}).status_code == 201
    create_workflow(client, workflow_body(name="plain", path="/plain"), activate=True)
    body = b'{"amount": 1}'
    # A Standard Webhooks signature does not open a route that declares no signature.
    _refused(anonymous.simulate_post("/v1/webhooks/plain", body=body, headers=_standard(body)), 401, "FLK-0401")
    # Without a credential, an unknown route is not told apart from a protected one.
    _refused(anonymous.simulate_post("/v1/webhooks/no-such-route", body=body), 401, "FLK-0401")
    assert client.simulate_post("/v1/webhooks/no-such-route", body=body).json["code"] == "FLK-0361"
    # A signature is no credential for the rest of the API.
    _refused(anonymous.simulate_get("/v1/workflows", headers=_standard(b"")), 401, "FLK-0401")


def test_the_signing_secret_is_checked_masked_and_never_shown(client, stub, database):
    create_executor(client, stub.url)
    literal = "literal-signing-secret-0123456789"
    auth = {"type": "signature", "scheme": "hmac-sha256", "secret": literal}
    workflow_id = create_workflow(client, workflow_body(name="literal", path="/literal", auth=auth), activate=True)
    shown = client.simulate_get(f"/v1/workflows/{workflow_id}")
    assert literal not in shown.text and "****" in shown.text
    # The stored literal (encrypted at rest) is what signatures are checked with.
    import hashlib
    import hmac

    body = b'{"amount": 2}'
    anonymous = falcon.testing.TestClient(client.app)
    digest = hmac.new(literal.encode(), body, hashlib.sha256).hexdigest()
    assert (
        anonymous.simulate_post("/v1/webhooks/literal", body=body, headers={"X-Signature": digest}).status_code == 201
    )
    # Stored encrypted: in no row of the workflow tables, executions or the audit chain.
    with database.connection_context():
        for table in ("workflow", "workflow_version", "execution", "step_result", "audit_entry"):
            rows = database.execute_sql(f"SELECT * FROM {table}").fetchall()
            assert rows and literal not in repr(rows), table
    # The secret-reference policy applies: FLOWKER_* variables are never readable.
    forbidden = {"type": "signature", "scheme": "github", "secret": {"$env": "FLOWKER_SECRET_KEY"}}
    response = client.simulate_post("/v1/workflows", json=workflow_body(name="leaky", path="/leaky", auth=forbidden))
    _refused(response, 422, "FLK-0007")
    # header is for hmac-sha256 only; schemes are a closed list.
    odd = {"type": "signature", "scheme": "github", "secret": {"$env": "X"}, "header": "X-Sig"}
    response = client.simulate_post("/v1/workflows", json=workflow_body(name="odd", path="/odd", auth=odd))
    assert response.status_code == 422 and "only applies to scheme hmac-sha256" in response.text
    unknown = {"type": "signature", "scheme": "stripe", "secret": {"$env": "X"}}
    response = client.simulate_post("/v1/workflows", json=workflow_body(name="unk", path="/unk", auth=unknown))
    assert response.status_code == 422 and "auth.scheme" in response.text and "hmac-sha256" in response.text


def test_old_message_ids_are_pruned(signed_workflows, anonymous, database):
    from flowker.storage.webhook_deliveries import delivery_key, prune_expired, remember_delivery

    now = _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None)
    key = delivery_key("workflow-1", "github", "d-old")
    with database.bind_ctx([WebhookDelivery]), database.connection_context():
        assert remember_delivery(key, "workflow-1", now, now - _dt.timedelta(seconds=1))
        assert not remember_delivery(key, "workflow-1", now, now + _dt.timedelta(days=1))
        assert prune_expired(now) == 1
        assert remember_delivery(key, "workflow-1", now, now + _dt.timedelta(days=1))
        assert prune_expired(now) == 0


def test_a_signed_message_that_did_not_run_is_no_replay_on_retry(signed_workflows, make_app, client):
    """A draining server answers 503 and runs nothing; the sender's retry of the same
    message on another server runs (the id was taken back), and only then is it spent."""
    draining = make_app()
    draining.state.start_draining()
    body = b'{"amount": 5}'
    headers = _standard(body, message_id="msg_retry")
    refused = falcon.testing.TestClient(draining).simulate_post("/v1/webhooks/svix-orders", body=body, headers=headers)
    _refused(refused, 503, "FLK-0801")
    other = falcon.testing.TestClient(make_app())
    assert other.simulate_post("/v1/webhooks/svix-orders", body=body, headers=headers).status_code == 201
    _refused(other.simulate_post("/v1/webhooks/svix-orders", body=body, headers=headers), 409, "FLK-0366")
    assert _executions(client, signed_workflows["svix-orders"]) == 1

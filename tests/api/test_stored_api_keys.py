"""``/v1/api-keys``: keys made, listed and revoked over REST (admin only), stored as hashes,
refused once revoked or expired, each change audited, last use written in batches."""

from __future__ import annotations

import datetime as _dt
import logging

import falcon.testing
import pytest

from flowker.storage.database import bound_to
from flowker.storage.models import ApiKeyRecord, utcnow

from api_helpers import API_KEY


def create(client, **body):
    return client.simulate_post("/v1/api-keys", json=body)


def audit_of(client, event_type: str) -> list[dict]:
    return client.simulate_get("/v1/audit-events", params={"eventType": event_type, "limit": 100}).json["items"]


def test_a_key_is_shown_once_works_and_is_listed_without_it(app, client):
    made = create(client, name="ci-deploy", role="operator", expires="90d")
    assert made.status_code == 201, made.text
    body = made.json
    key = body.pop("key")
    assert key.startswith("flk_") and len(key) == 60
    expires = _dt.datetime.fromisoformat(body["expiresAt"].replace("Z", "+00:00"))
    assert abs((expires - _dt.datetime.now(_dt.timezone.utc)) - _dt.timedelta(days=90)) < _dt.timedelta(minutes=1)
    assert body == {**body, "name": "ci-deploy", "role": "operator", "workflows": None}

    own = falcon.testing.TestClient(app, headers={"X-API-Key": key})
    assert own.simulate_get("/v1/workflows").status_code == 200
    assert own.simulate_get("/v1/api-keys").status_code == 403  # operator, not admin

    listed = client.simulate_get("/v1/api-keys")
    assert listed.status_code == 200 and key not in listed.text
    (item,) = listed.json["items"]
    assert item["name"] == "ci-deploy" and item["status"] == "active" and item["createdBy"] == "ci-bot"
    assert item["lastUsedAt"] is not None and item["expiresAt"] == body["expiresAt"]

    # The audit trail names the key (never shows it) and who made it.
    (created,) = audit_of(client, "API_KEY_CREATED")
    assert created["resourceId"] == "ci-deploy" and created["actor"]["id"] == "ci-bot"
    assert created["metadata"]["role"] == "operator" and key not in str(created)
    entries = client.simulate_get("/v1/audit-events", params={"actor": "ci-deploy"}).json["items"]
    assert entries and all(entry["actor"]["id"] == "ci-deploy" for entry in entries)  # its 403


def test_a_revoked_key_is_refused_at_once_and_its_name_can_be_reused(app, client):
    key = create(client, name="temp", role="viewer").json["key"]
    own = falcon.testing.TestClient(app, headers={"X-API-Key": key})
    assert own.simulate_get("/v1/executions").status_code == 200
    assert client.simulate_delete("/v1/api-keys/temp").status_code == 204
    refused = own.simulate_get("/v1/executions")
    assert (refused.status_code, refused.json["code"]) == (401, "FLK-0401")
    again = client.simulate_delete("/v1/api-keys/temp")
    assert (again.status_code, again.json["code"]) == (404, "FLK-0700")
    (item,) = client.simulate_get("/v1/api-keys").json["items"]
    assert item["status"] == "revoked" and item["revokedAt"] is not None
    (revoked,) = audit_of(client, "API_KEY_REVOKED")
    assert revoked["resourceId"] == "temp" and revoked["actor"]["id"] == "ci-bot"

    replacement = create(client, name="temp", role="viewer")
    assert replacement.status_code == 201
    assert own.simulate_get("/v1/executions").status_code == 401  # the old key stays dead
    new = falcon.testing.TestClient(app, headers={"X-API-Key": replacement.json["key"]})
    assert new.simulate_get("/v1/executions").status_code == 200


def test_a_key_with_the_right_lookup_id_but_another_secret_is_refused(app, client):
    key = create(client, name="real", role="admin").json["key"]
    forged = key[:-6] + ("AAAAAA" if not key.endswith("AAAAAA") else "BBBBBB")
    for presented in (forged, key + "x", key[:-1], key.upper(), key.replace("_", "-", 1)):
        answer = falcon.testing.TestClient(app, headers={"X-API-Key": presented}).simulate_get("/v1/workflows")
        assert answer.status_code == 401, presented


def test_bad_requests_are_refused_and_change_nothing(client):
    cases = [
        ({"name": "x", "role": "root"}, 422, "FLK-0702"),
        ({"name": "x", "role": "admin", "workflows": ["payments"]}, 422, "FLK-0702"),
        ({"name": "x", "role": "viewer", "expires": "soon"}, 422, "FLK-0702"),
        ({"name": "x", "role": "viewer", "expires": "2001-01-01T00:00:00Z"}, 422, "FLK-0702"),
        ({"name": "x", "role": "viewer", "workflows": []}, 422, "FLK-0702"),
        ({"name": "x", "role": "viewer", "workflows": "payments"}, 422, "FLK-0702"),
        ({"name": "bad name!", "role": "viewer"}, 422, "FLK-0702"),
        ({"name": "ci-bot", "role": "viewer"}, 409, "FLK-0701"),  # a FLOWKER_API_KEYS name
        ({"name": "x", "role": "viewer", "scope": "all"}, 400, "FLK-0001"),
    ]
    for body, status, code in cases:
        answer = create(client, **body)
        assert (answer.status_code, answer.json.get("code")) == (status, code), (body, answer.text)
    assert create(client, name="once", role="viewer").status_code == 201
    taken = create(client, name="once", role="editor")
    assert (taken.status_code, taken.json["code"]) == (409, "FLK-0701")
    assert [item["name"] for item in client.simulate_get("/v1/api-keys").json["items"]] == ["once"]
    assert len(audit_of(client, "API_KEY_CREATED")) == 1


def test_an_expired_key_is_refused_and_its_expiry_audited_once(app, client, database):
    key = create(client, name="short", role="viewer", expires="1h").json["key"]
    own = falcon.testing.TestClient(app, headers={"X-API-Key": key})
    assert own.simulate_get("/v1/workflows").status_code == 200
    with bound_to(database):
        ApiKeyRecord.update(expires_at=utcnow() - _dt.timedelta(seconds=1)).execute()
    for _ in range(3):
        refused = own.simulate_get("/v1/workflows")
        assert (refused.status_code, refused.json["code"]) == (401, "FLK-0401")
    (expired,) = audit_of(client, "API_KEY_EXPIRED")
    assert expired["resourceId"] == "short" and expired["actor"]["type"] == "system"
    assert client.simulate_get("/v1/api-keys").json["items"][0]["status"] == "expired"
    assert len(audit_of(client, "API_KEY_EXPIRED")) == 1


def test_last_use_is_written_at_most_once_per_interval_per_key(app, client, database):
    clock = [1000.0]
    store = app.state.api_keys
    store.clock = lambda: clock[0]
    keys = [create(client, name=f"busy-{n}", role="viewer").json["key"] for n in range(2)]
    clients = [falcon.testing.TestClient(app, headers={"X-API-Key": key}) for key in keys]
    for _ in range(40):
        for own in clients:
            assert own.simulate_get("/v1/catalog/action-types").status_code == 200
    assert store.last_used_writes == 2  # 80 requests, one write per key
    with bound_to(database):
        first = {row.name: row.last_used_at for row in ApiKeyRecord.select()}
    clock[0] += store.last_used_interval + 1
    for own in clients:
        own.simulate_get("/v1/catalog/action-types")
    assert store.last_used_writes == 4
    with bound_to(database):
        later = {row.name: row.last_used_at for row in ApiKeyRecord.select()}
    assert all(later[name] > first[name] for name in first)


def test_stored_keys_are_compared_in_constant_time(app, client, monkeypatch):
    from flowker.catalog import api_keys

    key = create(client, name="timed", role="viewer").json["key"]
    calls = []
    real = api_keys.hmac.compare_digest

    def counting(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(api_keys.hmac, "compare_digest", counting)
    wrong = key[:-1] + ("A" if key[-1] != "A" else "B")
    for presented, status in ((key, 200), (wrong, 401)):
        calls.clear()
        answer = falcon.testing.TestClient(app, headers={"X-API-Key": presented}).simulate_get("/v1/workflows")
        assert answer.status_code == status
        # One comparison of fixed-length hex digests (the others: FLOWKER_API_KEYS' sha256 digests).
        stored = [(a, b) for a, b in calls if len(a) == 64]
        assert len(stored) == 1 and len(stored[0][1]) == 64 and key.encode() not in stored[0]


@pytest.mark.parametrize("role", ["viewer", "editor", "auditor", "operator"])
def test_only_admins_manage_keys(app, client, role):
    key = create(client, name=f"{role}-1", role=role).json["key"]
    other = falcon.testing.TestClient(app, headers={"X-API-Key": key})
    for method, path in (("POST", "/v1/api-keys"), ("GET", "/v1/api-keys"), ("DELETE", f"/v1/api-keys/{role}-1")):
        answer = other.simulate_request(method, path, json={"name": "y", "role": "admin"} if method == "POST" else None)
        assert (answer.status_code, answer.json["code"]) == (403, "FLK-0403"), (method, role)
    assert len(client.simulate_get("/v1/api-keys").json["items"]) == 1


def test_the_key_text_is_nowhere_but_in_the_create_answer(sqlite_factory, tmp_path, caplog):
    """Canary: the key is not in the SQLite files (database, WAL, shared memory), the log
    or any audit entry, while it was made, used, refused and revoked."""
    caplog.set_level(logging.DEBUG)
    app = sqlite_factory()
    admin = falcon.testing.TestClient(app, headers={"X-API-Key": API_KEY})
    made = create(admin, name="canary", role="viewer", expires="30d")
    key = made.json["key"]
    secret = key[len("flk_") + 13 :]  # the part after the lookup id (it may hold "_" itself)
    own = falcon.testing.TestClient(app, headers={"X-API-Key": key})
    assert own.simulate_get("/v1/workflows").status_code == 200
    assert own.simulate_post("/v1/workflows", json={}).status_code == 403
    assert admin.simulate_delete("/v1/api-keys/canary").status_code == 204
    assert own.simulate_get("/v1/workflows").status_code == 401
    answers = [admin.simulate_get(path).text for path in ("/v1/api-keys", "/v1/audit-events?limit=100")]
    files = {path.name: path.read_bytes() for path in tmp_path.glob("api.db*")}
    assert {"api.db", "api.db-wal"} <= set(files)
    haystacks = {**files, "log": caplog.text, "answers": "\n".join(answers)}
    for name, haystack in haystacks.items():
        text = haystack.decode("latin-1") if isinstance(haystack, bytes) else haystack
        assert key not in text and secret not in text, name
    # ... while its hash and name are there (the check looks in the right place).
    from flowker.catalog.api_keys import key_digest

    assert key_digest(key).encode() in files["api.db-wal"] + files["api.db"]
    assert b"canary" in files["api.db-wal"] + files["api.db"]


def test_a_change_of_role_scope_or_expiry_counts_at_once_and_is_audited(app, client, two_workflows_for_keys):
    key = create(client, name="ops", role="viewer").json["key"]
    own = falcon.testing.TestClient(app, headers={"X-API-Key": key})
    assert own.simulate_post(f"/v1/workflows/{two_workflows_for_keys}/executions", json={}).status_code == 403

    changed = client.simulate_patch("/v1/api-keys/ops", json={"role": "operator", "workflows": ["payments"]})
    assert changed.status_code == 200, changed.text
    assert (
        changed.json["role"] == "operator" and changed.json["workflows"] == ["payments"] and "key" not in changed.json
    )
    assert own.simulate_post(f"/v1/workflows/{two_workflows_for_keys}/executions", json={}).status_code == 201
    assert [item["name"] for item in own.simulate_get("/v1/workflows").json["items"]] == ["payments"]

    assert client.simulate_patch("/v1/api-keys/ops", json={"workflows": None, "expires": "2h"}).status_code == 200
    assert len(own.simulate_get("/v1/workflows").json["items"]) == 2
    (entry,) = audit_of(client, "API_KEY_CHANGED")[1:]  # the newest first: the first change
    assert entry["metadata"]["before"] == {"role": "viewer", "workflows": None, "expiresAt": None}
    assert entry["metadata"]["role"] == "operator" and entry["actor"]["id"] == "ci-bot"

    for body, status, code in (
        ({"role": "root"}, 422, "FLK-0702"),
        ({"role": "admin", "workflows": ["payments"]}, 422, "FLK-0702"),
        ({"expires": 5}, 422, "FLK-0702"),
        ({"key": "mine"}, 400, "FLK-0001"),
    ):
        answer = client.simulate_patch("/v1/api-keys/ops", json=body)
        assert (answer.status_code, answer.json["code"]) == (status, code), body
    missing = client.simulate_patch("/v1/api-keys/nobody", json={"role": "viewer"})
    assert (missing.status_code, missing.json["code"]) == (404, "FLK-0700")
    assert len(audit_of(client, "API_KEY_CHANGED")) == 2
    assert client.simulate_get("/v1/api-keys").json["items"][0]["role"] == "operator"


@pytest.fixture
def two_workflows_for_keys(client, active_workflow):
    from api_helpers import create_workflow, workflow_body

    create_workflow(client, workflow_body(name="refunds", path="/refunds"), activate=True)
    return active_workflow[0]

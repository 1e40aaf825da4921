"""People signing in to the REST API with the real OpenID provider's JWT access tokens
(people_provider.mjs), on SQLite and PostgreSQL: roles from the claim through the role
map, 403 for a role that may not (and for a person the map gives no role, audited),
401 for hostile tokens, 503 FLK-0710 when the provider's keys cannot be fetched."""

from __future__ import annotations

import base64
import json
import time

import falcon.testing
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from app_factory import AppFactory, app_settings
from flowker.api.bearer import people_authenticator

API_KEY = "people-test-key-0123456789abcdef0123"
ROLE_MAP = "flowker-admins=admin,ops=operator,flowker-viewers=viewer"


def _settings(database_url: str, provider, **overrides):
    values = {
        "api_keys": f"ops-bot:{API_KEY}",
        "oidc_issuer": provider.issuer,
        "oidc_audience": provider.audience,
        "oidc_role_map": ROLE_MAP,
        **overrides,
    }
    return app_settings(database_url, **values)


@pytest.fixture(scope="module")
def registry():
    from flowker.plugins import load_registry

    return load_registry()


@pytest.fixture
def people_app(database, database_url, registry, people_provider):
    """``people_app(now=...)``: an app whose bearer tokens are checked against the
    provider (its CA trusted; ``now`` is the verifier's clock)."""
    factory = AppFactory(database, database_url, registry, lambda url, **o: _settings(url, people_provider, **o))

    def build(now=time.time, **settings):
        built = factory.settings(**settings)
        authenticator = people_authenticator(built, None, new_session=people_provider.sessions(built), now=now)
        return falcon.testing.TestClient(factory.build(built, bearer_authenticator=authenticator))

    yield build
    factory.close()


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def _segment(data) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


WORKFLOW = {
    "name": "people-made",
    "nodes": [
        {"id": "start", "type": "trigger", "data": {"triggerType": "manual"}},
        {"id": "out", "type": "action", "data": {"actionType": "set_output", "output": {"ok": True}}},
    ],
    "edges": [{"source": "start", "target": "out"}],
}


def test_people_act_with_their_mapped_roles_and_the_audit_names_them(people_app, people_provider):
    client = people_app()
    admin = _bearer(people_provider.token("ada"))
    created = client.simulate_post("/v1/workflows", json=WORKFLOW, headers=admin)
    assert created.status_code == 201, created.text
    workflow_id = created.json["workflowId"]
    events = client.simulate_get(
        "/v1/audit-events", params={"resourceId": workflow_id, "limit": 10}, headers=admin
    ).json["items"]
    assert {(e["actor"]["type"], e["actor"]["id"]) for e in events} == {("person", f"{people_provider.issuer} ada")}

    viewer = _bearer(people_provider.token("vic"))
    assert client.simulate_get(f"/v1/workflows/{workflow_id}", headers=viewer).status_code == 200
    refused = client.simulate_delete(f"/v1/workflows/{workflow_id}", headers=viewer)
    assert refused.status_code == 403 and refused.json["code"] == "FLK-0403"
    operator = _bearer(people_provider.token("olu"))
    assert client.simulate_get("/v1/audit-events", headers=operator).status_code == 403


def test_a_person_whose_claim_maps_to_no_role_gets_403_and_it_is_audited(people_app, people_provider):
    client = people_app()
    refused = client.simulate_get("/v1/workflows", headers=_bearer(people_provider.token("nia")))
    assert refused.status_code == 403 and refused.json["code"] == "FLK-0403"
    assert "FLOWKER_OIDC_ROLE_MAP" in refused.json["message"] and "'marketing'" in refused.json["message"]
    events = client.simulate_get(
        "/v1/audit-events", params={"action": "ACCESS", "limit": 10}, headers={"X-API-Key": API_KEY}
    ).json["items"]
    denied = [
        e for e in events if e["actor"]["type"] == "person" and e["actor"]["id"] == f"{people_provider.issuer} nia"
    ]
    assert len(denied) == 1 and denied[0]["result"] == "FAILED"


def test_hostile_tokens_get_401(people_app, people_provider):
    client = people_app()
    token = people_provider.token("ada")
    claims = jwt.decode(token, options={"verify_signature": False})
    header = jwt.get_unverified_header(token)
    unsigned = f"{_segment({'alg': 'none', 'typ': 'JWT'})}.{_segment(claims)}."
    forged_claims = f"{token.split('.')[0]}.{_segment({**claims, 'sub': 'mallory'})}.{token.split('.')[2]}"
    hmac_signed = jwt.encode(claims, "x" * 32, algorithm="HS256", headers={"kid": header["kid"]})
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    unknown_kid = jwt.encode(claims, stranger, algorithm="RS256", headers={"kid": "not-published"})
    for hostile in (unsigned, forged_claims, hmac_signed, unknown_kid, "not-a-jwt", token + "x"):
        response = client.simulate_get("/v1/workflows", headers=_bearer(hostile))
        assert response.status_code == 401, (hostile[:40], response.text)
        assert response.json["code"] == "FLK-0401" and "bearer token refused" in response.json["message"]
        assert hostile not in response.text
    # Expired: the verifier's clock past exp plus the leeway.
    late = people_app(now=lambda: claims["exp"] + 31)
    expired = late.simulate_get("/v1/workflows", headers=_bearer(token))
    assert expired.status_code == 401 and "expired" in expired.json["message"]
    # Another audience: the same provider, a server expecting another one.
    elsewhere = people_app(oidc_audience="https://other.example.test")
    assert elsewhere.simulate_get("/v1/workflows", headers=_bearer(token)).status_code == 401
    # Keys keep working beside bearer tokens.
    assert client.simulate_get("/v1/workflows", headers={"X-API-Key": API_KEY}).status_code == 200


def test_create_app_builds_the_authenticator_from_settings_and_holds_the_issuer_to_its_rules(
    database, database_url, registry, people_provider
):
    """Without an authenticator given, create_app makes one from FLOWKER_OIDC_*: it fetches
    through the guarded session, which trusts the system CAs only (not the test CA), so the
    provider cannot be reached: 503 FLK-0710, and the token is never echoed."""
    factory = AppFactory(database, database_url, registry, lambda url, **o: _settings(url, people_provider, **o))
    try:
        client = falcon.testing.TestClient(factory.build(factory.settings()))
        token = people_provider.token("ada")
        response = client.simulate_get("/v1/workflows", headers=_bearer(token))
        assert response.status_code == 503 and response.json["code"] == "FLK-0710", response.text
        assert "TLS certificate" in response.json["message"] and token not in response.text
    finally:
        factory.close()

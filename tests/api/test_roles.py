"""Every operation of /openapi.json, called with every role: the answer matches the one
roles table (flowker.access.routes) that the document states as x-flowker-roles.

No credential or a wrong one: 401 FLK-0401. A role the operation does not list: 403
FLK-0403, and an ACCESS_DENIED audit entry naming the caller. A role it lists: neither
401 nor 403 (the request may still be refused for what it asks: 404, 422...).
"""

from __future__ import annotations

import re
import uuid

import falcon.testing
import pytest

from flowker.access.principal import ROLE_ORDER, Role
from flowker.access.routes import OPERATION_PERMISSIONS, UNSCOPED_ONLY, roles_for
from flowker.api.openapi_operations import OPERATIONS

from api_helpers import API_KEY

ROLE_KEYS = {role: f"{role.value}-key-{uuid.uuid4().hex}" for role in ROLE_ORDER}
KEYS_SETTING = ",".join(f"{role.value}-caller:{key}:{role.value}" for role, key in ROLE_KEYS.items())
PATH_VALUES = {"path": "payments", "type_name": "bearer", "name": "no-such-key"}


def _url(path: str) -> str:
    # Ids that exist nowhere: allowed callers get 404, never a change.
    return re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES.get(m.group(1), str(uuid.uuid4())), path)


def _operations(document) -> list[tuple[str, str, dict]]:
    return [
        (method.upper(), path, operation)
        for path, item in sorted(document["paths"].items())
        for method, operation in sorted(item.items())
    ]


def _call(client, method: str, path: str, key: str | None):
    headers = {} if key is None else {"X-API-Key": key}
    body = None if method in ("GET", "DELETE") else {}
    return client.simulate_request(method, _url(path), headers=headers, json=body)


@pytest.fixture
def roles_app(make_app):
    return make_app(settings={"api_keys": KEYS_SETTING})


def test_the_table_covers_every_operation_and_nothing_else():
    ids = {op.operation_id for op in OPERATIONS}
    assert set(OPERATION_PERMISSIONS) == ids
    assert UNSCOPED_ONLY <= ids


def test_every_operation_answers_each_role_as_the_table_says(roles_app):
    client = falcon.testing.TestClient(roles_app)
    document = client.simulate_get("/openapi.json", headers={"X-API-Key": ROLE_KEYS[Role.ADMIN]}).json
    operations = _operations(document)
    assert len(operations) == len(OPERATIONS)
    refusals = 0
    for method, path, operation in operations:
        allowed = operation["x-flowker-roles"]
        assert allowed == roles_for(operation["operationId"]), operation["operationId"]
        public = operation.get("security") == []
        for key in (None, "wrong-" + API_KEY):
            answer = _call(client, method, path, key)
            if public:
                assert answer.status_code == 200, (method, path)
            else:
                assert (answer.status_code, answer.json["code"]) == (401, "FLK-0401"), (method, path, key)
        if public:
            assert allowed == []
            continue
        for role, key in ROLE_KEYS.items():
            answer = _call(client, method, path, key)
            if role.value in allowed:
                assert answer.status_code not in (401, 403), (method, path, role, answer.text)
            else:
                assert (answer.status_code, answer.json["code"]) == (403, "FLK-0403"), (method, path, role)
                assert "FLK" not in answer.json["message"] and key not in answer.text
                refusals += 1
    assert refusals > 50  # most operations refuse some role

    # Every refusal is in the audit chain, naming the caller (never its key) and the operation.
    admin = falcon.testing.TestClient(roles_app, headers={"X-API-Key": ROLE_KEYS[Role.ADMIN]})
    denied = []
    cursor = None
    for _ in range(100):
        params = {"eventType": "ACCESS_DENIED", "limit": 100, **({"cursor": cursor} if cursor else {})}
        page = admin.simulate_get("/v1/audit-events", params=params).json
        denied += page["items"]
        cursor = page.get("nextCursor")
        if not page["hasMore"]:
            break
    assert len(denied) == refusals
    assert {entry["actor"]["id"] for entry in denied} <= {f"{role.value}-caller" for role in ROLE_ORDER}
    viewer_denials = {entry["resourceId"] for entry in denied if entry["actor"]["id"] == "viewer-caller"}
    assert {"createWorkflow", "listAuditEvents", "createApiKey", "webhookPost"} <= viewer_denials
    assert all(entry["result"] == "FAILED" for entry in denied)
    assert not any(key in str(denied) for key in ROLE_KEYS.values())


def test_the_roles_nest_as_the_design_says():
    def allowed(operation_id):
        return set(roles_for(operation_id))

    assert allowed("listWorkflows") == {"viewer", "operator", "editor", "auditor", "admin"}
    assert allowed("executeWorkflow") == {"operator", "editor", "admin"}
    assert allowed("webhookPost") == {"operator", "editor", "admin", "webhook"}
    assert allowed("createExecutor") == allowed("activateWorkflow") == allowed("testExecutor") == {"editor", "admin"}
    assert allowed("listAuditEvents") == allowed("verifyAuditChain") == {"auditor", "admin"}
    assert allowed("createApiKey") == allowed("revokeApiKey") == {"admin"}
    assert roles_for("health") == []


def test_a_webhook_call_without_a_key_is_401_and_with_a_webhook_key_runs(make_app, client, active_workflow):
    app = make_app(settings={"api_keys": KEYS_SETTING})
    anonymous = falcon.testing.TestClient(app)
    refused = anonymous.simulate_post("/v1/webhooks/payments", json={"amount": 5})
    assert (refused.status_code, refused.json["code"]) == (401, "FLK-0401")
    hook = falcon.testing.TestClient(app, headers={"X-API-Key": ROLE_KEYS[Role.WEBHOOK]})
    ran = hook.simulate_post("/v1/webhooks/payments", json={"amount": 5})
    assert ran.status_code == 201, ran.text
    # ... but nothing else: not even reading the execution it started.
    assert hook.simulate_get(f"/v1/executions/{ran.json['executionId']}").status_code == 403


def test_a_bearer_token_without_an_openid_provider_is_401(anonymous):
    answer = anonymous.simulate_get("/v1/workflows", headers={"Authorization": "Bearer abc.def.ghi"})
    assert (answer.status_code, answer.json["code"]) == (401, "FLK-0401")
    assert "OpenID" in answer.json["message"]


def test_a_bearer_authenticator_given_to_create_app_decides(make_app):
    from flowker.access import Principal, PrincipalKind
    from flowker.errors import Unauthorized

    def authenticate(token: str) -> Principal:
        if token != "good-token":
            raise Unauthorized("token refused")
        return Principal(PrincipalKind.PERSON, "https://issuer.test alice", Role.VIEWER)

    app = make_app(bearer_authenticator=authenticate)
    client = falcon.testing.TestClient(app)
    assert client.simulate_get("/v1/workflows", headers={"Authorization": "Bearer good-token"}).status_code == 200
    refused = client.simulate_post("/v1/workflows", json={}, headers={"Authorization": "Bearer good-token"})
    assert refused.status_code == 403
    assert client.simulate_get("/v1/workflows", headers={"Authorization": "Bearer bad"}).status_code == 401
    assert client.simulate_get("/v1/workflows", headers={"Authorization": "Basic eDp5"}).status_code == 401


def test_docs_roles_md_is_the_table():
    from pathlib import Path

    from flowker.api.roles_doc import markdown

    docs = Path(__file__).resolve().parents[2] / "docs" / "roles.md"
    assert docs.read_text(encoding="utf-8") == markdown(), (
        "docs/roles.md is stale: python -m flowker.api.roles_doc > docs/roles.md"
    )


def test_a_responder_missing_from_the_table_is_refused_not_open():
    """A route added without its row in the roles table fails closed (403), whoever calls."""
    import falcon

    from flowker.api.authentication import AuthenticationMiddleware, AuthorizationMiddleware
    from flowker.api.middleware import ClientMiddleware
    from flowker.settings import Settings

    class Unlisted:
        def on_get(self, req, resp):
            resp.media = {"secret": "data"}

    keys = Settings.from_mapping({"api_keys": f"root:{API_KEY}"}).api_keys
    refusals = []
    app = falcon.App(
        middleware=[
            ClientMiddleware(()),
            AuthenticationMiddleware(keys),
            AuthorizationMiddleware({}, on_forbidden=lambda *args: refusals.append(args[2])),
        ]
    )
    from flowker.api import errors as api_errors

    api_errors.install(app)
    app.add_route("/v1/unlisted", Unlisted())
    answer = falcon.testing.TestClient(app, headers={"X-API-Key": API_KEY}).simulate_get("/v1/unlisted")
    assert (answer.status_code, answer.json["code"]) == (403, "FLK-0403")
    assert refusals == ["GET /v1/unlisted"] and "secret" not in answer.text

"""API keys on every route, CORS, body limits, HTTPS in production, request ids and
client addresses (SQLite only: none of this depends on the storage backend)."""

from __future__ import annotations

import io
import json
import re
import uuid

import falcon.testing
import pytest

from api_helpers import API_KEY, OTHER_KEY, audit_count, create_workflow, workflow_body
from flowker.api.openapi import OPERATIONS

SAMPLE_ID = str(uuid.uuid4())
PROTECTED = [op for op in OPERATIONS if not op.public]
PUBLIC = [op for op in OPERATIONS if op.public]


def concrete(path: str) -> str:
    path = path.replace("{path:path}", "some/hook").replace("{type_name}", "bearer")
    return re.sub(r"\{\w+\}", SAMPLE_ID, path)


@pytest.fixture
def sqlite_app(sqlite_factory):
    return sqlite_factory()


@pytest.mark.parametrize("op", PROTECTED, ids=lambda op: f"{op.method} {op.path}")
@pytest.mark.parametrize("key", [None, "wrong-key", API_KEY + "x", ""], ids=["missing", "wrong", "longer", "empty"])
def test_every_protected_route_refuses_a_missing_or_wrong_key(sqlite_app, op, key):
    headers = {} if key is None else {"X-API-Key": key}
    response = falcon.testing.TestClient(sqlite_app).simulate_request(
        op.method, concrete(op.path), headers=headers, json={} if op.body else None
    )
    assert response.status_code == 401
    assert response.json["code"] == "FLK-0401"
    assert response.json["title"] == "Unauthorized"
    assert API_KEY not in response.text


@pytest.mark.parametrize("op", PUBLIC, ids=lambda op: op.path)
def test_the_probes_need_no_key(sqlite_app, op):
    response = falcon.testing.TestClient(sqlite_app).simulate_get(op.path)
    assert response.status_code == 200, response.text


def test_only_the_seeds_three_probes_need_no_key():
    """DESIGN §5: /version and /openapi.json need a key; /readyz is folded into /health/ready."""
    assert sorted(op.path for op in PUBLIC) == ["/health", "/health/live", "/health/ready"]
    assert {"/version", "/openapi.json"} <= {op.path for op in PROTECTED}
    assert "/readyz" not in {op.path for op in OPERATIONS}


def test_every_configured_key_works_and_the_audit_actor_is_the_key_name(sqlite_app):
    for key, name in ((API_KEY, "ci-bot"), (OTHER_KEY, "rotation")):
        client = falcon.testing.TestClient(sqlite_app, headers={"X-API-Key": key})
        workflow_id = create_workflow(client, workflow_body(name=f"wf-{name}", path=f"/p-{name}"))
        entry = client.simulate_get("/v1/audit-events", params={"resourceId": workflow_id}).json["items"][0]
        assert entry["actor"]["type"] == "api_key"
        assert entry["actor"]["id"] == name
        assert key not in str(entry)


def test_unknown_routes_and_methods_answer_in_the_error_shape(sqlite_app):
    client = falcon.testing.TestClient(sqlite_app, headers={"X-API-Key": API_KEY})
    missing = client.simulate_get("/v1/nothing-here")
    assert missing.status_code == 404 and missing.json["code"] == "FLK-0404"
    wrong = client.simulate_delete("/v1/executions")
    assert wrong.status_code == 405 and wrong.json["code"] == "FLK-0405"
    assert "GET" in wrong.headers["Allow"]


def test_unexpected_errors_are_500_without_internals(sqlite_factory, monkeypatch):
    app = sqlite_factory()
    client = falcon.testing.TestClient(app, headers={"X-API-Key": API_KEY})

    def broken(*args, **kwargs):
        raise RuntimeError("secret internal detail /etc/passwd")

    monkeypatch.setattr(app.state.workflows, "query", broken)
    response = client.simulate_get("/v1/workflows")
    assert response.status_code == 500
    assert response.json["code"] == "FLK-9999"
    assert "secret internal detail" not in response.text and "Traceback" not in response.text


# -- CORS -----------------------------------------------------------------------------


def test_cors_preflight_from_an_allowed_origin(sqlite_factory):
    app = sqlite_factory(settings={"cors_allowed_origins": "https://ui.example.com"})
    response = falcon.testing.TestClient(app).simulate_options(
        "/v1/workflows",
        headers={
            "Origin": "https://ui.example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "X-API-Key, Idempotency-Key",
        },
    )
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "https://ui.example.com"
    allowed = response.headers["Access-Control-Allow-Headers"].lower()
    for header in ("x-api-key", "idempotency-key", "prefer", "x-webhook-token", "content-type"):
        assert header in allowed
    assert response.headers["Access-Control-Max-Age"] == "3600"
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_cors_preflight_from_another_origin_is_refused(sqlite_factory):
    app = sqlite_factory(settings={"cors_allowed_origins": "https://ui.example.com"})
    response = falcon.testing.TestClient(app).simulate_options(
        "/v1/workflows", headers={"Origin": "https://evil.example.net", "Access-Control-Request-Method": "POST"}
    )
    assert response.status_code == 403
    assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.parametrize("origins", ["https://ui.example.com", "*"])
def test_cors_answers_vary_on_origin_exactly_once(sqlite_factory, origins):
    app = sqlite_factory(settings={"cors_allowed_origins": origins})
    client = falcon.testing.TestClient(app, headers={"X-API-Key": API_KEY})
    preflight = {"Access-Control-Request-Method": "POST"}
    answers = {
        "refused preflight": client.simulate_options("/v1/workflows", headers={"Origin": "null", **preflight}),
        "allowed preflight": client.simulate_options(
            "/v1/workflows", headers={"Origin": "https://ui.example.com", **preflight}
        ),
        "refused request": client.simulate_get("/v1/workflows", headers={"Origin": "null"}),
        "allowed request": client.simulate_get("/v1/workflows", headers={"Origin": "https://ui.example.com"}),
    }
    for name, response in answers.items():
        assert response.headers.get("Vary") == "Origin", (name, response.headers.get("Vary"))
    assert answers["refused preflight"].status_code == 403


def test_a_wildcard_does_not_admit_the_null_origin(sqlite_factory):
    """``Origin: null`` (sandboxed frames, file:// pages) is any page that asks to be it."""
    client = falcon.testing.TestClient(
        sqlite_factory(settings={"cors_allowed_origins": "*"}), headers={"X-API-Key": API_KEY}
    )
    for origin in ("null", "https://anything.example"):
        preflight = client.simulate_options(
            "/v1/workflows", headers={"Origin": origin, "Access-Control-Request-Method": "GET"}
        )
        request = client.simulate_get("/v1/workflows", headers={"Origin": origin})
        allowed = origin != "null"
        assert (preflight.status_code == 204) is allowed, origin
        assert (preflight.headers.get("Access-Control-Allow-Origin") == origin) is allowed, origin
        assert (request.headers.get("Access-Control-Allow-Origin") == origin) is allowed, origin
    # Listed by name, it is admitted.
    named = falcon.testing.TestClient(sqlite_factory(settings={"cors_allowed_origins": "null"}))
    response = named.simulate_options(
        "/v1/workflows", headers={"Origin": "null", "Access-Control-Request-Method": "GET"}
    )
    assert response.status_code == 204 and response.headers["Access-Control-Allow-Origin"] == "null"


def test_cors_headers_on_actual_requests_only_for_allowed_origins(sqlite_factory):
    app = sqlite_factory(settings={"cors_allowed_origins": "https://ui.example.com"})
    client = falcon.testing.TestClient(app, headers={"X-API-Key": API_KEY})
    allowed = client.simulate_get("/v1/workflows", headers={"Origin": "https://ui.example.com"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://ui.example.com"
    assert "Access-Control-Allow-Credentials" not in allowed.headers
    other = client.simulate_get("/v1/workflows", headers={"Origin": "https://evil.example.net"})
    assert "Access-Control-Allow-Origin" not in other.headers
    # No origins configured: nobody is allowed.
    closed = falcon.testing.TestClient(sqlite_factory(), headers={"X-API-Key": API_KEY})
    assert (
        "Access-Control-Allow-Origin"
        not in closed.simulate_get("/v1/workflows", headers={"Origin": "https://ui.example.com"}).headers
    )


# -- body size --------------------------------------------------------------------------


class SpyStream(io.BytesIO):
    def __init__(self, data: bytes):
        super().__init__(data)
        self.bytes_read = 0

    def read(self, size=-1):
        chunk = super().read(size)
        self.bytes_read += len(chunk)
        return chunk


def _raw_request(app, path: str, stream, content_length: str | None):
    environ = falcon.testing.create_environ(
        path=path, method="POST", headers={"X-API-Key": API_KEY, "Content-Type": "application/json"}
    )
    environ["wsgi.input"] = stream
    environ.pop("CONTENT_LENGTH", None)
    if content_length is not None:
        environ["CONTENT_LENGTH"] = content_length
    else:  # as gunicorn passes a chunked body: no length, an input that ends by itself
        environ["HTTP_TRANSFER_ENCODING"] = "chunked"
        environ["wsgi.input_terminated"] = True
    result = {}

    def start_response(status, headers, exc_info=None):
        result["status"] = status
        result["headers"] = dict(headers)

    body = b"".join(app(environ, start_response))
    return result["status"], body


def test_oversized_body_is_refused_before_it_is_read(sqlite_factory):
    app = sqlite_factory(settings={"max_body_bytes": "1000"})
    stream = SpyStream(b"{" + b" " * 5000 + b"}")
    status, body = _raw_request(app, "/v1/workflows", stream, "5002")
    assert status.startswith("413")
    assert b"FLK-0506" in body
    assert stream.bytes_read == 0


def test_chunked_body_is_cut_off_at_the_limit(sqlite_factory):
    app = sqlite_factory(settings={"max_body_bytes": "1000"})
    stream = SpyStream(b'{"name": "' + b"x" * 50000 + b'"}')
    status, body = _raw_request(app, "/v1/workflows", stream, None)
    assert status.startswith("413")
    assert stream.bytes_read <= 1001 + 65536  # stopped right after the limit, not at the end


def test_webhook_bodies_over_the_limit_get_the_webhook_code(sqlite_factory):
    app = sqlite_factory(settings={"max_body_bytes": "100"})
    client = falcon.testing.TestClient(app, headers={"X-API-Key": API_KEY})
    response = client.simulate_post("/v1/webhooks/hook", body="x" * 500)
    assert response.status_code == 413 and response.json["code"] == "FLK-0363"


# -- HTTPS, request ids, client addresses -------------------------------------------------


def _production(sqlite_factory, **settings):
    from cryptography.fernet import Fernet

    return sqlite_factory(settings={"env": "production", "secret_key": Fernet.generate_key().decode(), **settings})


def test_production_refuses_plain_http_and_sends_hsts(sqlite_factory):
    app = _production(sqlite_factory)
    client = falcon.testing.TestClient(app, headers={"X-API-Key": API_KEY})
    plain = client.simulate_get("/v1/workflows")
    assert plain.status_code == 403 and "HTTPS is required" in plain.json["message"]
    assert plain.headers["Strict-Transport-Security"].startswith("max-age=")
    secure = client.simulate_get("/v1/workflows", protocol="https")
    assert secure.status_code == 200
    assert "Strict-Transport-Security" in secure.headers
    # Probes answer over plain HTTP (orchestrators probe pods directly).
    assert client.simulate_get("/health/live").status_code == 200
    # X-Forwarded-Proto is believed only from a trusted proxy.
    assert client.simulate_get("/v1/workflows", headers={"X-Forwarded-Proto": "https"}).status_code == 403


def test_production_believes_a_trusted_proxy(sqlite_factory):
    app = _production(sqlite_factory, trusted_proxies="127.0.0.0/8")
    client = falcon.testing.TestClient(app, headers={"X-API-Key": API_KEY})
    response = client.simulate_get("/v1/workflows", headers={"X-Forwarded-Proto": "https"}, remote_addr="127.0.0.1")
    assert response.status_code == 200


def test_request_ids_are_echoed_or_made(sqlite_app):
    client = falcon.testing.TestClient(sqlite_app)
    assert client.simulate_get("/health/live", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == "abc-123"
    made = client.simulate_get("/health/live", headers={"X-Request-ID": "bad id\u00e9"}).headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)


def _actor_ip(client, name: str, **request) -> str:
    workflow_id = client.simulate_post("/v1/workflows", json=workflow_body(name=name, path="/" + name), **request).json[
        "workflowId"
    ]
    return client.simulate_get("/v1/audit-events", params={"resourceId": workflow_id}).json["items"][0]["actor"][
        "ipAddress"
    ]


def test_x_forwarded_for_is_believed_only_from_trusted_proxies(sqlite_factory):
    untrusted = falcon.testing.TestClient(sqlite_factory(), headers={"X-API-Key": API_KEY})
    assert _actor_ip(untrusted, "a", headers={"X-Forwarded-For": "203.0.113.9"}, remote_addr="10.1.1.1") == "10.1.1.1"
    trusted = falcon.testing.TestClient(
        sqlite_factory(settings={"trusted_proxies": "10.0.0.0/8"}), headers={"X-API-Key": API_KEY}
    )
    # The client is the first address from the right that is not one of our proxies.
    ip = _actor_ip(
        trusted, "b", headers={"X-Forwarded-For": "198.51.100.7, 203.0.113.9, 10.2.2.2"}, remote_addr="10.1.1.1"
    )
    assert ip == "203.0.113.9"
    assert audit_count(trusted, eventType="WORKFLOW_CREATED") == 2


def test_unknown_query_parameters_are_refused_except_on_webhooks(sqlite_app):
    client = falcon.testing.TestClient(sqlite_app, headers={"X-API-Key": API_KEY})
    typo = client.simulate_get("/v1/workflows", params={"stauts": "draft"})
    assert typo.status_code == 400 and typo.json["code"] == "FLK-0304" and "stauts" in typo.json["message"]
    assert client.simulate_get("/v1/workflows", params={"status": "draft"}).status_code == 200
    assert client.simulate_get("/v1/executions/" + SAMPLE_ID, params={"x": "1"}).status_code == 400
    # A webhook's query string is input for the run: no route here, but not a 400.
    assert client.simulate_post("/v1/webhooks/hook", params={"anything": "1"}, json={}).status_code == 404


def test_chunked_bodies_within_the_limit_are_read(sqlite_factory):
    app = sqlite_factory()
    body = json.dumps(workflow_body()).encode()
    status, _ = _raw_request(app, "/v1/workflows", SpyStream(body), None)
    assert status.startswith("201")

"""Production mode: HTTPS only (TLS or a trusted proxy's X-Forwarded-Proto), HSTS on every
response, https:// executors only (at config time and at call time), and no start without
API keys and a secret key."""

from __future__ import annotations

import falcon.testing
import pytest

from flowker.errors import ConfigurationError
from flowker.local_server import LocalHTTPServer
from flowker.settings import Settings

from hardening_helpers import API_KEY, SECRET_KEY

SAMPLE_ID = "0b8f1c6e-8d2a-4a43-9c1e-6a1c2f3b4d5e"
PROTECTED = [
    ("GET", "/v1/workflows"),
    ("POST", "/v1/workflows"),
    ("GET", f"/v1/workflows/{SAMPLE_ID}"),
    ("GET", "/v1/executors"),
    ("POST", "/v1/executors"),
    ("PATCH", f"/v1/executors/{SAMPLE_ID}"),
    ("POST", f"/v1/executors/{SAMPLE_ID}/test"),
    ("GET", "/v1/executions"),
    ("POST", f"/v1/workflows/{SAMPLE_ID}/executions"),
    ("POST", "/v1/webhooks/pay"),
    ("GET", "/v1/audit-events"),
    ("GET", "/v1/catalog/auth-types"),
    ("GET", "/openapi.json"),
    ("GET", "/version"),
]
PROBES = ["/health", "/health/live", "/health/ready"]


def production(apps, **overrides):
    return apps(env="production", **overrides)


def executor(base_url: str, **authentication) -> dict:
    return {
        "name": "ledger",
        "baseUrl": base_url,
        "endpoints": [{"name": "book", "path": "/book", "method": "POST"}],
        "authentication": authentication or {"type": "bearer", "config": {"token": "prod-token-123456"}},
    }


@pytest.mark.parametrize("method,path", PROTECTED)
def test_plain_http_is_refused_with_a_clear_error_before_anything_else(sqlite_apps, method, path):
    client = sqlite_apps.client(production(sqlite_apps))
    response = client.simulate_request(method, path, json={"name": "x"})
    assert response.status_code == 403
    assert response.json["code"] == "FLK-0403" and response.json["title"] == "Forbidden"
    assert "HTTPS is required in production" in response.json["message"]
    assert "X-Forwarded-Proto" in response.json["message"]
    # Refused even without a key: plain HTTP is answered the same whoever asks.
    anonymous = sqlite_apps.client(production(sqlite_apps), key=None).simulate_request(method, path)
    assert anonymous.status_code == 403


def test_https_and_trusted_forwarded_https_are_accepted_and_untrusted_forwarding_ignored(sqlite_apps):
    app = production(sqlite_apps, trusted_proxies="10.0.0.0/8,::1/128")
    client = sqlite_apps.client(app)
    assert client.simulate_get("/v1/workflows", protocol="https").status_code == 200
    forwarded = {"X-Forwarded-Proto": "https"}
    assert client.simulate_get("/v1/workflows", headers=forwarded, remote_addr="10.9.8.7").status_code == 200
    assert client.simulate_get("/v1/workflows", headers=forwarded, remote_addr="::1").status_code == 200
    # From an address that is not a trusted proxy the header means nothing.
    for address in ("192.0.2.10", "11.0.0.1", "127.0.0.1"):
        assert client.simulate_get("/v1/workflows", headers=forwarded, remote_addr=address).status_code == 403
    # A trusted proxy saying http (or something else) does not make the request secure.
    for value in ("http", "https, http", "HTTPS-ish", ""):
        response = client.simulate_get("/v1/workflows", headers={"X-Forwarded-Proto": value}, remote_addr="10.0.0.1")
        assert response.status_code == 403, value


def test_probes_answer_over_plain_http_for_orchestrators(sqlite_apps):
    client = sqlite_apps.client(production(sqlite_apps), key=None)
    for path in PROBES:
        response = client.simulate_get(path)
        assert response.status_code in (200, 503), path
        assert response.headers["Strict-Transport-Security"].startswith("max-age=31536000")


def test_hsts_is_on_every_response(sqlite_apps, monkeypatch):
    app = production(sqlite_apps, max_body_bytes="100", cors_allowed_origins="https://ui.example.com")
    secure = sqlite_apps.client(app)
    anonymous = sqlite_apps.client(app, key=None)
    responses = {
        "200": secure.simulate_get("/v1/workflows", protocol="https"),
        "201": secure.simulate_post("/v1/executors", protocol="https", json=executor("https://ledger.example.com")),
        "204 preflight": anonymous.simulate_request(
            "OPTIONS",
            "/v1/workflows",
            protocol="https",
            headers={"Origin": "https://ui.example.com", "Access-Control-Request-Method": "POST"},
        ),
        "400": secure.simulate_get("/v1/workflows", params={"limit": "x"}, protocol="https"),
        "401": anonymous.simulate_get("/v1/workflows", protocol="https"),
        "403 plain http": secure.simulate_get("/v1/workflows"),
        "403 preflight from another origin": anonymous.simulate_request(
            "OPTIONS",
            "/v1/workflows",
            protocol="https",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        ),
        "404": secure.simulate_get("/v1/nothing-here", protocol="https"),
        "405": secure.simulate_request("PATCH", "/v1/workflows", protocol="https"),
        "413": secure.simulate_post("/v1/workflows", body="x" * 500, protocol="https"),
        "415": secure.simulate_post(
            "/v1/workflows", body="x", protocol="https", headers={"Content-Type": "text/plain"}
        ),
        "422": secure.simulate_post("/v1/workflows", json={"name": "x"}, protocol="https"),
        "probe": anonymous.simulate_get("/health/live"),
        "openapi": secure.simulate_get("/openapi.json", protocol="https"),
    }
    from flowker.api import catalog

    def explode(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(catalog.ActionTypes, "on_get", explode)  # before the app binds its responders
    broken = sqlite_apps.client(production(sqlite_apps))
    responses["500"] = broken.simulate_get("/v1/catalog/action-types", protocol="https")
    for name, response in responses.items():
        assert response.headers.get("Strict-Transport-Security") == "max-age=31536000; includeSubDomains", name
    assert responses["500"].status_code == 500 and responses["413"].status_code == 413


def test_development_sends_no_hsts(sqlite_apps):
    response = sqlite_apps.client().simulate_get("/v1/workflows")
    assert response.status_code == 200 and "Strict-Transport-Security" not in response.headers


def test_http_executors_are_refused_at_config_time(sqlite_apps):
    client = sqlite_apps.client(production(sqlite_apps))

    def post(body, method="POST", path="/v1/executors"):
        return client.simulate_request(method, path, json=body, protocol="https")

    for base_url in ("http://ledger.example.com", "http://ledger.example.com:8443/v1", "http://203.0.113.7"):
        response = post(executor(base_url))
        assert response.status_code == 422 and response.json["code"] == "FLK-0341", (base_url, response.text)
        assert "must use https in production" in response.json["message"]
    oidc = executor(
        "https://ledger.example.com",
        type="oidc_client_credentials",
        config={"issuer_url": "http://login.example.com", "client_id": "c", "client_secret": "s-123456"},
    )
    response = post(oidc)
    assert response.status_code == 422 and response.json["code"] == "FLK-0341", response.text
    assert "issuer_url" in response.json["message"]

    created = post(executor("https://ledger.example.com"))
    assert created.status_code == 201, created.text
    executor_id = created.json["id"]
    for method, body in (
        ("PUT", executor("http://ledger.example.com")),
        ("PATCH", {"baseUrl": "http://ledger.example.com"}),
    ):
        response = post(body, method, f"/v1/executors/{executor_id}")
        assert response.status_code == 422 and response.json["code"] == "FLK-0341", (method, response.text)
    stored = client.simulate_get(f"/v1/executors/{executor_id}", protocol="https").json
    assert stored["baseUrl"] == "https://ledger.example.com" and stored["version"] == 1


def test_http_executors_stored_earlier_are_refused_at_call_time(sqlite_apps):
    """An executor saved in development (http://) is refused by a production process on the
    same database: the step fails with FLK-0341 and no request reaches the service; the
    probe refuses it too."""
    requests_seen = []
    with LocalHTTPServer(lambda request: requests_seen.append(request) or (200, {}, {"ok": True})) as service:
        development = sqlite_apps.client()
        created = development.simulate_post("/v1/executors", json=executor(service.url))
        assert created.status_code == 201, created.text
        workflow = {
            "name": "book",
            "nodes": [
                {"id": "start", "type": "trigger", "data": {"triggerType": "manual"}},
                {"id": "book", "type": "executor", "data": {"executor": "ledger", "endpoint": "book"}},
            ],
            "edges": [{"source": "start", "target": "book"}],
        }
        workflow_id = development.simulate_post("/v1/workflows", json=workflow).json["workflowId"]
        assert development.simulate_post(f"/v1/workflows/{workflow_id}/activate").status_code == 200

        # Loopback is allow-listed here, so plain HTTP is the only reason left to refuse.
        client = sqlite_apps.client(production(sqlite_apps, allow_private_networks="127.0.0.0/8"))
        started = client.simulate_post(
            f"/v1/workflows/{workflow_id}/executions", json={"inputData": {}}, protocol="https"
        )
        assert started.status_code == 201 and started.json["status"] == "failed", started.text
        results = client.simulate_get(f"/v1/executions/{started.json['executionId']}/results", protocol="https").json
        step = next(s for s in results["stepResults"] if s["nodeId"] == "book")
        assert step["callDetails"]["errorCode"] == "FLK-0341"
        assert "https" in step["errorMessage"]
        probe = client.simulate_post(f"/v1/executors/{created.json['id']}/test", protocol="https")
        assert probe.status_code == 422 and probe.json["code"] == "FLK-0341", probe.text
        assert requests_seen == []


@pytest.mark.parametrize("missing,variable", [("api_keys", "FLOWKER_API_KEYS"), ("secret_key", "FLOWKER_SECRET_KEY")])
def test_production_refuses_to_start_without_api_keys_or_a_secret_key(tmp_path, missing, variable):
    environ = {
        "FLOWKER_ENV": "production",
        "FLOWKER_API_KEYS": f"ops:{API_KEY}",
        "FLOWKER_SECRET_KEY": SECRET_KEY,
        "FLOWKER_DATABASE_URL": f"sqlite:///{tmp_path}/prod.db",
    }
    del environ["FLOWKER_" + missing.upper()]
    with pytest.raises(ConfigurationError) as refused:
        Settings.load(environ)
    assert variable in str(refused.value) and refused.value.exit_code == 2
    # Empty values count as missing.
    with pytest.raises(ConfigurationError):
        Settings.load({**environ, "FLOWKER_" + missing.upper(): " , "})


def test_production_app_refuses_settings_without_keys(tmp_path, hardening_registry):
    from flowker.api.app import create_app
    from flowker.security.secrets import SecretBox

    settings = Settings.from_mapping(
        {
            "env": "production",
            "api_keys": f"ops:{API_KEY}",
            "secret_key": SECRET_KEY,
            "database_url": f"sqlite:///{tmp_path}/prod.db",
        }
    )
    with pytest.raises(ConfigurationError, match="FLOWKER_API_KEYS"):
        create_app(settings.replace(api_keys=()), registry=hardening_registry)
    with pytest.raises(ConfigurationError, match="FLOWKER_SECRET_KEY"):
        SecretBox.from_settings(settings.replace(secret_keys=()))
    assert not (tmp_path / "prod.db.secret-key").exists()


def test_production_never_reads_the_development_key_file(tmp_path):
    """Development may keep a generated Fernet key next to SQLite; production never reads it."""
    from flowker.security.secrets import SecretBox, read_or_create_key_file

    read_or_create_key_file(str(tmp_path / "prod.db.secret-key"))
    settings = Settings.from_mapping(
        {
            "env": "production",
            "api_keys": f"ops:{API_KEY}",
            "secret_key": SECRET_KEY,
            "database_url": f"sqlite:///{tmp_path}/prod.db",
        }
    )
    assert SecretBox.from_settings(settings).key_count == 1


def test_falcon_testclient_scheme_is_what_the_middleware_sees(sqlite_apps):
    """Guard for the tests above: falcon's TestClient really sends http unless told https."""
    app = production(sqlite_apps)
    plain = falcon.testing.simulate_get(app, "/v1/workflows", headers={"X-API-Key": API_KEY})
    assert plain.status_code == 403


def test_a_long_x_forwarded_for_cannot_push_the_real_client_out_of_the_audit(sqlite_apps):
    """The client may send any X-Forwarded-For; our proxy appends the address it saw. The
    nearest hops decide, however many the client made up in front of them."""
    client = sqlite_apps.client(production(sqlite_apps, trusted_proxies="10.0.0.0/8"))
    made_up = ", ".join(f"198.51.100.{i}" for i in range(1, 41))
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-For": f"{made_up}, 203.0.113.9, 10.0.0.7"}
    created = client.simulate_post(
        "/v1/executors", json=executor("https://ledger.example.com"), headers=headers, remote_addr="10.0.0.1"
    )
    assert created.status_code == 201, created.text
    entry = client.simulate_get(
        "/v1/audit-events",
        params={"resourceId": created.json["id"]},
        headers={"X-Forwarded-Proto": "https"},
        remote_addr="10.0.0.1",
    ).json["items"][0]
    assert entry["actor"]["ipAddress"] == "203.0.113.9"

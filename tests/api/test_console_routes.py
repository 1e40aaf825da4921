"""The web console's routes in the app (no browser: tests/console drives one): public
pages and files with their headers, ``GET /v1/me``, the console's OpenID settings."""

from __future__ import annotations

import falcon.testing
import pytest
from api_helpers import API_KEY

from flowker.console.pages import security_headers
from flowker.errors import ConfigurationError
from flowker.settings import Settings


def test_pages_and_files_need_no_key_but_the_data_does(sqlite_factory):
    client = falcon.testing.TestClient(sqlite_factory())
    for path in ("/ui", "/ui/", "/ui/executions/abc", "/ui/static/app.js"):
        answer = client.simulate_get(path)
        assert answer.status_code == 200, path
        assert "'unsafe" not in answer.headers["content-security-policy"]
        assert answer.headers["referrer-policy"] == "no-referrer"
    page = client.simulate_get("/ui/executions/abc").text
    assert 'data-page="execution"' in page and 'data-item-id="abc"' in page
    assert 'data-oidc-client-id=""' in page
    # Only GET is public; anything else is refused like any unknown responder.
    assert client.simulate_post("/ui").status_code == 405
    assert client.simulate_get("/ui/static/missing.js").status_code == 404
    assert client.simulate_get("/ui/nothing/here").status_code == 404
    assert client.simulate_get("/v1/me").status_code == 401


def test_me_names_the_caller_its_roles_permissions_and_workflows(sqlite_factory):
    client = falcon.testing.TestClient(sqlite_factory(), headers={"X-API-Key": API_KEY})
    assert client.simulate_get("/v1/me").json == {
        "name": "ci-bot",
        "kind": "api_key",
        "roles": ["admin"],
        "permissions": ["admin", "audit", "edit", "metrics", "read", "run", "webhook"],
        "workflows": None,
    }
    made = client.simulate_post("/v1/api-keys", json={"name": "scoped", "role": "operator", "workflows": ["b", "a"]})
    assert made.status_code == 201, made.text
    scoped = falcon.testing.TestClient(client.app, headers={"X-API-Key": made.json["key"]})
    assert scoped.simulate_get("/v1/me").json == {
        "name": "scoped",
        "kind": "api_key",
        "roles": ["operator"],
        "permissions": ["metrics", "read", "run", "webhook"],
        "workflows": ["a", "b"],
    }


def test_the_policy_admits_the_issuer_only_when_the_console_signs_in_with_it():
    issuer = "https://sso.example.com/realms/acme"
    keys_only = Settings(oidc_issuer=issuer, oidc_audience="x", oidc_role_map=(("a", "admin"),))
    assert "connect-src 'self';" in security_headers(keys_only)["Content-Security-Policy"]
    with_console = keys_only.replace(ui_oidc_client_id="flowker-console")
    policy = security_headers(with_console)["Content-Security-Policy"]
    assert "connect-src 'self' https://sso.example.com;" in policy


def test_the_console_client_id_needs_an_issuer():
    with pytest.raises(ConfigurationError, match="FLOWKER_UI_OIDC_CLIENT_ID needs FLOWKER_OIDC_ISSUER"):
        Settings.load({"FLOWKER_UI_OIDC_CLIENT_ID": "flowker-console"})

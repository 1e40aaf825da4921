"""OIDC failures end cleanly: discovery problems, unusable token answers, transport rules.

Misbehaving providers are LocalHTTPServers (plain HTTP, so these tests set
OAUTHLIB_INSECURE_TRANSPORT as a developer would for a local provider); the real
oidc-provider is used where a real answer is needed.
"""

from __future__ import annotations

import json
import socket
from urllib.parse import parse_qsl

import pytest

from flowker.auth.base import AuthContext
from flowker.auth.oidc import OIDCClientCredentialsAuth, OIDCUserAuth
from flowker.errors import AuthTypeError, FlowkerError, SSRFBlockedError
from flowker.local_server import LocalHTTPServer
from flowker.settings import Settings

SECRET = "s3cr3t-value-that-must-never-show-0123"


class FakeProvider:
    """A LocalHTTPServer playing an OpenID provider whose answers a test chooses."""

    def __init__(self, token_answer=None, discovery_answer=None):
        self.token_answer = token_answer or (
            200,
            {},
            {"access_token": "tok-" + "x" * 20, "token_type": "Bearer", "expires_in": 300},
        )
        self.discovery_answer = discovery_answer
        self.server = LocalHTTPServer(self.handle)

    def handle(self, request):
        if request.path == "/.well-known/openid-configuration":
            if self.discovery_answer is not None:
                return self.discovery_answer
            return 200, {}, {"issuer": self.server.url, "token_endpoint": self.server.url + "/token"}
        if request.path == "/token":
            return self.token_answer
        return 404, {}, b""

    def token_requests(self):
        return [r for r in self.server.requests if r.path == "/token"]

    def __enter__(self):
        self.server.start()
        return self

    def __exit__(self, *exc):
        self.server.stop()


@pytest.fixture
def insecure_transport(monkeypatch):
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")


@pytest.fixture
def plain_context(token_cache, redactor):
    return AuthContext(
        settings=Settings(), register_secret=redactor.add_secret, token_cache=token_cache, redactor=redactor
    )


def cc_config(issuer: str, **extra) -> dict:
    return {"issuer_url": issuer, "client_id": "flowker", "client_secret": SECRET, **extra}


def fail_call(auth, plain_session) -> AuthTypeError:
    with LocalHTTPServer() as executor:
        with pytest.raises(FlowkerError) as caught:
            plain_session.get(executor.url + "/", auth=auth, timeout=10)
        assert executor.requests == []
    error = caught.value
    assert SECRET not in error.message and SECRET not in json.dumps(error.to_dict())
    return error


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------- discovery


def test_discovery_answering_404_fails_cleanly(oidc_provider, auth_context, plain_session):
    auth = OIDCClientCredentialsAuth().build(cc_config(oidc_provider.issuer + "/wrong-tenant"), auth_context)
    error = fail_call(auth, plain_session)
    assert isinstance(error, AuthTypeError)
    assert "OIDC discovery for issuer" in error.message and "HTTP 404" in error.message
    assert ".well-known/openid-configuration" in error.message


def test_discovery_with_nothing_listening_fails_cleanly(auth_context, plain_session):
    auth = OIDCClientCredentialsAuth().build(cc_config(f"https://127.0.0.1:{free_port()}"), auth_context)
    error = fail_call(auth, plain_session)
    assert "could not reach" in error.message and "ConnectionError" in error.message


def test_discovery_with_an_untrusted_certificate_fails_cleanly(oidc_provider, token_cache, plain_session):
    from flowker.security.http import new_session
    from flowker.security.ssrf import AddressPolicy

    context = AuthContext(
        new_session=lambda: new_session(AddressPolicy.from_settings(Settings())), token_cache=token_cache
    )  # verifies against the system CAs only
    error = fail_call(OIDCClientCredentialsAuth().build(cc_config(oidc_provider.issuer), context), plain_session)
    assert "TLS certificate" in error.message


@pytest.mark.parametrize(
    "answer, expected",
    [
        ((200, {"Content-Type": "text/html"}, "<html>login</html>"), "did not answer JSON (text/html)"),
        ((200, {}, ["not", "an", "object"]), "is not a JSON object"),
        ((200, {}, {"issuer": "https://elsewhere.example", "token_endpoint": "https://x/token"}), "names issuer"),
        ((200, {}, {"issuer": "__SELF__"}), "has no token_endpoint"),
        ((503, {}, b""), "HTTP 503"),
    ],
)
def test_bad_discovery_documents_fail_cleanly(insecure_transport, plain_context, plain_session, answer, expected):
    with FakeProvider() as provider:
        status, headers, body = answer
        if body == {"issuer": "__SELF__"}:
            body = {"issuer": provider.server.url}
        provider.discovery_answer = (status, headers, body)
        auth = OIDCClientCredentialsAuth().build(cc_config(provider.server.url), plain_context)
        error = fail_call(auth, plain_session)
        assert provider.token_requests() == []
    assert isinstance(error, AuthTypeError) and expected in error.message


def test_a_failed_discovery_is_not_cached(insecure_transport, plain_context, plain_session):
    with FakeProvider(discovery_answer=(503, {}, b"")) as provider:
        auth = OIDCClientCredentialsAuth().build(cc_config(provider.server.url), plain_context)
        fail_call(auth, plain_session)
        provider.discovery_answer = None  # the provider is back
        with LocalHTTPServer() as executor:
            assert plain_session.get(executor.url + "/", auth=auth, timeout=10).status_code == 200
        assert len(provider.token_requests()) == 1


# --------------------------------------------------------------------------- token endpoint


@pytest.mark.parametrize(
    "answer, expected",
    [
        ((200, {"Content-Type": "text/html"}, "<html>maintenance</html>"), "with a body that is not JSON (text/html)"),
        ((200, {"Content-Type": "application/json"}, "{not json"), "with a body that is not JSON (application/json)"),
        ((502, {"Content-Type": "text/html"}, "<html>bad gateway</html>"), "answered HTTP 502 (text/html)"),
        ((200, {}, {"token_type": "Bearer"}), "answered without an access_token"),
        ((302, {"Location": "https://evil.example/token"}, b""), "token endpoint redirected"),
        (
            (400, {}, {"error": "invalid_scope", "error_description": f"scope x for {SECRET} not allowed"}),
            "HTTP 400 invalid_scope (scope x for **** not allowed)",
        ),
        ((401, {}, {"error": "invalid_client"}), "rejected the client credentials: invalid_client"),
        ((400, {}, {"error": "<script>alert(1)</script>"}), "HTTP 400 unknown_error"),
    ],
)
def test_unusable_token_answers_fail_cleanly(insecure_transport, plain_context, plain_session, answer, expected):
    with FakeProvider(token_answer=answer) as provider:
        auth = OIDCClientCredentialsAuth().build(cc_config(provider.server.url), plain_context)
        error = fail_call(auth, plain_session)
        assert len(provider.token_requests()) == 1
    assert isinstance(error, AuthTypeError) and error.code == "FLK-0520"
    assert expected in error.message, error.message
    assert "client 'flowker'" in error.message


def test_scope_audience_and_extra_params_are_sent_in_the_token_request(
    insecure_transport, plain_context, plain_session
):
    config = cc_config(
        "PLACEHOLDER",
        scopes=["read", "write"],
        audience="https://api.example.test",
        extra_params={"resource": "https://api.example.test", "tenant": "t-1"},
        token_endpoint_auth_method="client_secret_post",
    )
    with FakeProvider() as provider, LocalHTTPServer() as executor:
        config["issuer_url"] = provider.server.url
        plain_session.get(executor.url + "/", auth=OIDCClientCredentialsAuth().build(config, plain_context))
        form = dict(parse_qsl(provider.token_requests()[0].body.decode()))
    assert form == {
        "grant_type": "client_credentials",
        "client_id": "flowker",
        "client_secret": SECRET,
        "scope": "read write",
        "audience": "https://api.example.test",
        "resource": "https://api.example.test",
        "tenant": "t-1",
    }
    assert executor.requests[0].header("Authorization") == "Bearer tok-" + "x" * 20


def test_client_secret_basic_form_encodes_the_credentials(insecure_transport, plain_context, plain_session):
    import base64

    config = {"issuer_url": "", "client_id": "client:with space", "client_secret": "p@ss:w/rd+&="}
    with FakeProvider() as provider, LocalHTTPServer() as executor:
        config["issuer_url"] = provider.server.url
        plain_session.get(executor.url + "/", auth=OIDCClientCredentialsAuth().build(config, plain_context))
        request = provider.token_requests()[0]
    decoded = base64.b64decode(request.header("Authorization")[len("Basic ") :]).decode()
    assert decoded == "client%3Awith+space:p%40ss%3Aw%2Frd%2B%26%3D"  # RFC 6749 section 2.3.1
    assert "client_secret" not in request.body.decode()


# --------------------------------------------------------------------------- transport rules


def test_plain_http_issuers_are_refused_unless_allowed_for_local_development(monkeypatch, plain_context, plain_session):
    monkeypatch.delenv("OAUTHLIB_INSECURE_TRANSPORT", raising=False)
    with FakeProvider() as provider:
        error = fail_call(
            OIDCClientCredentialsAuth().build(cc_config(provider.server.url), plain_context), plain_session
        )
        assert "uses plain http://" in error.message and "OAUTHLIB_INSECURE_TRANSPORT=1" in error.message
        assert provider.server.requests == []


def test_production_refuses_plain_http_even_when_oauthlib_allows_it(insecure_transport, token_cache, plain_session):
    production = Settings(env="production", allow_private_networks=("127.0.0.1/32",))
    context = AuthContext(settings=production, new_session=None, token_cache=token_cache)
    with FakeProvider() as provider:
        error = fail_call(OIDCClientCredentialsAuth().build(cc_config(provider.server.url), context), plain_session)
        assert provider.server.requests == []
    assert "must use https:// in production" in error.message


def test_the_ssrf_guard_refuses_a_token_endpoint_on_a_refused_address(insecure_transport, token_cache, plain_session):
    from flowker.security.http import new_session
    from flowker.security.ssrf import AddressPolicy

    policy = AddressPolicy(allow_loopback=False)
    context = AuthContext(new_session=lambda: new_session(policy), token_cache=token_cache)
    with FakeProvider() as provider:
        error = fail_call(OIDCClientCredentialsAuth().build(cc_config(provider.server.url), context), plain_session)
        assert provider.server.requests == []  # refused before any connection
    assert isinstance(error, SSRFBlockedError)


def test_without_new_session_the_settings_give_the_ssrf_guarded_session(token_cache, plain_session):
    production = Settings(env="production")  # loopback is not allowed in production
    context = AuthContext(settings=production, token_cache=token_cache)
    with FakeProvider() as provider:
        issuer = provider.server.url.replace("http://", "https://")
        error = fail_call(OIDCClientCredentialsAuth().build(cc_config(issuer), context), plain_session)
        assert provider.server.requests == []
    assert isinstance(error, SSRFBlockedError)


def test_the_token_endpoint_from_discovery_must_be_https_too(oidc_provider, auth_context, plain_session, monkeypatch):
    monkeypatch.delenv("OAUTHLIB_INSECURE_TRANSPORT", raising=False)
    with FakeProvider() as provider:
        https_issuer = provider.server.url.replace("http://", "https://")
        provider.discovery_answer = (200, {}, {"issuer": https_issuer, "token_endpoint": provider.server.url})
        # discovery is plain HTTP here too, so the issuer itself is refused first
        error = fail_call(
            OIDCClientCredentialsAuth().build(cc_config(provider.server.url), auth_context), plain_session
        )
    assert "plain http://" in error.message


# --------------------------------------------------------------------------- config validation


@pytest.mark.parametrize("auth_type", [OIDCClientCredentialsAuth(), OIDCUserAuth()])
def test_config_problems_name_fields_and_never_show_values(auth_type):
    bad = {
        "issuer_url": "https://idp.example",
        "client_id": "c",
        "client_secret": [SECRET],
        "password": {"nested": SECRET},
        "token_endpoint_auth_method": "private_key_jwt",
        "extra_params": {"client_secret": SECRET, "ok": "fine"},
        "scopes": ["has space"],
        "mystery": SECRET,
    }
    problems = dict(auth_type.validate_config(bad))
    assert SECRET not in repr(problems)
    assert problems["client_secret"] == "must be of type string"
    assert problems["token_endpoint_auth_method"] == "must be one of 'client_secret_basic', 'client_secret_post'"
    assert problems["extra_params"] == "'client_secret' cannot be set in extra_params: Flowker sets it"
    assert "scopes[0]" in problems
    assert "'mystery'" in problems[""]
    if auth_type.name == "oidc_user":
        assert problems["password"] == "must be of type string"
    else:
        assert "'password'" in problems[""]  # oidc_client_credentials has no password field


def test_secret_references_stand_in_for_secrets_during_validation():
    config = {"issuer_url": "https://idp.example", "client_id": "c", "client_secret": {"$env": "IDP_SECRET"}}
    assert OIDCClientCredentialsAuth().validate_config(config) == []
    assert OIDCClientCredentialsAuth().secret_fields == ("client_secret",)
    assert set(OIDCUserAuth().secret_fields) == {"client_secret", "password"}

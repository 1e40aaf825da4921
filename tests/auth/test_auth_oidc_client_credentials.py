"""oidc_client_credentials against the real oidc-provider (HTTPS on 127.0.0.1).

The executor is a LocalHTTPServer that accepts a request only when the provider's
introspection endpoint says its bearer token is active. Token requests are counted by
the provider launcher (``/__stats``).
"""

from __future__ import annotations

import base64
import json
import logging
import threading

import pytest
import requests

from flowker.auth.oidc import OIDCClientCredentialsAuth
from flowker.errors import AuthTypeError
from flowker.local_server import LocalHTTPServer


def config_for(provider, client_id="cc-basic", **extra) -> dict:
    method = "client_secret_post" if client_id == "cc-post" else "client_secret_basic"
    return {
        "issuer_url": provider.issuer,
        "client_id": client_id,
        "client_secret": provider.secrets[client_id],
        "token_endpoint_auth_method": method,
        **extra,
    }


def metadata(provider) -> dict:
    return requests.get(provider.issuer + "/.well-known/openid-configuration", verify=provider.ca, timeout=5).json()


def introspect(provider, token: str) -> dict:
    return requests.post(
        metadata(provider)["introspection_endpoint"],
        data={"token": token},
        auth=("cc-basic", provider.secrets["cc-basic"]),
        verify=provider.ca,
        timeout=5,
    ).json()


def revoke(provider, token: str) -> None:
    requests.post(
        metadata(provider)["revocation_endpoint"],
        data={"token": token},
        auth=("cc-basic", provider.secrets["cc-basic"]),
        verify=provider.ca,
        timeout=5,
    ).raise_for_status()


def introspecting_executor(provider):
    """An executor that answers 200 only to an active token of this provider, else 401."""

    def handle(request):
        header = request.header("Authorization", "")
        if not header.startswith("Bearer "):
            return 401, {}, {"error": "no bearer token"}
        if not introspect(provider, header[len("Bearer ") :]).get("active"):
            return 401, {}, {"error": "inactive token"}
        return 200, {}, {"ok": True}

    return LocalHTTPServer(handle)


def bearer_of(recorded) -> str:
    return recorded.header("Authorization")[len("Bearer ") :]


@pytest.mark.parametrize("client_id", ["cc-basic", "cc-post"])
def test_each_token_endpoint_auth_method_gets_a_token_the_provider_accepts(
    oidc_provider, auth_context, plain_session, client_id
):
    auth = OIDCClientCredentialsAuth().build(config_for(oidc_provider, client_id, scopes=["read"]), auth_context)
    with introspecting_executor(oidc_provider) as executor:
        response = plain_session.get(executor.url + "/v1/check", auth=auth, timeout=10)
    assert response.status_code == 200
    token = bearer_of(executor.requests[0])
    details = introspect(oidc_provider, token)
    assert details["active"] is True and details["client_id"] == client_id and details["scope"] == "read"
    stats = oidc_provider.stats()
    assert stats["token"] == 1
    # client_secret_basic sends a Basic header naming the client; client_secret_post puts it in the body.
    assert stats["byClient"] == ({"cc-basic": 1} if client_id == "cc-basic" else {"body": 1})


def test_the_token_is_reused_across_calls_and_across_builds(oidc_provider, auth_context, plain_session):
    auth_type = OIDCClientCredentialsAuth()
    config = config_for(oidc_provider)
    with LocalHTTPServer() as executor:
        first = auth_type.build(config, auth_context)
        for _ in range(5):
            assert plain_session.get(executor.url + "/a", auth=first, timeout=10).status_code == 200
        second = auth_type.build(config, auth_context)  # e.g. the next execution
        assert plain_session.get(executor.url + "/b", auth=second, timeout=10).status_code == 200
    assert oidc_provider.token_requests() == 1
    assert len({bearer_of(r) for r in executor.requests}) == 1


def test_different_scopes_or_audience_get_their_own_tokens(oidc_provider, auth_context, plain_session):
    auth_type = OIDCClientCredentialsAuth()
    with LocalHTTPServer() as executor:
        for config in (
            config_for(oidc_provider, scopes=["read"]),
            config_for(oidc_provider, scopes=["write"]),
            config_for(oidc_provider, scopes=["read"], audience="https://api.example.test"),
            config_for(oidc_provider, scopes=["read"]),
        ):
            plain_session.get(executor.url + "/", auth=auth_type.build(config, auth_context), timeout=10)
    assert oidc_provider.token_requests() == 3


def test_a_resource_indicator_in_extra_params_gets_a_jwt_for_that_audience(oidc_provider, auth_context, plain_session):
    config = config_for(oidc_provider, scopes=["read"], extra_params={"resource": "https://api.example.test"})
    auth = OIDCClientCredentialsAuth().build(config, auth_context)
    with LocalHTTPServer() as executor:
        plain_session.get(executor.url + "/", auth=auth, timeout=10)
    token = bearer_of(executor.requests[0])
    payload = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert payload["aud"] == "https://api.example.test" and payload["client_id"] == "cc-basic"


def test_a_token_is_refreshed_before_it_expires(oidc_provider_short, auth_context, plain_session):
    """Tokens live 2 s and are renewed in their last quarter: after 1.6 s a new one is fetched."""
    import time

    auth = OIDCClientCredentialsAuth().build(config_for(oidc_provider_short), auth_context)
    with introspecting_executor(oidc_provider_short) as executor:
        assert plain_session.get(executor.url + "/1", auth=auth, timeout=10).status_code == 200
        assert plain_session.get(executor.url + "/2", auth=auth, timeout=10).status_code == 200
        assert oidc_provider_short.token_requests() == 1
        time.sleep(1.6)
        # The old token is still valid for ~0.4 s, but it is replaced before it can expire mid-call.
        assert plain_session.get(executor.url + "/3", auth=auth, timeout=10).status_code == 200
    assert oidc_provider_short.token_requests() == 2
    tokens = [bearer_of(r) for r in executor.requests]
    assert tokens[0] == tokens[1] != tokens[2]


def test_eight_threads_needing_a_token_at_once_cause_one_token_request(oidc_provider, auth_context, plain_session):
    auth = OIDCClientCredentialsAuth().build(config_for(oidc_provider), auth_context)
    barrier = threading.Barrier(8)
    statuses, errors = [], []

    def call():
        session = requests.Session()
        session.trust_env = False
        try:
            barrier.wait(timeout=10)
            statuses.append(session.get(executor.url + "/parallel", auth=auth, timeout=10).status_code)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            session.close()

    with LocalHTTPServer() as executor:
        threads = [threading.Thread(target=call) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert not errors and statuses == [200] * 8
    assert oidc_provider.token_requests() == 1
    assert len({bearer_of(r) for r in executor.requests}) == 1


def test_a_revoked_token_gets_one_refetch_and_the_call_succeeds(oidc_provider, auth_context, plain_session):
    auth = OIDCClientCredentialsAuth().build(config_for(oidc_provider), auth_context)
    with introspecting_executor(oidc_provider) as executor:
        assert plain_session.get(executor.url + "/1", auth=auth, timeout=10).status_code == 200
        revoke(oidc_provider, bearer_of(executor.requests[0]))
        response = plain_session.get(executor.url + "/2", auth=auth, timeout=10)
    assert response.status_code == 200
    assert [r.status_code for r in response.history] == [401]
    assert oidc_provider.token_requests() == 2
    first, refused, retried = (bearer_of(r) for r in executor.requests)
    assert first == refused != retried


def test_an_executor_that_always_answers_401_gets_exactly_one_refetch_then_the_401(
    oidc_provider, auth_context, session_factory
):
    auth = OIDCClientCredentialsAuth().build(config_for(oidc_provider), auth_context)
    assert auth.handles_401 is True
    # The executor is called through the runner's kind of session: SSRF-guarded and pinned.
    with LocalHTTPServer(lambda request: (401, {}, {"error": "nope"})) as executor, session_factory() as session:
        response = session.post(executor.url + "/always-401", json={"a": 1}, auth=auth, timeout=10)
    assert response.status_code == 401
    assert len(response.history) == 1 and response.history[0].status_code == 401
    assert len(executor.requests) == 2  # the call and its one retry, no loop
    assert executor.requests[0].body == executor.requests[1].body == b'{"a": 1}'
    assert oidc_provider.token_requests() == 2  # the first token and exactly one refetch
    assert bearer_of(executor.requests[0]) != bearer_of(executor.requests[1])


def test_a_burst_of_401s_with_the_same_stale_token_costs_one_refetch(oidc_provider, auth_context):
    auth = OIDCClientCredentialsAuth().build(config_for(oidc_provider), auth_context)
    refused: set[str] = set()
    lock = threading.Lock()

    def handler(request):
        token = bearer_of(request)
        with lock:
            if not refused:
                refused.add(token)  # the first token ever seen is "revoked"
            return (401, {}, {}) if token in refused else (200, {}, {})

    with LocalHTTPServer(handler) as executor:
        session = requests.Session()
        session.trust_env = False
        session.get(executor.url + "/warm", auth=auth, timeout=10)  # caches the soon-refused token
        barrier = threading.Barrier(8)
        statuses = []

        def call():
            own = requests.Session()
            own.trust_env = False
            barrier.wait(timeout=10)
            statuses.append(own.get(executor.url + "/burst", auth=auth, timeout=10).status_code)
            own.close()

        threads = [threading.Thread(target=call) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        session.close()
    assert statuses == [200] * 8
    assert oidc_provider.token_requests() == 2


def test_a_wrong_client_secret_fails_clearly_without_the_secret(oidc_provider, auth_context, plain_session, caplog):
    caplog.set_level(logging.DEBUG)
    for client_id in ("cc-basic", "cc-post"):
        wrong = "wrong-secret-" + oidc_provider.secrets[client_id][::-1]
        config = {**config_for(oidc_provider, client_id), "client_secret": wrong}
        auth = OIDCClientCredentialsAuth().build(config, auth_context)
        with LocalHTTPServer() as executor, pytest.raises(AuthTypeError) as caught:
            plain_session.get(executor.url + "/", auth=auth, timeout=10)
        message = caught.value.message
        assert "rejected the client credentials" in message and "invalid_client" in message
        assert repr(client_id) in message and oidc_provider.issuer in message
        assert wrong not in message and wrong not in json.dumps(caught.value.to_dict())
        assert caught.value.code == "FLK-0520"
        assert executor.requests == []  # nothing was sent to the executor
        assert wrong not in caplog.text
    assert any(record.name.startswith("requests_oauthlib") for record in caplog.records)


def test_debug_logs_of_requests_oauthlib_never_show_secrets_or_tokens(
    oidc_provider, user_provider, auth_context, plain_session, caplog
):
    from flowker.auth.oidc import OIDCUserAuth

    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="requests_oauthlib")
    caplog.set_level(logging.DEBUG, logger="oauthlib")
    with LocalHTTPServer() as executor:
        for config in (config_for(oidc_provider, "cc-basic"), config_for(oidc_provider, "cc-post")):
            plain_session.get(executor.url + "/", auth=OIDCClientCredentialsAuth().build(config, auth_context))
        user_config = {
            "issuer_url": user_provider.issuer,
            "client_id": "flowker-web",
            "client_secret": user_provider.secrets["flowker-web"],
            "username": "alice",
            "password": user_provider.secrets["alice"],
            "token_endpoint_auth_method": "client_secret_post",
        }
        plain_session.get(executor.url + "/", auth=OIDCUserAuth().build(user_config, auth_context))
    oauth_lines = [r.getMessage() for r in caplog.records if r.name.startswith("requests_oauthlib")]
    # requests-oauthlib really logged the token request bodies and responses...
    assert any("Request body was" in line for line in oauth_lines)
    assert any("Obtained token" in line for line in oauth_lines)
    # ...and none of the secrets or tokens in them survived.
    tokens = [bearer_of(r) for r in executor.requests]
    secret_values = [*oidc_provider.secrets.values(), *user_provider.secrets.values(), *tokens]
    for value in secret_values:
        assert value not in caplog.text
        assert all(value not in line for line in oauth_lines)
    assert any("client_secret=****" in line for line in oauth_lines)
    assert any("'access_token': '****'" in line for line in oauth_lines)


def test_obtained_tokens_are_registered_with_the_redactor(oidc_provider, auth_context, redactor, plain_session):
    auth = OIDCClientCredentialsAuth().build(config_for(oidc_provider), auth_context)
    with LocalHTTPServer() as executor:
        plain_session.get(executor.url + "/", auth=auth, timeout=10)
    token = bearer_of(executor.requests[0])
    assert redactor.scrub_text(f"upstream said {token}") == "upstream said ****"
    assert token not in repr(auth) and oidc_provider.secrets["cc-basic"] not in repr(auth)


def test_discovery_is_fetched_once_per_issuer_and_token_calls_use_the_context_session(
    oidc_provider, session_factory, token_cache, redactor, plain_session
):
    from flowker.auth.base import AuthContext

    seen: list[str] = []

    def recording_session():
        session = session_factory()
        session.hooks["response"].append(lambda response, *args, **kwargs: seen.append(response.url))
        return session

    context = AuthContext(new_session=recording_session, token_cache=token_cache, redactor=redactor)
    with LocalHTTPServer() as executor:
        for scopes in (["read"], ["write"], ["read", "write"]):
            auth = OIDCClientCredentialsAuth().build(config_for(oidc_provider, scopes=scopes), context)
            plain_session.get(executor.url + "/", auth=auth, timeout=10)
    discovery = [url for url in seen if url.endswith("/.well-known/openid-configuration")]
    token = [url for url in seen if url.endswith("/token")]
    assert len(discovery) == 1 and len(token) == 3

"""oidc_user (password grant, refresh-token grant) against oauth2-mock-server over HTTPS.

The launcher makes the mock strict: the client secret and the user's password are
checked, refresh tokens work once. The executor verifies the access token's RS256
signature against the provider's JWKS and its expiry.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time

import pytest
import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from flowker.auth.oidc import OIDCUserAuth
from flowker.errors import AuthTypeError
from flowker.local_server import LocalHTTPServer


def b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def user_config(provider, **extra) -> dict:
    return {
        "issuer_url": provider.issuer,
        "client_id": "flowker-web",
        "client_secret": provider.secrets["flowker-web"],
        "username": "alice",
        "password": provider.secrets["alice"],
        **extra,
    }


def jwt_checking_executor(provider):
    """200 for a token signed by the provider's key, not expired, for alice; else 401."""
    jwks = requests.get(provider.issuer + "/jwks", verify=provider.ca, timeout=5).json()["keys"]

    def valid(token: str) -> bool:
        try:
            header_b64, payload_b64, signature_b64 = token.split(".")
            header, payload = json.loads(b64url(header_b64)), json.loads(b64url(payload_b64))
            key = next(k for k in jwks if k["kid"] == header["kid"])
            public = rsa.RSAPublicNumbers(
                int.from_bytes(b64url(key["e"]), "big"), int.from_bytes(b64url(key["n"]), "big")
            ).public_key()
            public.verify(
                b64url(signature_b64), f"{header_b64}.{payload_b64}".encode(), padding.PKCS1v15(), hashes.SHA256()
            )
        except Exception:  # noqa: BLE001 - any defect means "not valid"
            return False
        return payload.get("sub") == "alice" and payload["exp"] > time.time() and payload["iss"] == provider.issuer

    def handle(request):
        header = request.header("Authorization", "")
        ok = header.startswith("Bearer ") and valid(header[len("Bearer ") :])
        return (200, {}, {"ok": True}) if ok else (401, {}, {"error": "invalid_token"})

    return LocalHTTPServer(handle)


def bearer_of(recorded) -> str:
    return recorded.header("Authorization")[len("Bearer ") :]


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_password_grant_gets_a_valid_token_for_the_user(user_provider, auth_context, plain_session, method):
    auth = OIDCUserAuth().build(user_config(user_provider, token_endpoint_auth_method=method), auth_context)
    with jwt_checking_executor(user_provider) as executor:
        response = plain_session.get(executor.url + "/me", auth=auth, timeout=10)
    assert response.status_code == 200
    assert user_provider.stats()["byGrant"] == {"password": 1}
    claims = json.loads(b64url(bearer_of(executor.requests[0]).split(".")[1]))
    assert claims["scope"] == "openid"  # the default scopes


def test_a_public_client_without_secret_works(user_provider, auth_context, plain_session):
    config = {**user_config(user_provider, client_id="public-cli")}
    del config["client_secret"]
    with jwt_checking_executor(user_provider) as executor:
        assert plain_session.get(executor.url + "/", auth=OIDCUserAuth().build(config, auth_context)).status_code == 200


def test_the_user_token_is_reused(user_provider, auth_context, plain_session):
    auth = OIDCUserAuth().build(user_config(user_provider, scopes=["openid", "profile"]), auth_context)
    with jwt_checking_executor(user_provider) as executor:
        for _ in range(4):
            assert plain_session.get(executor.url + "/", auth=auth, timeout=10).status_code == 200
    assert user_provider.token_requests() == 1


def test_the_refresh_token_renews_the_access_token_before_it_expires(user_provider_short, auth_context, plain_session):
    auth = OIDCUserAuth().build(user_config(user_provider_short), auth_context)
    with jwt_checking_executor(user_provider_short) as executor:
        assert plain_session.get(executor.url + "/1", auth=auth, timeout=10).status_code == 200
        time.sleep(1.6)  # 2-second tokens are renewed in their last quarter
        assert plain_session.get(executor.url + "/2", auth=auth, timeout=10).status_code == 200
        time.sleep(1.6)  # the rotated refresh token works for the next renewal too
        assert plain_session.get(executor.url + "/3", auth=auth, timeout=10).status_code == 200
    assert user_provider_short.stats()["byGrant"] == {"password": 1, "refresh_token": 2}
    assert len({bearer_of(r) for r in executor.requests}) == 3


def test_a_rejected_refresh_token_falls_back_to_the_password_grant(user_provider_short, auth_context, plain_session):
    auth = OIDCUserAuth().build(user_config(user_provider_short), auth_context)
    with jwt_checking_executor(user_provider_short) as executor:
        assert plain_session.get(executor.url + "/1", auth=auth, timeout=10).status_code == 200
        requests.post(
            user_provider_short.issuer + "/__forget_refresh_tokens", verify=user_provider_short.ca, timeout=5
        ).raise_for_status()
        time.sleep(1.6)
        assert plain_session.get(executor.url + "/2", auth=auth, timeout=10).status_code == 200
    assert user_provider_short.stats()["byGrant"] == {"password": 2, "refresh_token": 1}


def test_a_401_uses_the_refresh_token_for_its_one_refetch(user_provider, auth_context, plain_session):
    auth = OIDCUserAuth().build(user_config(user_provider), auth_context)
    with LocalHTTPServer(lambda request: (401, {}, {})) as executor:
        response = plain_session.get(executor.url + "/", auth=auth, timeout=10)
    assert response.status_code == 401 and len(executor.requests) == 2
    assert user_provider.stats()["byGrant"] == {"password": 1, "refresh_token": 1}


def test_eight_threads_cause_one_password_grant(user_provider, auth_context):
    auth = OIDCUserAuth().build(user_config(user_provider), auth_context)
    barrier = threading.Barrier(8)
    statuses = []

    def call():
        with requests.Session() as session:
            session.trust_env = False
            barrier.wait(timeout=10)
            statuses.append(session.get(executor.url + "/", auth=auth, timeout=10).status_code)

    with jwt_checking_executor(user_provider) as executor:
        threads = [threading.Thread(target=call) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert statuses == [200] * 8
    assert user_provider.token_requests() == 1


def test_a_wrong_password_fails_clearly_without_the_password(user_provider, auth_context, plain_session, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "not-" + user_provider.secrets["alice"]
    auth = OIDCUserAuth().build(user_config(user_provider, password=wrong), auth_context)
    with LocalHTTPServer() as executor, pytest.raises(AuthTypeError) as caught:
        plain_session.get(executor.url + "/", auth=auth, timeout=10)
    message = caught.value.message
    assert "rejected the username or password" in message and "user 'alice'" in message
    assert "invalid_grant" in message
    assert wrong not in message and wrong not in caplog.text and executor.requests == []


def test_a_wrong_client_secret_fails_clearly_without_the_secret(user_provider, auth_context, plain_session):
    wrong = "wrong-" + user_provider.secrets["flowker-web"]
    auth = OIDCUserAuth().build(user_config(user_provider, client_secret=wrong), auth_context)
    with LocalHTTPServer() as executor, pytest.raises(AuthTypeError) as caught:
        plain_session.get(executor.url + "/", auth=auth, timeout=10)
    assert "rejected the client credentials: invalid_client" in caught.value.message
    assert wrong not in caught.value.message and user_provider.secrets["alice"] not in caught.value.message


def test_different_users_get_different_tokens(user_provider, auth_context, plain_session):
    auth_type = OIDCUserAuth()
    with LocalHTTPServer() as executor:
        plain_session.get(executor.url + "/", auth=auth_type.build(user_config(user_provider), auth_context))
        with pytest.raises(AuthTypeError):  # bob is unknown to the provider: his own token request
            plain_session.get(
                executor.url + "/", auth=auth_type.build(user_config(user_provider, username="bob"), auth_context)
            )
    assert user_provider.token_requests() == 2

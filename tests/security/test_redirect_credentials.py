"""A redirect that leaves the origin loses everything the auth added, whatever the type.

The hardened session records which headers and query parameters the request's auth set
(by comparing the request before and after the auth ran) and strips exactly those, plus
Authorization/Cookie/Proxy-Authorization, on a hop whose scheme, host or port differs
from the first request's. Real local servers on 127.0.0.1: another port is another origin.
"""

from __future__ import annotations

import pytest
import requests
from requests.auth import AuthBase

from flowker.auth.builtin import ApiKeyAuth, BasicAuth, BearerAuth
from flowker.security.http import harden_session, send_request

from security_helpers import PUBLIC


class AcmeToken(AuthBase):
    """The plugin guide's ``acme`` example: one custom header."""

    def __call__(self, request):
        request.headers["X-Acme-Token"] = "acme-secret-token"
        return request


class Signer(AuthBase):
    """An hmac-like signer: three custom headers, one of them overriding a caller's header."""

    def __call__(self, request):
        request.headers["X-Key-Id"] = "key-1"
        request.headers["X-Timestamp"] = "1700000000"
        request.headers["X-Signature"] = "deadbeef-signature"
        return request


class QueryAndDeclared(AuthBase):
    """Adds a query parameter, and declares a header it may set to a caller's value."""

    credential_headers = ("X-Session",)

    def __call__(self, request):
        request.prepare_url(request.url, {"sig": "query-signature"})
        return request


AUTHS = {
    "acme": (AcmeToken, ["X-Acme-Token"], []),
    "hmac-like": (Signer, ["X-Key-Id", "X-Timestamp", "X-Signature"], []),
    "bearer": (lambda: BearerAuth().build({"token": "t0k3n"}, None), ["Authorization"], []),
    "basic": (lambda: BasicAuth().build({"username": "u", "password": "p"}, None), ["Authorization"], []),
    "api_key header": (lambda: ApiKeyAuth().build({"key": "k", "header_name": "X-Partner"}, None), ["X-Partner"], []),
    "api_key query": (
        lambda: ApiKeyAuth().build({"key": "qk", "location": "query", "query_param_name": "auth"}, None),
        [],
        ["auth"],
    ),
    "query+declared": (QueryAndDeclared, ["X-Session"], ["sig"]),
}


def _servers(local_server):
    origin, other = local_server("127.0.0.1"), local_server("127.0.0.1")

    def away(handler):  # a naive service: the query string goes along to the other origin
        query = handler.path.partition("?")[2]
        handler.reply(307, headers={"Location": other.url("/landed") + (f"?{query}" if query else "")})

    origin.route("/away", away)
    origin.route("/same", lambda h: h.reply(307, headers={"Location": "/landed?" + h.path.partition("?")[2]}))
    return origin, other


SENDERS = {
    "send_request": lambda s, url, auth: send_request(
        s,
        "POST",
        url,
        params={"page": "2"},
        json={"a": 1},
        headers={"X-Session": "s-1", "X-Trace": "keep"},
        auth=auth,
        timeout=5,
    ),
    "session.request": lambda s, url, auth: s.post(
        url, params={"page": "2"}, json={"a": 1}, headers={"X-Session": "s-1", "X-Trace": "keep"}, auth=auth, timeout=5
    ),
}


@pytest.mark.parametrize("sender", sorted(SENDERS))
@pytest.mark.parametrize("auth_name", sorted(AUTHS))
def test_off_origin_hop_loses_what_the_auth_added(auth_name, sender, local_server, session):
    make_auth, headers, params = AUTHS[auth_name]
    origin, other = _servers(local_server)
    response = SENDERS[sender](session(), origin.url("/away"), make_auth())
    assert response.status_code == 200 and [r.status_code for r in response.history] == [307]

    first, landed = origin.requests[-1], other.requests[-1]
    for name in headers:
        assert name in first["headers"], (name, first)  # the auth really ran on the first hop
        assert name not in landed["headers"], (auth_name, name, landed["headers"])
    for name in params:
        assert f"{name}=" in first["path"]
        assert f"{name}=" not in landed["path"], (auth_name, landed["path"])
    # What the caller sent (and the auth did not add) still goes along.
    assert "page=2" in landed["path"] and landed["headers"]["X-Trace"] == "keep"
    assert landed["body"] == b'{"a": 1}'
    if "X-Session" not in headers:
        assert landed["headers"]["X-Session"] == "s-1"


@pytest.mark.parametrize("auth_name", sorted(AUTHS))
def test_same_origin_hop_keeps_the_credentials(auth_name, local_server, session):
    make_auth, headers, params = AUTHS[auth_name]
    origin, _other = _servers(local_server)
    response = send_request(
        session(), "GET", origin.url("/same"), headers={"X-Session": "s-1"}, auth=make_auth(), timeout=5
    )
    assert response.status_code == 200 and len(response.history) == 1
    landed = origin.requests[-1]
    assert landed["path"].startswith("/landed")
    for name in headers:
        assert name in landed["headers"], (auth_name, name)
    for name in params:
        assert f"{name}=" in landed["path"]


def test_a_hop_to_another_port_or_scheme_of_the_same_host_is_another_origin(local_server, session):
    origin = local_server("127.0.0.1")
    other = local_server("127.0.0.1")
    origin.route("/port", lambda h: h.reply(302, headers={"Location": other.url("/p", host="127.0.0.1")}))
    send_request(session(), "GET", origin.url("/port"), auth=AcmeToken(), timeout=5)
    assert "X-Acme-Token" not in other.requests[-1]["headers"]


def test_later_hops_back_to_the_origin_do_not_bring_them_back(local_server, session):
    origin, other = local_server("127.0.0.1"), local_server("127.0.0.1")
    origin.route("/away", lambda h: h.reply(302, headers={"Location": other.url("/bounce")}))
    other.route("/bounce", lambda h: h.reply(302, headers={"Location": origin.url("/back")}))
    send_request(session(), "GET", origin.url("/away"), auth=Signer(), timeout=5)
    back = origin.requests[-1]
    assert back["path"] == "/back" and "X-Signature" not in back["headers"]


def test_harden_session_strips_them_on_a_plain_session_too(local_server):
    origin, other = _servers(local_server)
    plain = harden_session(requests.Session(), PUBLIC)
    try:
        plain.get(origin.url("/away"), auth=Signer(), timeout=5)
    finally:
        plain.close()
    assert "X-Signature" in origin.requests[-1]["headers"]
    assert not {"X-Signature", "X-Key-Id", "X-Timestamp"} & set(other.requests[-1]["headers"])

"""send_request (the runner's shortcut past Session.request) against real local servers:
the same request on the wire as session.request, auth hooks, cookies, redirects, and the
memo of literal-address checks that never covers a host name."""

from __future__ import annotations

import pytest
import requests

from flowker.auth.builtin import ApiKeyAuth, BasicAuth, BearerAuth
from flowker.auth.refreshing import RefreshingBearerAuth
from flowker.errors import SSRFBlockedError
from flowker.security.http import send_request
from flowker.security.ssrf import AddressPolicy


class Tokens:
    def __init__(self):
        self.issued = 0
        self.refused_tokens = []

    def access_token(self):
        self.issued += 1
        return f"token-{self.issued}"

    def refused(self, token):
        self.refused_tokens.append(token)


AUTHS = {
    "none": lambda: None,
    "bearer": lambda: BearerAuth().build({"token": "t0k3n"}, None),
    "basic": lambda: BasicAuth().build({"username": "u", "password": "p"}, None),
    "header": lambda: ApiKeyAuth().build({"key": "k", "header_name": "X-Key", "prefix": "p "}, None),
    "query": lambda: ApiKeyAuth().build({"key": "k&=", "location": "query", "query_param_name": "ak"}, None),
}


@pytest.mark.parametrize("auth", sorted(AUTHS))
@pytest.mark.parametrize(
    "method,params,headers,body",
    [
        (
            "POST",
            {"q": "1", "tags": ["a", "b"]},
            {"X-A": "1", "user-agent": "mine", "Accept": "text/plain"},
            {"a": [1, 2], "b": "\u00e9"},
        ),
        ("GET", None, {}, None),
        ("DELETE", {"y": "2"}, {"Content-Type": "text/x", "Accept-Encoding": "identity"}, {"x": 1}),
        ("PUT", None, None, False),
    ],
)
def test_the_executor_receives_what_session_request_sends(auth, method, params, headers, body, local_server, session):
    server = local_server("127.0.0.1")
    url = server.url("/p/a%2Fb%20c?fixed=1")
    kwargs = {"json": body} if body is not None else {}
    s = session()
    old = s.request(method, url, params=params, headers=headers, auth=AUTHS[auth](), timeout=5, stream=True, **kwargs)
    new = send_request(s, method, url, params=params, headers=headers, json=body, auth=AUTHS[auth](), timeout=5)
    assert (
        (new.status_code, new.content, new.url)
        == (old.status_code, old.content, old.url)
        == (200, b'{"ok": true}', old.request.url)
    )
    expected, received = server.requests
    assert received == expected
    assert list(new.request.headers.items()) == list(old.request.headers.items())  # same order too


def test_auth_hooks_run_and_a_401_is_retried_once_with_a_new_token(local_server, session):
    server = local_server("127.0.0.1")
    answers = iter([401, 200])
    server.route("/op", lambda h: h.reply(next(answers), b"{}"))
    tokens = Tokens()
    response = send_request(
        session(), "POST", server.url("/op"), json={"a": 1}, auth=RefreshingBearerAuth(tokens), timeout=5
    )
    assert response.status_code == 200
    assert [r.status_code for r in response.history] == [401]
    assert [r["headers"]["Authorization"] for r in server.requests] == ["Bearer token-1", "Bearer token-2"]
    assert [r["body"] for r in server.requests] == [b'{"a": 1}', b'{"a": 1}']
    assert tokens.refused_tokens == ["token-1"]


def test_cookies_the_executor_sets_are_sent_back(local_server, session):
    server = local_server("127.0.0.1")
    server.route("/login", lambda h: h.reply(200, b"{}", {"Set-Cookie": "sid=abc; Path=/"}))
    s = session()
    send_request(s, "GET", server.url("/login"), timeout=5).close()
    send_request(s, "GET", server.url("/next"), timeout=5).close()
    assert "Cookie" not in server.requests[0]["headers"]
    assert server.requests[1]["headers"]["Cookie"] == "sid=abc"


def test_redirects_are_followed_rechecked_and_lose_credentials(local_server, trap, connect_log, session):
    origin, other = local_server("127.0.0.1"), local_server("127.0.0.1")
    trap_port = trap.listen("127.0.0.2")
    origin.route("/away", lambda h: h.reply(307, headers={"Location": other.url("/final")}))
    origin.route("/refused", lambda h: h.reply(302, headers={"Location": f"http://127.0.0.2:{trap_port}/"}))
    s = session(secret_headers=["X-Key"])
    auth = AUTHS["header"]()

    response = send_request(s, "POST", origin.url("/away"), json={"a": 1}, auth=auth, timeout=5)
    assert response.status_code == 200 and [r.status_code for r in response.history] == [307]
    assert other.requests[-1]["body"] == b'{"a": 1}' and "X-Key" not in other.requests[-1]["headers"]

    with pytest.raises(SSRFBlockedError):
        send_request(s, "GET", origin.url("/refused"), auth=auth, timeout=5)
    assert trap.connections() == 0 and "127.0.0.2" not in connect_log.hosts()

    with pytest.raises(requests.TooManyRedirects):
        send_request(session(max_redirects=0), "POST", origin.url("/away"), json={}, timeout=5)


def test_a_session_it_cannot_shortcut_goes_through_session_request(local_server, session):
    server = local_server("127.0.0.1")
    s = session()
    seen = []
    s.hooks["response"].append(lambda r, **kwargs: seen.append(r.status_code))
    s.params = {"from": "session"}
    response = send_request(s, "GET", server.url("/x"), params={"q": "1"}, timeout=5)
    assert response.status_code == 200 and seen == [200]
    assert server.requests[-1]["path"] == "/x?from=session&q=1"


# --------------------------------------------------------------------------- the check memo


def test_a_literal_address_is_refused_on_every_request(trap, connect_log, session):
    port = trap.listen("127.0.0.2")
    s = session()
    for _ in range(3):
        with pytest.raises(SSRFBlockedError):
            send_request(s, "GET", f"http://127.0.0.2:{port}/", timeout=5)
    assert trap.connections() == 0 and connect_log.hosts() == []


def test_a_remembered_literal_check_does_not_outlive_its_policy(local_server, connect_log, session):
    server = local_server("127.0.0.1")
    s = session()
    assert send_request(s, "GET", server.url("/"), timeout=5).status_code == 200
    adapter = s.get_adapter(server.url("/"))
    adapter.policy = AddressPolicy(allowed_networks=["127.0.0.2/32"])  # 127.0.0.1 is no longer allowed
    with pytest.raises(SSRFBlockedError):
        send_request(s, "GET", server.url("/"), timeout=5)
    assert len(server.requests) == 1


def test_a_host_name_is_resolved_and_checked_on_every_request(local_server, trap, fake_dns, connect_log, session):
    server = local_server("127.0.0.1")
    trap.listen("127.0.0.2", server.port)
    fake_dns.add("rebind.example.test", ["127.0.0.1"], ["127.0.0.1"], ["127.0.0.2"])
    s = session()
    url = f"http://rebind.example.test:{server.port}/"
    assert send_request(s, "GET", url, timeout=5).status_code == 200
    assert send_request(s, "GET", url, timeout=5).status_code == 200
    with pytest.raises(SSRFBlockedError, match="rebind.example.test"):
        send_request(s, "GET", url, timeout=5)
    assert fake_dns.lookups == ["rebind.example.test"] * 3
    assert "127.0.0.2" not in connect_log.hosts() and trap.connections() == 0

"""The hardened session against real local servers: pinning (plain and TLS), redirects,
credential stripping, proxies from the environment, and response size caps."""

from __future__ import annotations

import datetime
import gzip
import ssl

import pytest
import requests

from flowker.errors import SSRFBlockedError
from flowker.security.http import ResponseTooLargeError, read_capped
from flowker.security.ssrf import AddressPolicy

from security_helpers import PUBLIC


def test_dns_rebind_cannot_reach_the_refused_address(local_server, trap, fake_dns, connect_log, session):
    server = local_server("127.0.0.1")
    trap.listen("127.0.0.2", server.port)  # the rebind target, same port
    # First lookup answers the allowed address, every later one the refused address.
    fake_dns.add("rebind.example.test", ["127.0.0.1"], ["127.0.0.2"])

    response = session().get(f"http://rebind.example.test:{server.port}/hello", timeout=5)

    assert response.status_code == 200
    assert server.requests[-1]["headers"]["Host"] == f"rebind.example.test:{server.port}"
    assert fake_dns.lookups == ["rebind.example.test"], "resolved once, for the check"
    assert connect_log.hosts() == ["127.0.0.1"]
    assert trap.connections() == 0


def test_unpinned_requests_would_have_been_rebound(local_server, trap, fake_dns, connect_log):
    """The counterfactual: a plain session resolves again and lands on the refused address,
    so the test above can fail."""
    server = local_server("127.0.0.1")
    trap.listen("127.0.0.2", server.port)
    fake_dns.add("rebind.example.test", ["127.0.0.1"], ["127.0.0.2"])
    PUBLIC.check_url(f"http://rebind.example.test:{server.port}/")  # the check sees 127.0.0.1
    plain = requests.Session()
    plain.trust_env = False
    with pytest.raises(requests.RequestException):
        plain.get(f"http://rebind.example.test:{server.port}/", timeout=1)  # the trap never answers
    plain.close()
    assert "127.0.0.2" in connect_log.hosts()
    assert trap.connections() == 1


def test_rebound_answer_is_refused_on_the_next_call(local_server, trap, fake_dns, connect_log, session):
    server = local_server("127.0.0.1")
    trap.listen("127.0.0.2", server.port)
    fake_dns.add("rebind.example.test", ["127.0.0.1"], ["127.0.0.2"])
    s = session()
    s.get(f"http://rebind.example.test:{server.port}/", timeout=5)
    with pytest.raises(SSRFBlockedError, match="rebind.example.test"):
        s.get(f"http://rebind.example.test:{server.port}/", timeout=5)
    assert "127.0.0.2" not in connect_log.hosts()
    assert trap.connections() == 0


@pytest.mark.parametrize(
    "location",
    [
        "http://127.0.0.2:{trap}/",
        "http://2130706434:{trap}/",
        "http://localhost:{trap}/",
        "http://[::1]:{trap6}/",
        "http://169.254.169.254/latest/meta-data/",
        "file:///etc/passwd",
        "http://user:pw@127.0.0.1:{port}/",
    ],
)
def test_redirect_to_a_refused_address_is_not_followed(location, local_server, trap, connect_log, session):
    server = local_server("127.0.0.1")
    trap_port = trap.listen("127.0.0.2")
    trap6 = trap.listen("::1")
    target = location.format(trap=trap_port, trap6=trap6, port=server.port)
    server.route("/go", lambda h: h.reply(302, headers={"Location": target}))

    with pytest.raises(SSRFBlockedError):
        session().get(server.url("/go"), timeout=5)

    assert [r["path"] for r in server.requests] == ["/go"]
    assert set(connect_log.hosts()) == {"127.0.0.1"}
    assert trap.connections() == 0


def test_allowed_redirect_is_followed_and_loses_credentials_across_origins(local_server, session):
    origin, other = local_server("127.0.0.1"), local_server("127.0.0.1")
    origin.route("/same", lambda h: h.reply(302, headers={"Location": "/final"}))
    origin.route("/away", lambda h: h.reply(302, headers={"Location": other.url("/final")}))
    s = session(secret_headers=["X-Tracer-Key"])
    headers = {
        "Authorization": "Bearer t0k3n-value",
        "X-Tracer-Key": "k3y-value",
        "X-API-Key": "k2",
        "Cookie": "sid=1",
        "X-Trace": "keep",
    }

    assert s.get(origin.url("/same"), headers=headers, timeout=5).status_code == 200
    same = origin.requests[-1]["headers"]
    assert same["Authorization"] == "Bearer t0k3n-value" and same["X-Tracer-Key"] == "k3y-value"

    assert s.get(origin.url("/away"), headers=headers, timeout=5).status_code == 200
    moved = other.requests[-1]["headers"]
    for name in ("Authorization", "X-Tracer-Key", "X-API-Key", "Cookie"):
        assert name not in moved
    assert moved["X-Trace"] == "keep"


def test_redirects_can_be_refused_outright(local_server, session):
    server = local_server("127.0.0.1")
    server.route("/go", lambda h: h.reply(302, headers={"Location": "/final"}))
    with pytest.raises(requests.TooManyRedirects):
        session(max_redirects=0).get(server.url("/go"), timeout=5)


def test_proxies_from_the_environment_are_ignored(local_server, trap, monkeypatch, connect_log, session):
    server = local_server("127.0.0.1")
    proxy_port = trap.listen("127.0.0.1")
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{proxy_port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    s = session()
    assert s.get(server.url("/"), timeout=5).status_code == 200
    assert s.get(server.url("/"), timeout=5, proxies={"http": f"http://127.0.0.1:{proxy_port}"}).status_code == 200
    assert trap.connections() == 0
    assert connect_log.addresses and all(a[1] == server.port for a in connect_log.addresses)


# --------------------------------------------------------------------------- TLS


def _self_signed(tmp_path, name: str):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_file), str(key_file)


def _tls_server(local_server, tmp_path, name):
    cert, key = _self_signed(tmp_path, name)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    seen_sni = []
    context.sni_callback = lambda sock, server_name, ctx: seen_sni.append(server_name)
    return local_server("127.0.0.1", tls_context=context), cert, seen_sni


def test_tls_keeps_sni_and_certificate_check_on_the_host_name(local_server, tmp_path, fake_dns, connect_log, session):
    server, cert, seen_sni = _tls_server(local_server, tmp_path, "pinned.example.test")
    fake_dns.add("pinned.example.test", ["127.0.0.1"])
    s = session(AddressPolicy(allowed_networks=["127.0.0.1/32"], require_https=True))
    response = s.get(f"https://pinned.example.test:{server.port}/", timeout=5, verify=cert)
    assert response.status_code == 200
    assert seen_sni == ["pinned.example.test"]
    assert server.requests[-1]["headers"]["Host"] == f"pinned.example.test:{server.port}"
    assert connect_log.hosts() == ["127.0.0.1"]


def test_tls_certificate_for_another_name_is_rejected(local_server, tmp_path, fake_dns, session):
    server, cert, _ = _tls_server(local_server, tmp_path, "other.example.test")
    fake_dns.add("pinned.example.test", ["127.0.0.1"])
    with pytest.raises(requests.exceptions.SSLError):
        session().get(f"https://pinned.example.test:{server.port}/", timeout=5, verify=cert)


# --------------------------------------------------------------------------- size caps


def test_declared_length_over_the_cap_fails_before_reading(local_server, session):
    server = local_server("127.0.0.1")
    server.route("/big", lambda h: h.reply(200, b"x" * 5000))
    with pytest.raises(ResponseTooLargeError, match="127.0.0.1") as caught:
        session(max_response_bytes=1000).get(server.url("/big"), timeout=5)
    assert caught.value.code == "FLK-0343"
    assert session(max_response_bytes=5000).get(server.url("/big"), timeout=5).content == b"x" * 5000


def _chunked(body: bytes, extra_headers=None):
    def handler(h):
        h.send_response(200)
        for name, value in (extra_headers or {}).items():
            h.send_header(name, value)
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        for start in range(0, len(body), 4096):
            piece = body[start : start + 4096]
            h.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        h.wfile.write(b"0\r\n\r\n")

    return handler


def test_undeclared_length_is_capped_while_streaming(local_server, session):
    server = local_server("127.0.0.1")
    server.route("/stream", _chunked(b"y" * 50_000))
    with pytest.raises(ResponseTooLargeError):
        session(max_response_bytes=10_000).get(server.url("/stream"), timeout=5)


def test_compression_bomb_is_capped_on_decoded_size(local_server, session):
    server = local_server("127.0.0.1")
    bomb = gzip.compress(b"\0" * 2_000_000)
    server.route("/bomb", lambda h: h.reply(200, bomb, {"Content-Encoding": "gzip"}))
    assert len(bomb) < 10_000
    with pytest.raises(ResponseTooLargeError):
        session(max_response_bytes=100_000).get(server.url("/bomb"), timeout=5)


def test_read_capped_on_a_streamed_response(local_server, session):
    server = local_server("127.0.0.1")
    server.route("/stream", _chunked(b"z" * 30_000))
    s = session()
    response = s.get(server.url("/stream"), timeout=5, stream=True)
    with pytest.raises(ResponseTooLargeError):
        read_capped(response, 20_000)
    response = s.get(server.url("/stream"), timeout=5, stream=True)
    assert read_capped(response, 30_000) == b"z" * 30_000
    assert response.content == b"z" * 30_000


def test_harden_session_guards_a_requests_oauthlib_session(local_server, trap, fake_dns, connect_log, monkeypatch):
    import json

    from oauthlib.oauth2 import BackendApplicationClient
    from requests_oauthlib import OAuth2Session

    from flowker.security.http import harden_session

    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # the local test IdP speaks plain HTTP
    server = local_server("127.0.0.1")
    token = {"access_token": "at-value-1", "token_type": "Bearer", "expires_in": 60}
    server.route("/token", lambda h: h.reply(200, json.dumps(token).encode(), {"Content-Type": "application/json"}))
    trap_port = trap.listen("127.0.0.2")
    server.route("/moved", lambda h: h.reply(302, headers={"Location": f"http://127.0.0.2:{trap_port}/"}))
    trap.listen("127.0.0.2", server.port)
    fake_dns.add("idp.example.test", ["127.0.0.1"], ["127.0.0.2"])

    oauth = harden_session(OAuth2Session(client=BackendApplicationClient(client_id="app")), PUBLIC)
    try:
        fetched = oauth.fetch_token(
            f"http://idp.example.test:{server.port}/token", client_secret="cs-value", include_client_id=True
        )
        assert fetched["access_token"] == "at-value-1"
        assert oauth.trust_env is False
        with pytest.raises(SSRFBlockedError):
            oauth.get(f"http://idp.example.test:{server.port}/moved", timeout=5)  # rebound name refused
        with pytest.raises(SSRFBlockedError):
            oauth.get(f"http://127.0.0.1:{server.port}/moved", timeout=5)  # redirect refused
    finally:
        oauth.close()
    assert set(connect_log.hosts()) == {"127.0.0.1"}
    assert trap.connections() == 0


def test_unresolvable_name_is_a_connection_error_naming_the_host(fake_dns, connect_log, session):
    with pytest.raises(requests.exceptions.ConnectionError, match="nowhere.example.test"):
        session().get("http://nowhere.example.test/", timeout=5)
    assert connect_log.addresses == []

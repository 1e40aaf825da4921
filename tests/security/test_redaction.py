"""The redactor: secret keys, registered values in every encoding, URLs, headers, logs."""

from __future__ import annotations

import base64
import json
import logging
import secrets
from urllib.parse import quote, quote_plus

import pytest

from flowker.security.redaction import (
    MASK,
    RedactingFilter,
    Redactor,
    encoded_variants,
    install_log_redaction,
    is_secret_key,
    mask_value,
    redact,
    redact_headers,
    redact_url,
)


def canary(prefix="c") -> str:
    # Symbols included so URL and JSON encodings differ from the raw form.
    return f'{prefix}-{secrets.token_urlsafe(18)}+/=&é"!'


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "Password",
        "PASSWORD",
        "db_password",
        "dbPassword",
        "secret",
        "client_secret",
        "clientSecret",
        "Client-Secret",
        "token",
        "access_token",
        "accessToken",
        "refresh-token",
        "id_token",
        "api_key",
        "apiKey",
        "apikey",
        "API-KEY",
        "x-api-key",
        "X-Api-Key",
        "key",
        "authorization",
        "Authorization",
        "Proxy-Authorization",
        "cookie",
        "Set-Cookie",
        "private_key",
        "privateKey",
        "signature",
        "credential",
        "credentials",
        "webhookSecret",
        "X-Auth-Token",
        "passphrase",
    ],
)
def test_secret_looking_keys(key):
    assert is_secret_key(key)


@pytest.mark.parametrize(
    "key",
    [
        "name",
        "tokenType",
        "token_type",
        "expires_in",
        "idempotencyKey",
        "keyId",
        "username",
        "client_id",
        "issuer_url",
        "header_name",
        "token_endpoint_auth_method",
        "status",
        "description",
        "passwordPolicy",
    ],
)
def test_ordinary_keys(key):
    assert not is_secret_key(key)


def test_redact_is_a_deep_copy_with_plain_mask():
    value = {
        "authentication": {"type": "basic", "config": {"username": "u", "password": "hunter2-long-pass"}},
        "headers": [{"Authorization": "Bearer abc"}, {"Accept": "json"}],
        "token": None,
        "api_key": {"$env": "TRACER_KEY"},
        "client_secret": {"$encrypted": "gAAAA..."},
    }
    result = redact(value)
    assert result["authentication"]["config"] == {"username": "u", "password": MASK}
    assert result["headers"] == [{"Authorization": MASK}, {"Accept": "json"}]
    assert result["token"] is None
    assert result["api_key"] == {"$env": "TRACER_KEY"}  # a reference is not a secret
    assert result["client_secret"] == MASK
    assert value["authentication"]["config"]["password"] == "hunter2-long-pass"  # original untouched


def test_masking_style_last_four_only_for_long_strings():
    assert redact({"token": "abcdefghijklmnop"}, show_last=True) == {"token": "****mnop"}
    assert redact({"token": "short-secret"}, show_last=True) == {"token": "****cret"}
    assert redact({"token": "shortsecret"}, show_last=True) == {"token": MASK}  # 11 chars: nothing shown
    assert redact({"token": "abcdefghijklmnop"}) == {"token": MASK}
    assert mask_value(12345678901234, show_last=True) == MASK
    assert redact({"X-Tracer": "v"}, extra_keys=["x-tracer"]) == {"X-Tracer": MASK}


def test_registered_secret_is_scrubbed_in_every_encoding():
    secret = canary()
    redactor = Redactor()
    redactor.add_secret(secret)
    forms = {
        "raw": secret,
        "base64": base64.b64encode(secret.encode()).decode(),
        "base64-urlsafe": base64.urlsafe_b64encode(secret.encode()).decode(),
        "base64-unpadded": base64.b64encode(secret.encode()).decode().rstrip("="),
        "url-encoded": quote(secret, safe=""),
        "url-encoded-plus": quote_plus(secret),
        "url-encoded-lower": quote(secret, safe="").lower(),
        "json-escaped": json.dumps(secret)[1:-1],
        "json-ascii": json.dumps(secret, ensure_ascii=True)[1:-1],
    }
    for user in ("alice", "bob:", "a", "ab", "abc", ""):
        forms[f"basic-{user}"] = base64.b64encode(f"{user}:{secret}".encode()).decode()
        forms[f"basic-suffix-{user}"] = base64.b64encode(f"{secret}:{user}".encode()).decode()
    for name, form in forms.items():
        text = f"before {form} after"
        scrubbed = redactor.scrub_text(text)
        assert not _leaks(scrubbed, secret), (name, scrubbed)
        assert scrubbed.startswith("before ") and scrubbed.endswith(" after"), name


def _leaks(text: str, secret: str) -> bool:
    """Whether any encoding of the secret's recognisable core survives in text."""
    core = secret[2:-6]  # the random part
    candidates = {core, quote(core, safe=""), json.dumps(core)[1:-1]}
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + core.encode()).decode()
        candidates.add(encoded[4:-4])
        candidates.add(encoded[4:-4].replace("+", "-").replace("/", "_"))
    return any(c and c in text for c in candidates)


def test_basic_credentials_pair_is_scrubbed():
    redactor = Redactor()
    redactor.add_basic_credentials("service-user", "pw-" + secrets.token_hex(8))
    header = "Basic " + base64.b64encode(b"service-user:" + redactor_secret(redactor).encode()).decode()
    assert MASK in redactor.scrub_text(f"sent {header}")
    assert "service-user:" not in redactor.scrub_text("service-user:" + redactor_secret(redactor))


def redactor_secret(redactor):
    return next(s for s in redactor._known._last_seen if s.startswith("pw-"))


def test_unregistered_credentials_in_text_are_scrubbed_by_shape():
    r = Redactor(extra_secret_headers=["X-Tracer-Key"])
    samples = {
        "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc": "eyJhbGci",
        "headers={'Authorization': 'Bearer abcDEF123456', 'Accept': '*/*'}": "abcDEF123456",
        '{"access_token": "AT-123456789", "token_type": "Bearer", "expires_in": 300}': "AT-123456789",
        '{"refresh_token":"RT-987654321"}': "RT-987654321",
        "grant_type=client_credentials&client_id=app&client_secret=CS-5555555": "CS-5555555",
        "grant_type=password&username=u&password=PW-4444444&scope=openid": "PW-4444444",
        "GET https://api.example.test/v1?access_token=QT-111111&page=2 HTTP/1.1": "QT-111111",
        "https://api.example.test/v1?api_key=AK-2222222": "AK-2222222",
        "https://api.example.test/cb?code=OC-3333333&state=s": "OC-3333333",
        "https://api.example.test/files?sig=SG-4444444&se=2030": "SG-4444444",
        "https://user:UP-5555555@api.example.test/": "UP-5555555",
        "https://h.test/#access_token=FT-6666666&token_type=bearer": "FT-6666666",
        "X-Tracer-Key: TK-7777777": "TK-7777777",
        "Cookie: session=CK-8888888; theme=dark": "CK-8888888",
        "Basic " + base64.b64encode(b"user:BP-9999999").decode(): base64.b64encode(b"user:BP-9999999").decode()[:12],
        "password=PW-1010101 in a message": "PW-1010101",
    }
    for text, secret in samples.items():
        scrubbed = r.scrub_text(text)
        assert secret not in scrubbed, (text, scrubbed)
        assert MASK in scrubbed


def test_prose_is_left_alone():
    r = Redactor()
    for text in (
        "status code: 200",
        "bearer authentication failed",
        "basic authentication required",
        '{"code": "FLK-0341", "message": "host not allowed"}',
        "the key to success",
        "https://api.example.test/v1/items?page=2&limit=10",
    ):
        assert r.scrub_text(text) == text


def test_redact_url():
    assert redact_url(
        "https://u:p@h.test/x?access_token=a&token=b&api_key=c&key=d&sig=e&signature=f"
        "&client_secret=g&code=h&password=i&page=2"
    ) == (
        "https://u:****@h.test/x?access_token=****&token=****&api_key=****&key=****&sig=****"
        "&signature=****&client_secret=****&code=****&password=****&page=2"
    )
    assert redact_url("https://h.test/x?Access_Token=a") == "https://h.test/x?Access_Token=****"
    assert redact_url("https://h.test/x?myparam=a", extra_params=["myparam"]) == "https://h.test/x?myparam=****"
    assert redact_url("https://h.test/plain") == "https://h.test/plain"


def test_redact_headers():
    headers = {
        "Authorization": "Bearer x",
        "proxy-authorization": "Basic y",
        "Cookie": "a=b",
        "Set-Cookie": "c=d",
        "X-API-Key": "k",
        "X-Tracer-Key": "t",
        "X-Session-Token": "s",
        "Accept": "application/json",
    }
    assert redact_headers(headers, extra_secret_headers=["x-tracer-key"]) == {
        "Authorization": MASK,
        "proxy-authorization": MASK,
        "Cookie": MASK,
        "Set-Cookie": MASK,
        "X-API-Key": MASK,
        "X-Tracer-Key": MASK,
        "X-Session-Token": MASK,
        "Accept": "application/json",
    }
    assert redact_headers([("Authorization", "x")]) == {"Authorization": MASK}


def test_redactor_redact_deep_structures_and_bytes():
    secret = canary()
    r = Redactor(extra_secret_headers=["X-Tracer-Key"])
    r.add_secret(secret)
    record = {
        "request": {"url": f"https://h.test/?token={quote(secret)}", "headers": {"X-Tracer-Key": "v"}},
        "response": {"body": f"echo {secret}", "raw": f"x{secret}y".encode()},
        "list": [secret, ("tuple", secret)],
        secret: "secret used as a key",
    }
    result = r.redact(record)
    dumped = json.dumps(result, default=str)
    assert not _leaks(dumped, secret) and not _leaks(result["response"]["raw"].decode(), secret)
    assert result["request"]["headers"] == {"X-Tracer-Key": MASK}


def test_short_values_are_not_scrubbed_and_registry_is_bounded():
    r = Redactor(max_secrets=3)
    r.add_secret("abc")
    assert r.scrub_text("abc def") == "abc def"
    for value in ("first-secret-1", "second-secret-2", "third-secret-3", "fourth-secret-4"):
        r.add_secret(value)
    assert r.secret_count <= 3
    assert not r.knows("first-secret-1")
    assert MASK in r.scrub_text("fourth-secret-4")


def test_secrets_still_in_use_survive_eviction():
    from flowker.security import known_secrets

    r = Redactor(max_secrets=known_secrets.CHUNK_SIZE)
    static = "static-secret-in-use"
    r.add_secret(static)
    tokens = [f"token-{i:05d}-value" for i in range(known_secrets.CHUNK_SIZE * 3)]
    for index, token in enumerate(tokens):
        r.add_secret(token)
        if index % 50 == 0:
            r.add_secret(static)  # resolved again on every call: still in use
    assert r.secret_count <= known_secrets.CHUNK_SIZE * 2
    assert r.knows(static) and r.scrub_text(static) == MASK
    assert not r.knows(tokens[0]) and r.knows(tokens[-1])


def test_scrubbing_stays_correct_while_secrets_are_added_concurrently():
    import threading

    r = Redactor()
    values = [f"concurrent-secret-{i:04d}" for i in range(400)]
    errors = []

    def add(chunk):
        for value in chunk:
            r.add_secret(value)
            if r.scrub_text(f"<{value}>") != "<****>":
                errors.append(value)

    threads = [threading.Thread(target=add, args=(values[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert all(r.scrub_text(v) == MASK for v in values)


def test_variants_cover_base64_at_every_alignment():
    secret = "Z" * 5 + secrets.token_hex(10)
    variants = encoded_variants(secret)
    for prefix in (b"", b"u:", b"us:", b"use:"):
        encoded = base64.b64encode(prefix + secret.encode()).decode()
        assert any(v in encoded for v in variants), prefix


def test_log_filter_scrubs_message_args_and_exceptions(caplog):
    secret = canary()
    r = Redactor()
    r.add_secret(secret)
    logger = logging.getLogger("flowker.test.redaction")
    handler_filter = RedactingFilter(r)
    caplog.handler.addFilter(handler_filter)
    try:
        with caplog.at_level(logging.DEBUG, logger="flowker.test.redaction"):
            logger.debug("Obtained token %s", {"access_token": secret, "token_type": "Bearer"})
            logger.debug("Prepared fetch token request body %s", f"grant_type=x&client_secret={quote(secret)}")
            try:
                raise ValueError(f"bad {secret}")
            except ValueError:
                logger.exception("failed with %r", secret)
    finally:
        caplog.handler.removeFilter(handler_filter)
    assert len(caplog.records) == 3
    assert not _leaks(caplog.text, secret), caplog.text


def test_install_log_redaction_covers_third_party_loggers(caplog):
    secret = canary()
    r = Redactor()
    r.add_secret(secret)
    uninstall = install_log_redaction(r)
    try:
        with caplog.at_level(logging.DEBUG):
            logging.getLogger("urllib3.connectionpool").debug(
                '%s://%s:%s "%s %s %s" %s %s',
                "https",
                "h.test",
                443,
                "GET",
                f"/v1?access_token={secret}",
                "HTTP/1.1",
                200,
                None,
            )
            logging.getLogger("requests_oauthlib.oauth2_session").debug(
                "Response headers were %s and content %s.",
                {"Set-Cookie": "sid=x"},
                json.dumps({"access_token": secret, "refresh_token": "rt-" + secret}),
            )
    finally:
        uninstall()
    assert len(caplog.records) == 2
    assert not _leaks(caplog.text, secret), caplog.text
    # After uninstalling, records are no longer touched.
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("flowker.test").debug("plain %s", "value")
    assert caplog.records[-1].args == ("value",)


def test_scrub_exception():
    secret = canary()
    r = Redactor()
    r.add_secret(secret)
    text = r.scrub_exception(ConnectionError(f"could not reach https://h.test/?token={secret}"))
    assert text.startswith("ConnectionError: ") and not _leaks(text, secret)


def test_long_secret_values_do_not_exhaust_recursion():
    """OIDC tokens of a few KiB must register and scrub like short ones."""
    import secrets as _secrets

    from flowker.security.redaction import Redactor

    redactor = Redactor()
    long_token = "eyJ" + _secrets.token_urlsafe(3000)
    redactor.add_secret(long_token)
    redactor.add_secret(long_token[:100] + "different-tail")
    scrubbed = redactor.scrub_text(f"the value {long_token} end")
    assert long_token not in scrubbed
    assert scrubbed.endswith(" end")

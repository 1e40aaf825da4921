"""The hmac auth type, checked with Flowker's plugin author kit (flowker.testing)."""

import hashlib
import importlib.metadata

import pytest

from flowker.errors import AuthTypeError
from flowker.testing import check_auth_type, check_schema, check_secrets_hidden, sign_request
from flowker_auth_hmac import HmacAuth, sign, string_to_sign, verify_signature

SECRET = "0123456789abcdef-hmac-test-secret"
CONFIG = {"key_id": "key-1", "secret": SECRET}


def verifying_handler(
    secret: bytes, signature_header="X-Signature", timestamp_header="X-Timestamp", key_id_header="X-Key-Id"
):
    """A local server that answers 200 only to a correctly signed request."""

    def handle(request):
        path = request.path + (f"?{request.query_string}" if request.query_string else "")
        ok = request.header(key_id_header) == "key-1" and verify_signature(
            secret,
            request.method,
            path,
            request.header(timestamp_header, ""),
            request.body,
            request.header(signature_header, ""),
        )
        return (200, {}, {"ok": True}) if ok else (401, {}, {"ok": False})

    return handle


def test_the_kit_passes_and_a_verifying_server_accepts_the_signature():
    recorded = check_auth_type(HmacAuth(), CONFIG, handler=verifying_handler(SECRET.encode()))
    assert recorded.header("X-Key-Id") == "key-1"
    assert len(recorded.header("X-Signature")) == 64


def test_signature_covers_method_path_query_timestamp_and_body_hash():
    recorded = sign_request(
        HmacAuth(),
        CONFIG,
        method="PUT",
        path="/v1/items/42",
        query={"a": "1", "b": "x y"},
        body=b'{"amount": 10}',
        handler=verifying_handler(SECRET.encode()),
        expect_status=200,
    )
    timestamp = recorded.header("X-Timestamp")
    expected_lines = ["PUT", "/v1/items/42?a=1&b=x+y", timestamp, hashlib.sha256(b'{"amount": 10}').hexdigest()]
    assert (
        string_to_sign("PUT", "/v1/items/42?a=1&b=x+y", timestamp, b'{"amount": 10}')
        == "\n".join(expected_lines).encode()
    )
    assert recorded.header("X-Signature") == sign(
        SECRET.encode(), "PUT", "/v1/items/42?a=1&b=x+y", timestamp, b'{"amount": 10}'
    )


def test_a_wrong_secret_is_refused_by_the_verifying_server():
    sign_request(
        HmacAuth(),
        {"key_id": "key-1", "secret": "another-secret-of-enough-length"},
        handler=verifying_handler(SECRET.encode()),
        expect_status=401,
    )


def test_tampered_body_or_old_timestamp_fails_verification():
    timestamp = "1700000000"
    signature = sign(b"k" * 16, "POST", "/x", timestamp, b"body")
    assert verify_signature(b"k" * 16, "POST", "/x", timestamp, b"body", signature, now=1700000010)
    assert not verify_signature(b"k" * 16, "POST", "/x", timestamp, b"b0dy", signature, now=1700000010)
    assert not verify_signature(b"k" * 16, "POST", "/x", timestamp, b"body", signature, now=1700009999)


def test_custom_header_names_and_base64_secret():
    config = {
        "key_id": "key-1",
        "secret": "c2VjcmV0LWJ5dGVzLWZvci1obWFjLXRlc3Q=",
        "secret_encoding": "base64",
        "signature_header": "Signature",
        "timestamp_header": "Date-Unix",
        "key_id_header": "Key",
    }
    recorded = sign_request(
        HmacAuth(),
        config,
        expect_status=200,
        handler=verifying_handler(b"secret-bytes-for-hmac-test", "Signature", "Date-Unix", "Key"),
    )
    assert recorded.header("X-Signature") is None


def test_secrets_stay_hidden_for_every_secret_encoding():
    check_schema(HmacAuth())
    canaries = check_secrets_hidden(HmacAuth(), CONFIG)
    assert len(canaries) == 1


def test_an_undecodable_secret_fails_without_showing_it(auth_context):
    secret = "not base64 at all !!!!" * 2
    with pytest.raises(AuthTypeError) as caught:
        HmacAuth().build({"key_id": "k", "secret": secret, "secret_encoding": "base64"}, auth_context)
    assert secret not in str(caught.value) and "secret" in str(caught.value)


def test_the_entry_point_is_declared_in_the_flowker_group():
    entry_points = importlib.metadata.entry_points(group="flowker")
    ours = [ep for ep in entry_points if ep.name == "hmac"]
    assert ours and ours[0].value == "flowker_auth_hmac"
    assert ours[0].dist.metadata["Name"] == "flowker-auth-hmac"

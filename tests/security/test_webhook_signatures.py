"""Signature schemes of signed webhooks, checked against the vectors their publishers give:

* Standard Webhooks: the signing vector of the reference libraries
  (standard-webhooks/standard-webhooks, libraries/go/webhook_test.go ``TestWebhookSign``:
  secret ``whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw``, id ``msg_p5jXN8AQM9LWM0D4loKWxJek``,
  timestamp 1614265330, payload ``{"test": 2432232314}``), and their verification cases
  (multiple signatures, tolerance, missing headers).
* GitHub: the example of "Validating webhook deliveries" (secret
  ``It's a Secret to Everybody``, payload ``Hello, World!``).
* hmac-sha256: RFC 4231 test case 2 (key ``Jefe``).
"""

from __future__ import annotations

import base64

import pytest

from flowker.security.webhook_signatures import (
    GITHUB,
    HMAC_SHA256,
    STANDARD_WEBHOOKS,
    SignatureCheck,
    SignatureRefused,
    sign_github,
    sign_standard_webhooks,
    verify_delivery,
)

SW_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SW_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SW_TIMESTAMP = 1614265330
SW_PAYLOAD = b'{"test": 2432232314}'
SW_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
SW_WRONG = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="

GITHUB_SECRET = "It's a Secret to Everybody"
GITHUB_PAYLOAD = b"Hello, World!"
GITHUB_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

RFC4231_KEY = "Jefe"
RFC4231_DATA = b"what do ya want for nothing?"
RFC4231_HMAC = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"


def _standard(headers: dict, body: bytes = SW_PAYLOAD, now: float = SW_TIMESTAMP, secret: str = SW_SECRET):
    return verify_delivery(SignatureCheck(STANDARD_WEBHOOKS, secret), headers, body, now)


def _sw_headers(signature: str = SW_SIGNATURE, **changes) -> dict:
    headers = {"webhook-id": SW_ID, "webhook-timestamp": str(SW_TIMESTAMP), "webhook-signature": signature}
    headers.update(changes)
    return {name: value for name, value in headers.items() if value is not None}


# ------------------------------------------------------------------ Standard Webhooks


def test_standard_webhooks_published_signing_vector():
    assert sign_standard_webhooks(SW_SECRET, SW_ID, SW_TIMESTAMP, SW_PAYLOAD) == SW_SIGNATURE
    # The secret works with and without its whsec_ prefix (TestWebhookPrefix).
    assert sign_standard_webhooks(SW_SECRET.removeprefix("whsec_"), SW_ID, SW_TIMESTAMP, SW_PAYLOAD) == SW_SIGNATURE


def test_standard_webhooks_published_vector_verifies_and_names_the_message():
    delivery = _standard(_sw_headers())
    assert delivery.message_id == SW_ID and delivery.timestamp == SW_TIMESTAMP
    # Header names are case-insensitive.
    assert _standard({name.title(): value for name, value in _sw_headers().items()}).message_id == SW_ID


def test_standard_webhooks_any_of_several_signatures_may_match():
    several = " ".join([SW_WRONG, "v2," + SW_WRONG[3:], SW_SIGNATURE, SW_WRONG])
    assert _standard(_sw_headers(several)).message_id == SW_ID
    assert _standard(_sw_headers("v1a,abc " + SW_SIGNATURE)).message_id == SW_ID


@pytest.mark.parametrize(
    "headers, body, reason",
    [
        (_sw_headers(SW_WRONG), SW_PAYLOAD, "signature"),
        (_sw_headers(), SW_PAYLOAD + b" ", "signature"),  # one byte of the raw body changed
        (_sw_headers(**{"webhook-id": "msg_other"}), SW_PAYLOAD, "signature"),  # the id is signed
        (_sw_headers(**{"webhook-id": None}), SW_PAYLOAD, "signature"),
        (_sw_headers(**{"webhook-signature": None}), SW_PAYLOAD, "signature"),
        (_sw_headers(**{"webhook-timestamp": None}), SW_PAYLOAD, "signature"),
        (_sw_headers("v2," + SW_SIGNATURE[3:]), SW_PAYLOAD, "signature"),  # only v1 is HMAC
        (_sw_headers("v1,not base64!"), SW_PAYLOAD, "signature"),
        (_sw_headers(**{"webhook-timestamp": "1614265330.5"}), SW_PAYLOAD, "timestamp"),
        (_sw_headers(**{"webhook-timestamp": "-1"}), SW_PAYLOAD, "timestamp"),
    ],
)
def test_standard_webhooks_refusals(headers, body, reason):
    with pytest.raises(SignatureRefused) as refused:
        _standard(headers, body)
    assert refused.value.reason == reason


def test_standard_webhooks_timestamp_tolerance_is_five_minutes_either_way():
    for skew in (-300, 300):
        assert _standard(_sw_headers(), now=SW_TIMESTAMP + skew).timestamp == SW_TIMESTAMP
    for skew in (-301, 301, 86400):
        with pytest.raises(SignatureRefused) as refused:
            _standard(_sw_headers(), now=SW_TIMESTAMP + skew)
        assert refused.value.reason == "timestamp" and "5 minutes" in refused.value.message


def test_standard_webhooks_secret_must_be_base64():
    with pytest.raises(SignatureRefused) as refused:
        _standard(_sw_headers(), secret="whsec_not*base64")
    assert refused.value.reason == "secret"
    assert "not*base64" not in refused.value.message


def test_standard_webhooks_huge_headers_are_refused_without_parsing():
    with pytest.raises(SignatureRefused, match="longer than"):
        _standard(_sw_headers(" ".join([SW_WRONG] * 2000)))
    # Past the cap on signatures in one header, later entries are not looked at.
    with pytest.raises(SignatureRefused):
        _standard(_sw_headers(" ".join([SW_WRONG] * 16 + [SW_SIGNATURE])))


# ------------------------------------------------------------------ GitHub


def test_github_documented_example():
    assert sign_github(GITHUB_SECRET, GITHUB_PAYLOAD) == GITHUB_SIGNATURE
    delivery = verify_delivery(
        SignatureCheck(GITHUB, GITHUB_SECRET),
        {"X-Hub-Signature-256": GITHUB_SIGNATURE, "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958"},
        GITHUB_PAYLOAD,
        now=0,
    )
    assert delivery.message_id == "72d3162e-cc78-11e3-81ab-4c9367dc0958" and delivery.timestamp is None


@pytest.mark.parametrize(
    "headers, body",
    [
        ({"X-Hub-Signature-256": GITHUB_SIGNATURE, "X-GitHub-Delivery": "d-1"}, b"Hello, World?"),
        (
            {"X-Hub-Signature-256": GITHUB_SIGNATURE.replace("sha256", "sha1"), "X-GitHub-Delivery": "d-1"},
            GITHUB_PAYLOAD,
        ),
        ({"X-Hub-Signature-256": GITHUB_SIGNATURE[:-2], "X-GitHub-Delivery": "d-1"}, GITHUB_PAYLOAD),
        ({"X-Hub-Signature-256": "sha256=zz", "X-GitHub-Delivery": "d-1"}, GITHUB_PAYLOAD),
        ({"X-GitHub-Delivery": "d-1"}, GITHUB_PAYLOAD),
        ({"X-Hub-Signature-256": GITHUB_SIGNATURE}, GITHUB_PAYLOAD),  # no delivery id: no replay check possible
    ],
)
def test_github_refusals(headers, body):
    with pytest.raises(SignatureRefused) as refused:
        verify_delivery(SignatureCheck(GITHUB, GITHUB_SECRET), headers, body, now=0)
    assert refused.value.reason == "signature"
    assert GITHUB_SECRET not in refused.value.message


# ------------------------------------------------------------------ plain HMAC-SHA256


@pytest.mark.parametrize(
    "presented",
    [
        RFC4231_HMAC,
        "sha256=" + RFC4231_HMAC,
        RFC4231_HMAC.upper(),
        base64.b64encode(bytes.fromhex(RFC4231_HMAC)).decode(),
    ],
)
def test_hmac_sha256_rfc4231_vector_in_each_accepted_encoding(presented):
    check = SignatureCheck(HMAC_SHA256, RFC4231_KEY)
    delivery = verify_delivery(check, {"X-Signature": presented}, RFC4231_DATA, now=0)
    # No sender id: the signature names the message, so the same body is one message.
    assert delivery.message_id == "hmac:" + RFC4231_HMAC and delivery.timestamp is None


def test_hmac_sha256_header_is_configurable_and_mismatches_are_refused():
    check = SignatureCheck(HMAC_SHA256, RFC4231_KEY, header="X-Shop-Hmac-Sha256")
    assert verify_delivery(check, {"x-shop-hmac-sha256": RFC4231_HMAC}, RFC4231_DATA, now=0)
    for headers, body in (
        ({"X-Signature": RFC4231_HMAC}, RFC4231_DATA),  # not the configured header
        ({"X-Shop-Hmac-Sha256": RFC4231_HMAC}, RFC4231_DATA + b"!"),
        ({"X-Shop-Hmac-Sha256": "0" * 64}, RFC4231_DATA),
    ):
        with pytest.raises(SignatureRefused) as refused:
            verify_delivery(check, headers, body, now=0)
        assert refused.value.reason == "signature"


def test_an_empty_secret_is_a_server_problem_not_a_match():
    for scheme in (GITHUB, HMAC_SHA256):
        with pytest.raises(SignatureRefused) as refused:
            verify_delivery(SignatureCheck(scheme, ""), {"X-Signature": "", "X-Hub-Signature-256": ""}, b"", now=0)
        assert refused.value.reason == "secret"


def test_the_check_never_shows_its_secret():
    assert RFC4231_KEY not in repr(SignatureCheck(HMAC_SHA256, RFC4231_KEY))

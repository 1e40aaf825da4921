"""Signed webhooks (DESIGN §13): check a sender's signature over the raw request body.

A webhook trigger may declare ``auth: {type: signature, scheme, secret}``; its route then
takes calls without ``X-API-Key`` when :func:`verify_delivery` accepts them. Schemes:

* ``standard-webhooks`` (https://www.standardwebhooks.com, Svix and others):
  ``webhook-id``, ``webhook-timestamp``, ``webhook-signature: v1,<base64>`` (several,
  space-separated, any may match); HMAC-SHA256 of ``id.timestamp.body`` keyed with the
  base64 secret after its ``whsec_`` prefix; the timestamp within 5 minutes of now.
* ``github``: ``X-Hub-Signature-256: sha256=<hex>``, HMAC-SHA256 of the body keyed with
  the secret's UTF-8 bytes; ``X-GitHub-Delivery`` is the message id. No timestamp.
* ``hmac-sha256``: HMAC-SHA256 of the body in one header (``header``, default
  ``X-Signature``) as hex, ``sha256=<hex>`` or base64. No timestamp and no message id:
  the signature itself names the message, so the same body is accepted once.

Only the check lives here (no database, no HTTP): the caller records the message id
:func:`verify_delivery` returns, so a replay is refused on every server.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from typing import Mapping

STANDARD_WEBHOOKS, GITHUB, HMAC_SHA256 = "standard-webhooks", "github", "hmac-sha256"
SCHEMES = (STANDARD_WEBHOOKS, GITHUB, HMAC_SHA256)
TIMESTAMP_TOLERANCE_SECONDS = 300
DEFAULT_HMAC_HEADER = "X-Signature"
# Header values longer than this are refused before any parsing: a sender's signature
# list or id is short, and a huge one must not cost a loop over thousands of entries.
MAX_HEADER_CHARS = 4096
MAX_SIGNATURES = 16
MAX_MESSAGE_ID_CHARS = 256


class SignatureRefused(Exception):
    """The delivery is not accepted. ``reason`` is ``signature``, ``timestamp`` or
    ``secret`` (the configured secret is unusable: a server-side problem)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class SignatureCheck:
    """What a trigger declares: the scheme, the resolved secret and scheme options."""

    scheme: str
    secret: str
    header: str = DEFAULT_HMAC_HEADER

    def __repr__(self) -> str:  # never the secret
        return f"SignatureCheck(scheme={self.scheme!r}, header={self.header!r})"


@dataclass(frozen=True)
class VerifiedDelivery:
    """A delivery whose signature matched: the id replays are recognised by, and the
    sender's timestamp when the scheme has one (the id need not be remembered past it)."""

    message_id: str
    timestamp: int | None


def verify_delivery(check: SignatureCheck, headers: Mapping[str, str], body: bytes, now: float) -> VerifiedDelivery:
    """Accept the delivery or raise :class:`SignatureRefused`. ``headers`` maps lower-case
    names to values; ``body`` is the raw body exactly as received."""
    lowered = {name.lower(): value for name, value in headers.items()}
    if check.scheme == STANDARD_WEBHOOKS:
        return _standard_webhooks(check.secret, lowered, body, now)
    if check.scheme == GITHUB:
        return _github(check.secret, lowered, body)
    if check.scheme == HMAC_SHA256:
        return _plain_hmac(check.secret, check.header.lower(), lowered, body)
    raise SignatureRefused("secret", f"unknown signature scheme {check.scheme!r} (known: {', '.join(SCHEMES)})")


def _header(headers: Mapping[str, str], name: str, shown: str) -> str:
    value = (headers.get(name) or "").strip()
    if not value:
        raise SignatureRefused("signature", f"the {shown} header is missing")
    if len(value) > MAX_HEADER_CHARS:
        raise SignatureRefused("signature", f"the {shown} header is longer than {MAX_HEADER_CHARS} characters")
    return value


def _message_id(headers: Mapping[str, str], name: str, shown: str) -> str:
    value = _header(headers, name, shown)
    if len(value) > MAX_MESSAGE_ID_CHARS:
        raise SignatureRefused("signature", f"the {shown} header is longer than {MAX_MESSAGE_ID_CHARS} characters")
    return value


def _hmac(key: bytes, content: bytes) -> bytes:
    return hmac.new(key, content, hashlib.sha256).digest()


# --------------------------------------------------------------------------- standard webhooks


def standard_webhooks_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret: base64 after an optional ``whsec_``."""
    encoded = secret.strip()
    if encoded.startswith("whsec_"):
        encoded = encoded[len("whsec_") :]
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not key:
        raise SignatureRefused(
            "secret", "the trigger's signing secret is not a Standard Webhooks secret ('whsec_' followed by base64)"
        )
    return key


def sign_standard_webhooks(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value a sender computes (tests and clients use it)."""
    content = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(_hmac(standard_webhooks_key(secret), content)).decode()


def _standard_webhooks(secret: str, headers: Mapping[str, str], body: bytes, now: float) -> VerifiedDelivery:
    key = standard_webhooks_key(secret)
    message_id = _message_id(headers, "webhook-id", "webhook-id")
    raw_timestamp = _header(headers, "webhook-timestamp", "webhook-timestamp")
    if not (raw_timestamp.isascii() and raw_timestamp.isdigit() and len(raw_timestamp) <= 12):
        raise SignatureRefused("timestamp", "the webhook-timestamp header is not a number of seconds since 1970")
    timestamp = int(raw_timestamp)
    if abs(now - timestamp) > TIMESTAMP_TOLERANCE_SECONDS:
        raise SignatureRefused(
            "timestamp",
            f"the webhook-timestamp is more than {TIMESTAMP_TOLERANCE_SECONDS // 60} minutes from the server's "
            "clock: the message is too old (or the sender's clock is wrong)",
        )
    content = f"{message_id}.{timestamp}.".encode() + body
    expected = _hmac(key, content)
    if not _any_matches(expected, _standard_signatures(_header(headers, "webhook-signature", "webhook-signature"))):
        raise SignatureRefused("signature", "no v1 signature in webhook-signature matches the body")
    return VerifiedDelivery(message_id=message_id, timestamp=timestamp)


def _standard_signatures(value: str) -> list[bytes]:
    found = []
    for entry in value.split(" ", MAX_SIGNATURES)[:MAX_SIGNATURES]:
        version, _, encoded = entry.partition(",")
        if version != "v1":
            continue  # v1a (asymmetric) and unknown versions are not ours to check
        try:
            found.append(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            continue
    return found


def _any_matches(expected: bytes, candidates: list[bytes]) -> bool:
    matched = False
    for candidate in candidates:
        # Every candidate compared, in constant time each: timing tells nothing.
        matched = hmac.compare_digest(expected, candidate) or matched
    return matched


# --------------------------------------------------------------------------- github


def sign_github(secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value GitHub sends."""
    return "sha256=" + _hmac(secret.encode("utf-8"), body).hex()


def _github(secret: str, headers: Mapping[str, str], body: bytes) -> VerifiedDelivery:
    if not secret:
        raise SignatureRefused("secret", "the trigger's signing secret is empty")
    presented = _header(headers, "x-hub-signature-256", "X-Hub-Signature-256")
    message_id = _message_id(headers, "x-github-delivery", "X-GitHub-Delivery")
    algorithm, _, digest = presented.partition("=")
    candidates = [_hex(digest)] if algorithm == "sha256" else []
    if not _any_matches(_hmac(secret.encode("utf-8"), body), [c for c in candidates if c is not None]):
        raise SignatureRefused("signature", "X-Hub-Signature-256 does not match the body (expected sha256=<hex>)")
    return VerifiedDelivery(message_id=message_id, timestamp=None)


def _hex(text: str) -> bytes | None:
    try:
        return bytes.fromhex(text)
    except ValueError:
        return None


# --------------------------------------------------------------------------- plain HMAC-SHA256


def _plain_hmac(secret: str, header: str, headers: Mapping[str, str], body: bytes) -> VerifiedDelivery:
    if not secret:
        raise SignatureRefused("secret", "the trigger's signing secret is empty")
    presented = _header(headers, header, header)
    value = presented[len("sha256=") :] if presented.lower().startswith("sha256=") else presented
    candidates = [c for c in (_hex(value), _base64(value)) if c is not None]
    expected = _hmac(secret.encode("utf-8"), body)
    if not _any_matches(expected, candidates):
        raise SignatureRefused("signature", f"the {header} header does not match the body (HMAC-SHA256, hex or base64)")
    # No sender id: the (deterministic) signature names the message.
    return VerifiedDelivery(message_id="hmac:" + expected.hex(), timestamp=None)


def _base64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None

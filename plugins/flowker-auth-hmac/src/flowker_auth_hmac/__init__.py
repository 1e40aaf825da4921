"""``hmac``: HMAC-SHA256 request signing for Flowker executors.

Each request gets three headers (names configurable):

* ``X-Key-Id``: the configured ``key_id``, so the server knows which secret to use;
* ``X-Timestamp``: Unix seconds when the request was signed;
* ``X-Signature``: ``hex(HMAC-SHA256(secret, string_to_sign))`` where ``string_to_sign`` is
  the four lines ``METHOD``, ``path?query`` (as sent on the wire), ``timestamp`` and
  ``hex(SHA-256(body))`` joined by ``\\n``.

A server checks it with :func:`verify_signature`. Registered with Flowker through the
``flowker`` entry-point group (see this distribution's ``pyproject.toml``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from typing import Callable
from urllib.parse import urlsplit

from requests.auth import AuthBase

from flowker import hookimpl
from flowker.auth.base import AuthContext, AuthType
from flowker.errors import AuthTypeError

__version__ = "0.1.0"

DEFAULT_SIGNATURE_HEADER = "X-Signature"
DEFAULT_TIMESTAMP_HEADER = "X-Timestamp"
DEFAULT_KEY_ID_HEADER = "X-Key-Id"
DEFAULT_MAX_SKEW_SECONDS = 300
_HEADER_NAME = {"type": "string", "minLength": 1, "maxLength": 100, "pattern": "^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"}


def body_digest(body: bytes | str | None) -> str:
    if body is None:
        body = b""
    if isinstance(body, str):
        body = body.encode("utf-8")
    return hashlib.sha256(body).hexdigest()


def string_to_sign(method: str, path_and_query: str, timestamp: str, body: bytes | str | None) -> bytes:
    """The exact bytes that are signed."""
    return "\n".join([method.upper(), path_and_query or "/", timestamp, body_digest(body)]).encode("utf-8")


def sign(secret: bytes, method: str, path_and_query: str, timestamp: str, body: bytes | str | None) -> str:
    return hmac.new(secret, string_to_sign(method, path_and_query, timestamp, body), hashlib.sha256).hexdigest()


def verify_signature(
    secret: bytes,
    method: str,
    path_and_query: str,
    timestamp: str,
    body: bytes | str | None,
    signature: str,
    *,
    now: float | None = None,
    max_skew: float = DEFAULT_MAX_SKEW_SECONDS,
) -> bool:
    """Server side: whether ``signature`` is right and ``timestamp`` recent (constant time)."""
    try:
        signed_at = int(timestamp)
    except (TypeError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - signed_at) > max_skew:
        return False
    expected = sign(secret, method, path_and_query, timestamp, body)
    return hmac.compare_digest(expected, str(signature or ""))


def decode_secret(secret: str, encoding: str) -> bytes:
    if encoding == "base64":
        return base64.b64decode(secret, validate=True)
    if encoding == "hex":
        return bytes.fromhex(secret)
    return secret.encode("utf-8")


class HmacSigner(AuthBase):
    """Signs each request; the repr never shows the secret."""

    def __init__(
        self,
        key_id: str,
        secret: bytes,
        *,
        signature_header: str = DEFAULT_SIGNATURE_HEADER,
        timestamp_header: str = DEFAULT_TIMESTAMP_HEADER,
        key_id_header: str = DEFAULT_KEY_ID_HEADER,
        clock: Callable[[], float] = time.time,
    ):
        self._key_id = key_id
        self._secret = secret
        self._signature_header = signature_header
        self._timestamp_header = timestamp_header
        self._key_id_header = key_id_header
        self._clock = clock

    def __call__(self, request):
        body = request.body
        if body is not None and not isinstance(body, (bytes, str)):
            raise AuthTypeError("hmac auth cannot sign a streamed request body")
        parts = urlsplit(request.url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        timestamp = str(int(self._clock()))
        request.headers[self._key_id_header] = self._key_id
        request.headers[self._timestamp_header] = timestamp
        request.headers[self._signature_header] = sign(self._secret, request.method, path, timestamp, body)
        return request

    def __repr__(self) -> str:
        return f"<HmacSigner key_id={self._key_id!r} secret=****>"


class HmacAuth(AuthType):
    name = "hmac"
    description = (
        "HMAC-SHA256 request signing: method, path and query, timestamp and body SHA-256 "
        "signed into X-Signature, with X-Timestamp and X-Key-Id."
    )
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["key_id", "secret"],
        "properties": {
            "key_id": {"type": "string", "minLength": 1, "maxLength": 256},
            "secret": {"type": "string", "minLength": 16, "maxLength": 4096, "writeOnly": True},
            "secret_encoding": {"enum": ["utf-8", "base64", "hex"], "default": "utf-8"},
            "signature_header": {**_HEADER_NAME, "default": DEFAULT_SIGNATURE_HEADER},
            "timestamp_header": {**_HEADER_NAME, "default": DEFAULT_TIMESTAMP_HEADER},
            "key_id_header": {**_HEADER_NAME, "default": DEFAULT_KEY_ID_HEADER},
        },
    }

    # What Flowker needs to know about the config, declared rather than guessed.
    secret_fields = ("secret",)
    url_fields = ()

    def credential_headers(self, config):
        """The three headers it sets (masked in logs, dropped on a redirect to another origin)."""
        names = (
            config.get("key_id_header", DEFAULT_KEY_ID_HEADER),
            config.get("timestamp_header", DEFAULT_TIMESTAMP_HEADER),
            config.get("signature_header", DEFAULT_SIGNATURE_HEADER),
        )
        return tuple(name for name in names if isinstance(name, str))

    def build(self, config: dict, context: AuthContext) -> AuthBase:
        encoding = config.get("secret_encoding", "utf-8")
        try:
            secret = decode_secret(config["secret"], encoding)
        except (ValueError, binascii.Error):
            # The message names the field and encoding, never the value.
            raise AuthTypeError(f"hmac: 'secret' is not valid {encoding}") from None
        return HmacSigner(
            config["key_id"],
            secret,
            signature_header=config.get("signature_header", DEFAULT_SIGNATURE_HEADER),
            timestamp_header=config.get("timestamp_header", DEFAULT_TIMESTAMP_HEADER),
            key_id_header=config.get("key_id_header", DEFAULT_KEY_ID_HEADER),
        )


@hookimpl
def flowker_register_auth_types(registry):
    registry.register_auth_type(HmacAuth())


__all__ = ["HmacAuth", "HmacSigner", "sign", "string_to_sign", "verify_signature", "body_digest"]

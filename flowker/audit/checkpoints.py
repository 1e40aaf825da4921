"""Signed checkpoints: an Ed25519 signature over "the chain had head hash H at sequence S".

A checkpoint's signed statement is the RFC 8785 canonical JSON of::

    {"createdAt", "entryCount", "headHash", "interval", "keyId", "previousCheckpointHash",
     "sequence", "type": "flowker.audit.checkpoint", "v": 2}

Checkpoints form a chain of their own: ``previousCheckpointHash`` is the
:func:`checkpoint_hash` (sha256 of the signed statement text) of the checkpoint before it
(``GENESIS_HASH`` for the first), and ``entryCount`` the number of entries it covers (equal
to its sequence). Version-1 statements (written before checkpoints were chained) carry
neither and are still accepted; the first version-2 checkpoint after them names the last
of them.

``interval`` is the promise the signer makes: the next checkpoint comes at most that many
entries later (0: no promise, an on-demand checkpoint without automatic ones). Because
every hash covers everything before it, one checkpoint vouches for the whole chain up to
its sequence. Without the private key nobody can produce a new one, so a rewritten chain
(new hashes) no longer matches the signed head hashes, and a truncated tail leaves
checkpoints pointing past the end, or (if they are deleted too) a head further from the
last checkpoint than its interval allows.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Mapping

import rfc8785

from flowker.errors import ConfigurationError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

STATEMENT_TYPE = "flowker.audit.checkpoint"
STATEMENT_VERSION = 2
STATEMENT_VERSIONS = (1, 2)  # accepted when verifying
GENESIS_CHECKPOINT_HASH = "0" * 64  # what the first checkpoint names as its predecessor


@dataclass(frozen=True)
class Checkpoint:
    sequence: int
    head_hash: str
    key_id: str
    created_at: str
    statement: str
    signature: str
    # None for version-1 checkpoints (written before checkpoints were chained).
    previous_checkpoint_hash: str | None = None
    entry_count: int | None = None

    @classmethod
    def from_row(cls, row: tuple) -> "Checkpoint":
        return cls(*row)

    def to_row(self) -> tuple:
        return (
            self.sequence,
            self.head_hash,
            self.key_id,
            self.created_at,
            self.statement,
            self.signature,
            self.previous_checkpoint_hash,
            self.entry_count,
        )

    @property
    def hash(self) -> str:
        return checkpoint_hash(self.statement)

    def to_dict(self) -> dict:
        return {
            "sequence": self.sequence,
            "headHash": self.head_hash,
            "keyId": self.key_id,
            "createdAt": self.created_at,
            "statement": self.statement,
            "signature": self.signature,
            "previousCheckpointHash": self.previous_checkpoint_hash,
            "entryCount": self.entry_count,
        }

    @classmethod
    def from_dict(cls, record: Mapping) -> Checkpoint:
        """The inverse of :meth:`to_dict` (KeyError when a required field is absent)."""
        return cls(
            record["sequence"],
            record["headHash"],
            record["keyId"],
            record["createdAt"],
            record["statement"],
            record["signature"],
            record.get("previousCheckpointHash"),
            record.get("entryCount"),
        )


def checkpoint_hash(statement: str) -> str:
    """What the next checkpoint names as its predecessor: sha256 of the signed statement."""
    return hashlib.sha256(statement.encode("utf-8")).hexdigest()


def _read_key_text(value: str, what: str) -> bytes:
    text = value.strip()
    if text.startswith("-----BEGIN"):
        return text.encode("ascii", "replace")
    try:
        with open(os.path.expanduser(text), "rb") as handle:
            return handle.read(65536)
    except OSError as exc:
        # The value is a path here (PEM text was handled above), so naming it leaks nothing.
        raise ConfigurationError(f"cannot read the {what} file {text!r}: {exc.strerror}") from None


def load_signing_key(value: str):
    """An Ed25519 private key from PEM text or the path of a PEM file."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    data = _read_key_text(value, "audit signing key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise ConfigurationError(
            "FLOWKER_AUDIT_SIGNING_KEY is not an unencrypted Ed25519 private key in PEM form"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigurationError("FLOWKER_AUDIT_SIGNING_KEY must be an Ed25519 key")
    return key


def load_public_key(value: str):
    """An Ed25519 public key from PEM text or a PEM file (a private key is accepted too)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

    data = _read_key_text(value, "public key")
    try:
        key: object = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            raise ConfigurationError("the public key is not an Ed25519 key in PEM form") from None
    if isinstance(key, Ed25519PrivateKey):
        key = key.public_key()
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigurationError("the public key must be an Ed25519 key")
    return key


def public_key_of(key):
    """The public half of a private key; a public key is returned as it is."""
    return key.public_key() if hasattr(key, "sign") else key


def key_id(key) -> str:
    """First 16 hex digits of sha256 of the raw 32-byte public key."""
    from cryptography.hazmat.primitives import serialization

    raw = public_key_of(key).public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_key_pem(key) -> str:
    from cryptography.hazmat.primitives import serialization

    return (
        public_key_of(key)
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


def private_key_pem(key) -> str:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


def generate_signing_key():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate()


def keys_by_id(keys: Iterable) -> dict[str, Ed25519PublicKey]:
    return {key_id(key): public_key_of(key) for key in keys}


def sign_document(signing_key, document: dict) -> tuple[str, str]:
    """(canonical statement text, base64 Ed25519 signature) for ``document``."""
    statement = rfc8785.dumps(document)
    return statement.decode("utf-8"), base64.b64encode(signing_key.sign(statement)).decode("ascii")


def signature_problem(
    public_keys: Mapping[str, Ed25519PublicKey], kid: str, statement: str, signature: str
) -> str | None:
    """None when ``signature`` is a valid signature of ``statement`` by trusted key ``kid``."""
    from cryptography.exceptions import InvalidSignature

    key = public_keys.get(kid)
    if key is None:
        return f"signed by key {kid}, which is not a trusted public key"
    try:
        key.verify(base64.b64decode(signature, validate=True), statement.encode("utf-8"))
    except (binascii.Error, ValueError, TypeError, InvalidSignature):
        return "the signature is invalid"
    return None


def sign(
    signing_key,
    *,
    sequence: int,
    head_hash: str,
    interval: int,
    created_at: str,
    previous_checkpoint_hash: str = GENESIS_CHECKPOINT_HASH,
) -> Checkpoint:
    """A checkpoint for (sequence, head_hash), following the checkpoint whose
    :func:`checkpoint_hash` is ``previous_checkpoint_hash``, signed with ``signing_key``."""
    kid = key_id(signing_key)
    statement, signature = sign_document(
        signing_key,
        {
            "createdAt": created_at,
            "entryCount": int(sequence),
            "headHash": head_hash,
            "interval": int(interval),
            "keyId": kid,
            "previousCheckpointHash": previous_checkpoint_hash,
            "sequence": int(sequence),
            "type": STATEMENT_TYPE,
            "v": STATEMENT_VERSION,
        },
    )
    return Checkpoint(
        sequence, head_hash, kid, created_at, statement, signature, previous_checkpoint_hash, int(sequence)
    )


def statement_fields(checkpoint: Checkpoint) -> dict | None:
    """The parsed statement, or None when it is not a well-formed version-1 statement."""
    import json

    try:
        fields = json.loads(checkpoint.statement)
    except ValueError:
        return None
    if (
        not isinstance(fields, dict)
        or fields.get("type") != STATEMENT_TYPE
        or fields.get("v") not in STATEMENT_VERSIONS
    ):
        return None
    if not isinstance(fields.get("sequence"), int) or not isinstance(fields.get("interval"), int):
        return None
    if fields["v"] >= 2 and (
        not isinstance(fields.get("entryCount"), int) or not isinstance(fields.get("previousCheckpointHash"), str)
    ):
        return None
    return fields


def check(checkpoint: Checkpoint, public_keys: Mapping[str, Ed25519PublicKey] | None) -> tuple[str | None, int]:
    """(problem or None, promised interval) for one checkpoint.

    Without public keys only the statement's agreement with the stored columns is checked.
    """
    fields = statement_fields(checkpoint)
    where = f"checkpoint at sequence {checkpoint.sequence}"
    if fields is None:
        return f"{where}: its signed statement is malformed", 0
    if (
        fields["sequence"],
        fields.get("headHash"),
        fields.get("keyId"),
        fields.get("createdAt"),
        fields.get("previousCheckpointHash"),
        fields.get("entryCount"),
    ) != (
        checkpoint.sequence,
        checkpoint.head_hash,
        checkpoint.key_id,
        checkpoint.created_at,
        checkpoint.previous_checkpoint_hash,
        checkpoint.entry_count,
    ):
        return f"{where}: the stored columns differ from the signed statement", 0
    if fields["v"] >= 2 and fields["entryCount"] != fields["sequence"]:
        return f"{where}: its entry count {fields['entryCount']} is not its sequence", 0
    if public_keys is not None:
        problem = signature_problem(public_keys, checkpoint.key_id, checkpoint.statement, checkpoint.signature)
        if problem:
            return f"{where}: {problem}", 0
    return None, max(0, fields["interval"])

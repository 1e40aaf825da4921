"""Exactly which bytes an audit entry hashes.

An entry's hashed document (format version 1) is::

    {"entry":   {"action", "actor": {"id", "ipAddress", "type"}, "eventId", "eventType",
                 "resourceId", "resourceType", "result", "sequence", "timestamp"},
     "payload": {"context", "metadata"},
     "v": 1}

serialized as RFC 8785 canonical JSON (``rfc8785``) and stored, as UTF-8 text, in
``audit_entry.canonical``. Then::

    hash = sha256(ascii(previous_hash_hex) || utf8(canonical)).hexdigest()

where ``previous_hash_hex`` is the 64-character lower-case hex hash of the entry before,
or :data:`GENESIS_HASH` (64 zeros) for sequence 1. The sequence number is inside the
hashed document, so reordering entries breaks the chain too.

The layout is deliberate: canonical JSON sorts keys, so every column the database indexes
(``entry``) comes first, in a fixed order, before any free-form JSON (``payload``). The
verifier can therefore check "the columns equal the hashed payload" by comparing a prefix
built from the columns (:data:`COLUMN_PREFIX_TEMPLATE`) instead of parsing every document.

No floats are hashed: floats and ``Decimal`` values in context and metadata become decimal
strings (``12.5`` -> ``"12.5"``, never an exponent), integers beyond +/-(2**53 - 1) become
strings, datetimes become RFC 3339 UTC strings. Timestamps are server-assigned UTC with
exactly millisecond precision (``2026-11-29T12:00:00.123Z``).
"""

from __future__ import annotations

import datetime as _dt
import decimal
import enum
import hashlib
import math
import uuid
from typing import Any, Mapping

import rfc8785

FORMAT_VERSION = 1
GENESIS_HASH = "0" * 64
MAX_CANONICAL_BYTES = 1024 * 1024
MAX_DEPTH = 64

_SAFE_INT = 2**53 - 1

# The canonical text of every entry starts with exactly this, filled in from the columns
# (RFC 8785 orders the keys so; values without '"', '\\' or control characters need no
# escaping, so for them the JSON string is the value between quotes).
COLUMN_PREFIX_TEMPLATE = (
    '{{"entry":{{"action":"{action}","actor":{{"id":"{actor_id}","ipAddress":"{actor_ip}",'
    '"type":"{actor_type}"}},"eventId":"{event_id}","eventType":"{event_type}",'
    '"resourceId":"{resource_id}","resourceType":"{resource_type}","result":"{result}",'
    '"sequence":{sequence},"timestamp":"{timestamp}"}},"payload":{{'
)

# The columns an entry's document is checked against, in the order of :func:`entry_columns`.
COLUMN_NAMES = (
    "sequence", "event_id", "event_type", "action", "result", "resource_type",
    "resource_id", "actor_type", "actor_id", "actor_ip", "timestamp",
)


class NotCanonicalizable(ValueError):
    """A context or metadata value cannot be hashed deterministically (names the path only)."""


def format_timestamp(moment: _dt.datetime) -> str:
    """RFC 3339 UTC with exactly three fractional digits; naive datetimes are taken as UTC."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(_dt.timezone.utc).replace(tzinfo=None)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def now_timestamp() -> str:
    return format_timestamp(_dt.datetime.now(_dt.timezone.utc))


def _decimal_string(value: decimal.Decimal) -> str:
    if value.is_nan():
        return "NaN"
    if value.is_infinite():
        return "-Infinity" if value < 0 else "Infinity"
    text = format(value, "f")
    return "0" if text in ("-0", "0") else text


def float_to_string(value: float) -> str:
    """The shortest round-tripping decimal of ``value``, positional (no exponent)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "-Infinity" if value < 0 else "Infinity"
    return _decimal_string(decimal.Decimal(repr(value)))


def to_hashable(value: Any, path: str = "$", depth: int = 0) -> Any:
    """A deep copy of ``value`` made only of dict/list/str/int/bool/None, deterministically.

    Raises :class:`NotCanonicalizable` (naming the path, never the value) for types with no
    single obvious JSON form (bytes, sets, arbitrary objects) and for non-string keys that
    are not ints or enums.
    """
    if depth > MAX_DEPTH:
        raise NotCanonicalizable(f"{path} is nested more than {MAX_DEPTH} levels deep")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, enum.Enum):
        return to_hashable(value.value, path, depth + 1)
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise NotCanonicalizable(f"{path} is not valid Unicode text") from None
        return value
    if isinstance(value, int):
        return value if -_SAFE_INT <= value <= _SAFE_INT else str(value)
    if isinstance(value, float):
        return float_to_string(value)
    if isinstance(value, decimal.Decimal):
        return _decimal_string(value)
    if isinstance(value, _dt.datetime):
        return format_timestamp(value)
    if isinstance(value, _dt.date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Mapping):
        result: dict[str, Any] = {}
        for key, item in value.items():
            if isinstance(key, enum.Enum):
                key = key.value
            if isinstance(key, bool) or not isinstance(key, (str, int)):
                raise NotCanonicalizable(f"{path} has a key of type {type(key).__name__}")
            name = str(key)
            if name in result:
                raise NotCanonicalizable(f"{path} has two keys that both read {name!r}")
            result[name] = to_hashable(item, f"{path}.{name}", depth + 1)
        return result
    if isinstance(value, (list, tuple)):
        return [to_hashable(item, f"{path}[{index}]", depth + 1) for index, item in enumerate(value)]
    raise NotCanonicalizable(f"{path} has a value of type {type(value).__name__}, which is not hashed")


def build_document(
    *, sequence: int, event_id: str, event_type: str, action: str, result: str,
    resource_type: str, resource_id: str, actor_type: str, actor_id: str, actor_ip: str,
    timestamp: str, context: dict, metadata: dict,
) -> dict:
    """The document that is hashed; ``context``/``metadata`` must already be hashable."""
    return {
        "entry": {
            "action": action,
            "actor": {"id": actor_id, "ipAddress": actor_ip, "type": actor_type},
            "eventId": event_id,
            "eventType": event_type,
            "resourceId": resource_id,
            "resourceType": resource_type,
            "result": result,
            "sequence": sequence,
            "timestamp": timestamp,
        },
        "payload": {"context": context, "metadata": metadata},
        "v": FORMAT_VERSION,
    }


def canonical_text(document: dict) -> str:
    try:
        data = rfc8785.dumps(document)
    except rfc8785.CanonicalizationError as exc:
        raise NotCanonicalizable(f"the entry cannot be canonicalized: {type(exc).__name__}") from None
    if len(data) > MAX_CANONICAL_BYTES:
        raise NotCanonicalizable(f"the entry is {len(data)} bytes, more than {MAX_CANONICAL_BYTES}")
    return data.decode("utf-8")


def chain_hash(previous_hash: str, canonical: str) -> str:
    """``sha256(previous_hash || canonical)`` as lower-case hex."""
    return hashlib.sha256((previous_hash + canonical).encode("utf-8")).hexdigest()


def document_columns(document: Mapping) -> tuple:
    """The column values a parsed document implies, in :data:`COLUMN_NAMES` order."""
    entry = document["entry"]
    actor = entry["actor"]
    return (
        entry["sequence"], entry["eventId"], entry["eventType"], entry["action"], entry["result"],
        entry["resourceType"], entry["resourceId"], actor["type"], actor["id"], actor["ipAddress"],
        entry["timestamp"],
    )

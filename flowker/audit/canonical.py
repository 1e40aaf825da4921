"""Exactly which bytes an audit entry hashes.

An entry's hashed document (format version 1) is::

    {"entry":   {"action", "actor": {"id", "ipAddress", "type"}, "eventId", "eventType",
                 "resourceId", "resourceType", "result", "sequence", "timestamp"},
     "payload": {"context", "metadata"},
     "v": 1}

serialized as RFC 8785 canonical JSON (``rfc8785``, or the standard encoder where it
provably gives the same text, see :func:`canonical_text`) and stored, as UTF-8 text, in
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
import json
import math
import re
import time
import uuid
from collections.abc import Mapping
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]  # C accelerator: not in typeshed
from typing import Any, Callable

import rfc8785

# Event ids are UUIDv7s (RFC 9562), like every id Flowker makes.
from flowker.ids import uuid7 as new_event_id, uuid7s as new_event_ids  # noqa: F401 (re-exported)

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
    "sequence",
    "event_id",
    "event_type",
    "action",
    "result",
    "resource_type",
    "resource_id",
    "actor_type",
    "actor_id",
    "actor_ip",
    "timestamp",
)


class NotCanonicalizable(ValueError):
    """A context or metadata value cannot be hashed deterministically (names the path only)."""


def format_timestamp(moment: _dt.datetime) -> str:
    """RFC 3339 UTC with exactly three fractional digits; naive datetimes are taken as UTC."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(_dt.timezone.utc).replace(tzinfo=None)
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:"
        f"{moment.minute:02d}:{moment.second:02d}.{moment.microsecond // 1000:03d}Z"
    )


_SECOND_TEXT = (-1, "")  # (Unix second, its text): now_timestamp runs under the append lock


def now_timestamp() -> str:
    """:func:`format_timestamp` of the current UTC time (truncated to the millisecond)."""
    global _SECOND_TEXT
    seconds, nanoseconds = divmod(time.time_ns(), 1_000_000_000)
    cached = _SECOND_TEXT
    if cached[0] != seconds:
        cached = _SECOND_TEXT = (seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)))
    return f"{cached[1]}.{nanoseconds // 1_000_000:03d}Z"


def _decimal_string(value: decimal.Decimal) -> str:
    if value.is_nan():
        return "NaN"
    if value.is_infinite():
        return "-Infinity" if value < 0 else "Infinity"
    text = format(value, "f")
    return "0" if text in ("-0", "0") else text


def float_to_string(value: float) -> str:
    """The shortest round-tripping decimal of ``value``, positional (no exponent)."""
    if type(value) is float:
        text = repr(value)
        # repr is already the positional shortest form unless it has an exponent or is
        # nan/inf (Decimal(text) formatted "f" gives back the same digits).
        if "e" not in text and "n" not in text:
            return text
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "-Infinity" if value < 0 else "Infinity"
    return _decimal_string(decimal.Decimal(repr(value)))


class _Problem(Exception):
    """A value that cannot be hashed; ``parts`` collects its path while unwinding."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason
        self.parts: list[str] = []


def to_hashable(
    value: Any,
    path: str = "$",
    *,
    secret_key: Callable[[str], bool] | None = None,
    mask: Callable[[Any], Any] | None = None,
) -> Any:
    """A deep copy of ``value`` made only of dict/list/str/int/bool/None, deterministically.

    Raises :class:`NotCanonicalizable` (naming the path, never the value) for types with no
    single obvious JSON form (bytes, sets, arbitrary objects) and for non-string keys that
    are not ints or enums.

    With ``secret_key`` and ``mask`` the copy is redacted in the same walk: under every key
    of every dict of the copy for which ``secret_key(key)`` is true, the converted value is
    replaced by ``mask(converted value)`` (which is not walked further). The result, and
    every error, is exactly that of redacting the unredacted copy afterwards.
    """
    try:
        return _convert(value, 0, secret_key if mask is not None else None, mask)
    except _Problem as problem:
        raise NotCanonicalizable(f"{path}{''.join(reversed(problem.parts))} {problem.reason}") from None


def _check_text(value: str) -> None:
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _Problem("is not valid Unicode text") from None


def _convert(value: Any, depth: int, secret_key, mask) -> Any:
    if depth > MAX_DEPTH:
        raise _Problem(f"is nested more than {MAX_DEPTH} levels deep")
    kind = type(value)
    if kind is str:
        _check_text(value)
        return value
    if kind is int:
        return value if -_SAFE_INT <= value <= _SAFE_INT else str(value)
    if value is None or kind is bool:
        return value
    if kind is dict or isinstance(value, Mapping):
        return _convert_mapping(value, depth, secret_key, mask)
    if kind is list or kind is tuple:
        return _convert_items(value, depth, secret_key, mask)
    if isinstance(value, enum.Enum):
        return _convert(value.value, depth + 1, secret_key, mask)
    if isinstance(value, str):
        return _convert(str(value), depth, secret_key, mask)
    if isinstance(value, int):
        return _convert(int(value), depth, secret_key, mask)
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
    if isinstance(value, (list, tuple)):
        return _convert(list(value), depth, secret_key, mask)
    raise _Problem(f"has a value of type {type(value).__name__}, which is not hashed")


# The loops below convert plain str/int/float/bool/None children themselves (what _convert would
# do, minus a call per leaf: these walks run over every audit payload). Below MAX_DEPTH
# only: a child deeper than that is refused by _convert.


def _convert_mapping(value: Mapping, depth: int, secret_key, mask) -> dict:
    result: dict[str, Any] = {}
    leaves = depth < MAX_DEPTH
    for key, item in value.items():
        if type(key) is not str:
            if isinstance(key, enum.Enum):
                key = key.value
            if isinstance(key, bool) or not isinstance(key, (str, int)):
                raise _Problem(f"has a key of type {type(key).__name__}")
            key = str(key)
        if key in result:
            raise _Problem(f"has two keys that both read {key!r}")
        try:
            if secret_key is not None and secret_key(key):
                # Converted in full (its errors count), then masked as a whole, unredacted inside.
                result[key] = mask(_convert(item, depth + 1, None, None))
                continue
            kind = type(item)
            if kind is str and leaves:
                _check_text(item)
            elif kind is int and leaves:
                if not -_SAFE_INT <= item <= _SAFE_INT:
                    item = str(item)
            elif kind is float and leaves:
                item = float_to_string(item)
            elif not (leaves and (item is None or kind is bool)):
                item = _convert(item, depth + 1, secret_key, mask)
        except _Problem as problem:
            problem.parts.append(f".{key}")
            raise
        result[key] = item
    return result


def _convert_items(value, depth: int, secret_key, mask) -> list:
    converted = []
    leaves = depth < MAX_DEPTH
    for index, item in enumerate(value):
        kind = type(item)
        try:
            if kind is str and leaves:
                _check_text(item)
            elif kind is int and leaves:
                if not -_SAFE_INT <= item <= _SAFE_INT:
                    item = str(item)
            elif kind is float and leaves:
                item = float_to_string(item)
            elif not (leaves and (item is None or kind is bool)):
                item = _convert(item, depth + 1, secret_key, mask)
        except _Problem as problem:
            problem.parts.append(f"[{index}]")
            raise
        converted.append(item)
    return converted


def build_document(
    *,
    sequence: int,
    event_id: str,
    event_type: str,
    action: str,
    result: str,
    resource_type: str,
    resource_id: str,
    actor_type: str,
    actor_id: str,
    actor_ip: str,
    timestamp: str,
    context: dict,
    metadata: dict,
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


# Characters at or above U+E000: where UTF-16 code-unit order (RFC 8785's key order) and
# code-point order (Python's sort) can disagree.
_UTF16_ORDER_MAY_DIFFER = re.compile("[\ue000-\U0010ffff]")


def canonical_text(document: dict) -> str:
    """RFC 8785 canonical JSON of a hashable document (see :func:`to_hashable`).

    For a document without floats and with integers within +/-(2**53 - 1), which
    :func:`to_hashable` guarantees, ``json.dumps`` with sorted keys, no whitespace and no
    ASCII escaping produces exactly the RFC 8785 text (same string escapes, same integer
    form) as long as key order agrees, i.e. no character is at or above U+E000; the C
    encoder is many times faster than ``rfc8785``, which handles every other document.
    The test suite checks both against each other on generated documents.
    """
    return _checked_size(_serialize(document))


def _serialize(document: dict) -> str:
    text = json.dumps(document, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False)
    if _UTF16_ORDER_MAY_DIFFER.search(text):
        try:
            text = rfc8785.dumps(document).decode("utf-8")
        except rfc8785.CanonicalizationError as exc:
            raise NotCanonicalizable(f"the entry cannot be canonicalized: {type(exc).__name__}") from None
    return text


def _checked_size(text: str) -> str:
    size = len(text.encode("utf-8")) if len(text) * 4 > MAX_CANONICAL_BYTES else len(text)
    if size > MAX_CANONICAL_BYTES:
        raise NotCanonicalizable(f"the entry is {size} bytes, more than {MAX_CANONICAL_BYTES}")
    return text


def _unserializable(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# json.dumps(ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False)
# without building an encoder per call (a tree from to_hashable needs no cycle check).
_C_ENCODER = (
    c_make_encoder(None, _unserializable, encode_basestring, None, ":", ",", True, False, False)
    if c_make_encoder is not None
    else None
)


def _json(value: Any) -> str:
    if _C_ENCODER is None:
        return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return "".join(_C_ENCODER(value, 0))


_quote = encode_basestring  # a JSON string, escaped as json.dumps(ensure_ascii=False) escapes it

# Keys are sorted, so "sequence" and "timestamp" are the last two members of "entry", just
# before "payload": an entry's text is head + sequence + timestamp member + tail.
_SEQUENCE_MEMBER = ',"sequence":'
_PLACEHOLDERS = '0,"timestamp":""'
_PLACEHOLDER_MARK = _SEQUENCE_MEMBER + _PLACEHOLDERS + '},"payload":'


def entry_text_parts(
    *,
    event_id: str,
    event_type: str,
    action: str,
    result: str,
    resource_type: str,
    resource_id: str,
    actor_type: str,
    actor_id: str,
    actor_ip: str,
    context: dict,
    metadata: dict,
) -> tuple[str, str]:
    """(head, tail) of an entry's canonical text, everything but its sequence and timestamp.

    So the document can be serialized before the append lock is taken, and only
    :func:`join_entry_text` runs under it. Raises :class:`NotCanonicalizable` as
    :func:`canonical_text` would, except for the size limit, which :func:`join_entry_text`
    checks on the whole text.
    """
    # The entry's members in sorted order (COLUMN_PREFIX_TEMPLATE), strings escaped as
    # json.dumps escapes them; the payload by the same C encoder json.dumps uses.
    head = (
        f'{{"entry":{{"action":{_quote(action)},"actor":{{"id":{_quote(actor_id)},'
        f'"ipAddress":{_quote(actor_ip)},"type":{_quote(actor_type)}}},"eventId":{_quote(event_id)},'
        f'"eventType":{_quote(event_type)},"resourceId":{_quote(resource_id)},'
        f'"resourceType":{_quote(resource_type)},"result":{_quote(result)}{_SEQUENCE_MEMBER}'
    )
    payload = _json({"context": context, "metadata": metadata})
    if head.isascii() and (payload.isascii() or not _UTF16_ORDER_MAY_DIFFER.search(payload)):
        return head, f'}},"payload":{payload},"v":{FORMAT_VERSION}}}'
    # Where rfc8785 may order keys differently: the whole document as canonical_text
    # serializes it, with placeholders (sequence 0, timestamp ""). An integer and a
    # format_timestamp string are ASCII with nothing to escape, so they change neither the
    # encoder chosen nor any other byte. The first mark is the entry's own: a '"' inside
    # a string is escaped, so one after ',' is structural, and the payload comes later.
    text = _serialize(
        build_document(
            sequence=0,
            event_id=event_id,
            event_type=event_type,
            action=action,
            result=result,
            resource_type=resource_type,
            resource_id=resource_id,
            actor_type=actor_type,
            actor_id=actor_id,
            actor_ip=actor_ip,
            timestamp="",
            context=context,
            metadata=metadata,
        )
    )
    split = text.index(_PLACEHOLDER_MARK) + len(_SEQUENCE_MEMBER)
    return text[:split], text[split + len(_PLACEHOLDERS) :]


def join_entry_text(head: str, sequence: int, timestamp: str, tail: str) -> str:
    """``canonical_text(build_document(...))`` from :func:`entry_text_parts`; ``timestamp``
    comes from :func:`format_timestamp`/:func:`now_timestamp`."""
    return _checked_size(f'{head}{sequence},"timestamp":"{timestamp}"{tail}')


def chain_hash(previous_hash: str, canonical: str) -> str:
    """``sha256(previous_hash || canonical)`` as lower-case hex."""
    return hashlib.sha256((previous_hash + canonical).encode("utf-8")).hexdigest()


def document_columns(document: Mapping) -> tuple:
    """The column values a parsed document implies, in :data:`COLUMN_NAMES` order."""
    entry = document["entry"]
    actor = entry["actor"]
    return (
        entry["sequence"],
        entry["eventId"],
        entry["eventType"],
        entry["action"],
        entry["result"],
        entry["resourceType"],
        entry["resourceId"],
        actor["type"],
        actor["id"],
        actor["ipAddress"],
        entry["timestamp"],
    )

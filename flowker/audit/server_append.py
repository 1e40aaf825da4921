"""The audit append on PostgreSQL as one server-side call (migration 10).

The lock is transaction-scoped, so it is held from the moment it is granted until the
transaction commits. Done from the client, an append held it across three round trips
(lock + head read, INSERT, COMMIT; one more for the last checkpoint when checkpoints are
signed). Migration 10's function (:data:`flowker.storage.audit_function.APPEND_FUNCTION_SQL`)
does the part that depends on the head in the database: it takes the lock, reads the
head, fills in sequence numbers, the timestamp and the previous hashes, hashes and
inserts, in one call the caller makes right before COMMIT. The lock is then held for the rest of that call, its reply and the COMMIT.

Everything else is prepared by Python as on SQLite (:class:`flowker.audit.chain.PreparedEntry`:
validation, redaction, and the canonical text as a head and a tail around the sequence and
timestamp, see :func:`flowker.audit.canonical.entry_text_parts`). The function only splices
``head || sequence || ',"timestamp":"' || timestamp || '"' || tail`` exactly as
:func:`flowker.audit.canonical.join_entry_text` does, and hashes
``sha256(convert_to(previous_hash || canonical, 'UTF8'))`` exactly as
:func:`flowker.audit.canonical.chain_hash` does (the server encoding is UTF-8: migration 10
refuses another). The timestamp is the database server's clock, read once the lock is held,
so timestamps follow the chain's order whichever host appends.
"""

from __future__ import annotations

import peewee

from flowker.audit import store
from flowker.audit.canonical import MAX_CANONICAL_BYTES
from flowker.storage.audit_function import FUNCTION_NAME

# The text join_entry_text puts around the sequence, without the timestamp (24 characters).
_JOIN_BYTES = len(',"timestamp":""') + 24
_MAX_SEQUENCE_DIGITS = 19  # a BIGINT

_CALL_SQL = (
    "SELECT first_sequence, entry_timestamp, head_hash_before, entry_hashes, last_checkpoint, locked_at "
    f"FROM {FUNCTION_NAME}({', '.join(['%s'] * 13)})"
)

# The columns passed as arrays, in the function's order (the others depend on the head).
_ARRAY_COLUMNS = store.ENTRY_COLUMNS[store.ENTRY_COLUMNS.index("event_id") : store.ENTRY_COLUMNS.index("actor_ip") + 1]


def fits(prepared) -> bool:
    """Whether the function can append these entries as the client-side path would: none
    was refused while preparing, and none can reach the size limit whatever its sequence
    (the rare rest goes the client-side way, which refuses it exactly as before)."""
    for item in prepared:
        if item.error is not None:
            return False
        size = len(item.head) + len(item.tail)
        if size * 4 + _JOIN_BYTES + _MAX_SEQUENCE_DIGITS > MAX_CANONICAL_BYTES:
            size = len(item.head.encode("utf-8")) + len(item.tail.encode("utf-8"))
            if size + _JOIN_BYTES + _MAX_SEQUENCE_DIGITS > MAX_CANONICAL_BYTES:
                return False
    return True


def append(database: peewee.Database, rows, heads, tails, *, last_checkpoint: bool, timestamp: str | None = None):
    """Append entries in one call: ``rows`` are their field values by column name (those
    that depend on the head not yet filled), ``heads``/``tails`` their
    text parts. Returns (first sequence, timestamp, hash of the head before them, their
    hashes, the last checkpoint's sequence (None unless asked), when the lock was granted).

    ``timestamp`` replaces the server clock's (the fixed test vectors use it)."""
    columns = [[row[name] for row in rows] for name in _ARRAY_COLUMNS]
    return database.execute_sql(_CALL_SQL, (heads, tails, *columns, last_checkpoint, timestamp)).fetchone()

"""The audit append on PostgreSQL as one server-side call (migration 10).

The lock is transaction-scoped, so it is held from the moment it is granted until the
transaction commits. Done from the client, an append held it across three round trips
(lock + head read, INSERT, COMMIT; one more for the last checkpoint when checkpoints are
signed). :data:`APPEND_FUNCTION_SQL` does the part that depends on the head in the
database: it takes the lock, reads the head, fills in sequence numbers, the timestamp
and the previous hashes, hashes and inserts, in one call the caller makes right before
COMMIT. The lock is then held for the rest of that call, its reply and the COMMIT.

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
from flowker.errors import ConfigurationError

FUNCTION_NAME = "flowker_audit_append"

# The text join_entry_text puts around the sequence, without the timestamp (24 characters).
_JOIN_BYTES = len(',"timestamp":""') + 24
_MAX_SEQUENCE_DIGITS = 19  # a BIGINT

# Migration 10's function. Never edit it: a change is a new migration (CREATE OR REPLACE).
APPEND_FUNCTION_SQL = f"""
CREATE OR REPLACE FUNCTION {FUNCTION_NAME}(
    p_heads text[], p_tails text[], p_event_ids text[], p_event_types text[], p_actions text[],
    p_results text[], p_resource_types text[], p_resource_ids text[], p_actor_types text[],
    p_actor_ids text[], p_actor_ips text[], p_last_checkpoint boolean, p_timestamp text,
    OUT first_sequence bigint, OUT entry_timestamp text, OUT head_hash_before text,
    OUT entry_hashes text[], OUT last_checkpoint bigint, OUT locked_at timestamptz)
LANGUAGE plpgsql VOLATILE AS $fn$
#variable_conflict error
DECLARE
    v_count integer := cardinality(p_heads);
    v_sequence bigint;
    v_previous text;
    v_text text;
    v_texts text[] := '{{}}';
    v_previous_hashes text[] := '{{}}';
BEGIN
    PERFORM pg_advisory_xact_lock({store.AUDIT_LOCK_ID});
    locked_at := clock_timestamp();
    -- A statement of a volatile function sees rows committed before it started: after
    -- the lock was granted, so the head is the last committed one.
    SELECT e.sequence, e.hash INTO v_sequence, v_previous
        FROM {store.ENTRY_TABLE} e ORDER BY e.sequence DESC LIMIT 1;
    IF v_sequence IS NULL THEN
        v_sequence := 0;
        v_previous := repeat('0', 64);
    END IF;
    first_sequence := v_sequence + 1;
    head_hash_before := v_previous;
    -- canonical.format_timestamp: UTC, milliseconds truncated, e.g. 2026-11-29T12:00:00.123Z.
    entry_timestamp := coalesce(
        p_timestamp, to_char(locked_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'));
    entry_hashes := '{{}}';
    FOR i IN 1..v_count LOOP
        v_sequence := v_sequence + 1;
        v_text := p_heads[i] || v_sequence::text || ',"timestamp":"' || entry_timestamp || '"' || p_tails[i];
        v_texts[i] := v_text;
        v_previous_hashes[i] := v_previous;
        v_previous := encode(sha256(convert_to(v_previous || v_text, 'UTF8')), 'hex');
        entry_hashes[i] := v_previous;
    END LOOP;
    INSERT INTO {store.ENTRY_TABLE} ({", ".join(store.ENTRY_COLUMNS)})
        SELECT first_sequence - 1 + n, u.event_id, u.event_type, u.action, u.result, u.resource_type,
               u.resource_id, u.actor_type, u.actor_id, u.actor_ip, entry_timestamp, u.canonical,
               u.previous_hash, u.hash
        FROM unnest(p_event_ids, p_event_types, p_actions, p_results, p_resource_types, p_resource_ids,
                    p_actor_types, p_actor_ids, p_actor_ips, v_texts, v_previous_hashes, entry_hashes)
             WITH ORDINALITY AS u(event_id, event_type, action, result, resource_type, resource_id,
                                  actor_type, actor_id, actor_ip, canonical, previous_hash, hash, n);
    IF p_last_checkpoint THEN
        SELECT coalesce(max(c.sequence), 0) INTO last_checkpoint FROM {store.CHECKPOINT_TABLE} c;
    END IF;
END
$fn$
"""

_CALL_SQL = (
    "SELECT first_sequence, entry_timestamp, head_hash_before, entry_hashes, last_checkpoint, locked_at "
    f"FROM {FUNCTION_NAME}({', '.join(['%s'] * 13)})"
)

# The columns passed as arrays, in the function's order (the others depend on the head).
_ARRAY_COLUMNS = store.ENTRY_COLUMNS[store.ENTRY_COLUMNS.index("event_id") : store.ENTRY_COLUMNS.index("actor_ip") + 1]


def install(database: peewee.Database) -> None:
    """Create (or replace) the function (migration 10; PostgreSQL only)."""
    encoding = database.execute_sql("SHOW server_encoding").fetchone()[0]
    if encoding.upper() not in ("UTF8", "UTF-8"):
        # convert_to(..., 'UTF8') and the stored text would no longer be the bytes Python hashes.
        raise ConfigurationError(f"the PostgreSQL database must use the UTF8 encoding, not {encoding}")
    database.execute_sql(APPEND_FUNCTION_SQL)


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

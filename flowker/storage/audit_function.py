"""Migration 10's database function: the PostgreSQL audit append as one server-side call.

The SQL lives in the storage layer with the other migrations; :mod:`flowker.audit.server_append`
calls it and says why it is built so. Its text is literal on purpose: a migration that
has shipped never changes, so a different function is a new migration.
"""

from __future__ import annotations

import peewee

from flowker.errors import ConfigurationError
from flowker.storage.models import AuditCheckpoint, AuditEntry

FUNCTION_NAME = "flowker_audit_append"

# Transaction-scoped PostgreSQL advisory lock that serializes appends ("FlowkAu").
AUDIT_LOCK_ID = 0x466C6F776B4175

_ENTRY_TABLE = AuditEntry._meta.table_name
_CHECKPOINT_TABLE = AuditCheckpoint._meta.table_name

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
    PERFORM pg_advisory_xact_lock({AUDIT_LOCK_ID});
    locked_at := clock_timestamp();
    -- A statement of a volatile function sees rows committed before it started: after
    -- the lock was granted, so the head is the last committed one.
    SELECT e.sequence, e.hash INTO v_sequence, v_previous
        FROM {_ENTRY_TABLE} e ORDER BY e.sequence DESC LIMIT 1;
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
    INSERT INTO {_ENTRY_TABLE} (sequence, event_id, event_type, action, result, resource_type, resource_id, actor_type, actor_id,
                               actor_ip, timestamp, canonical, previous_hash, hash)
        SELECT first_sequence - 1 + n, u.event_id, u.event_type, u.action, u.result, u.resource_type,
               u.resource_id, u.actor_type, u.actor_id, u.actor_ip, entry_timestamp, u.canonical,
               u.previous_hash, u.hash
        FROM unnest(p_event_ids, p_event_types, p_actions, p_results, p_resource_types, p_resource_ids,
                    p_actor_types, p_actor_ids, p_actor_ips, v_texts, v_previous_hashes, entry_hashes)
             WITH ORDINALITY AS u(event_id, event_type, action, result, resource_type, resource_id,
                                  actor_type, actor_id, actor_ip, canonical, previous_hash, hash, n);
    IF p_last_checkpoint THEN
        SELECT coalesce(max(c.sequence), 0) INTO last_checkpoint FROM {_CHECKPOINT_TABLE} c;
    END IF;
END
$fn$
"""


def install(database: peewee.Database) -> None:
    """Create (or replace) the function (migration 10; PostgreSQL only)."""
    encoding = database.execute_sql("SHOW server_encoding").fetchone()[0]
    if encoding.upper() not in ("UTF8", "UTF-8"):
        # convert_to(..., 'UTF8') and the stored text would no longer be the bytes Python hashes.
        raise ConfigurationError(f"the PostgreSQL database must use the UTF8 encoding, not {encoding}")
    database.execute_sql(APPEND_FUNCTION_SQL)

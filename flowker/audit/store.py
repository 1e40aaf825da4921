"""The SQL the audit chain runs, for SQLite and PostgreSQL.

Raw SQL on purpose: appends and verification are the hot paths (thousands of appends and a
million verified rows per second), and raw statements work on any peewee database object
whether or not the models are bound to it.
"""

from __future__ import annotations

import uuid

import peewee

# AUDIT_LOCK_ID: the transaction-scoped advisory lock that serializes appends (re-exported).
from flowker.storage.audit_function import AUDIT_LOCK_ID  # noqa: F401
from flowker.storage.database import database_proxy, is_postgres
from flowker.storage.models import AuditCheckpoint, AuditEntry

ENTRY_TABLE = AuditEntry._meta.table_name
CHECKPOINT_TABLE = AuditCheckpoint._meta.table_name


ENTRY_COLUMNS = (
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
    "canonical",
    "previous_hash",
    "hash",
)
CHECKPOINT_COLUMNS = (
    "sequence",
    "head_hash",
    "key_id",
    "created_at",
    "statement",
    "signature",
    "previous_checkpoint_hash",
    "entry_count",
)


def resolve(database: peewee.Database | peewee.DatabaseProxy | None) -> peewee.Database:
    """The real database behind ``database`` (default: the models' proxy)."""
    database = database if database is not None else database_proxy
    if isinstance(database, peewee.DatabaseProxy):
        if database.obj is None:
            raise RuntimeError("no database is bound: call flowker.storage.database.bind_database() first")
        return database.obj
    return database


def param(database: peewee.Database) -> str:
    return "%s" if is_postgres(database) else "?"


def lock_for_append(database: peewee.Database) -> None:
    """Serialize appenders. SQLite needs nothing more: the write transaction is already
    ``BEGIN IMMEDIATE`` (the database holds the write lock). PostgreSQL: an advisory lock
    released at commit or rollback."""
    if is_postgres(database):
        database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (AUDIT_LOCK_ID,))


def lock_and_head(database: peewee.Database) -> tuple[int, str] | None:
    """:func:`lock_for_append` then :func:`head`. On PostgreSQL both go in one round trip
    (two statements, so the head is read with a snapshot taken after the lock was granted):
    the lock is held until commit, and every round trip under it delays every appender."""
    if not is_postgres(database):
        return head(database)
    return database.execute_sql(
        f"SELECT pg_advisory_xact_lock(%s); SELECT sequence, hash FROM {ENTRY_TABLE} ORDER BY sequence DESC LIMIT 1",
        (AUDIT_LOCK_ID,),
    ).fetchone()


def head(database: peewee.Database) -> tuple[int, str] | None:
    """(sequence, hash) of the last entry, or None for an empty chain."""
    return database.execute_sql(f"SELECT sequence, hash FROM {ENTRY_TABLE} ORDER BY sequence DESC LIMIT 1").fetchone()


def insert_entry(database: peewee.Database, values: tuple) -> None:
    """Insert one entry (values in :data:`ENTRY_COLUMNS` order)."""
    insert_values(database, 1, list(values))


# Rows per INSERT statement: SQLite allows 32766 parameters (14 per row) since 3.32.
_MAX_ROWS_PER_INSERT = 500
_WIDTH = len(ENTRY_COLUMNS)


def _insert_sql(p: str, rows: int) -> str:
    row = f"({', '.join([p] * _WIDTH)})"
    return f"INSERT INTO {ENTRY_TABLE} ({', '.join(ENTRY_COLUMNS)}) VALUES {', '.join([row] * rows)}"


# Statement text by (database class, rows), made once (SQLite's statement cache is keyed by it).
_INSERT_SQL: dict[tuple[type, int], str] = {}


def insert_entries(database: peewee.Database, rows: list[tuple]) -> None:
    """Insert entries in chain order with as few statements as possible (one up to 500 rows)."""
    insert_values(database, len(rows), [value for row in rows for value in row])


def insert_values(database: peewee.Database, rows: int, values: list) -> None:
    """:func:`insert_entries` for ``rows`` rows given as one flat list of values, row after row."""
    if rows > _MAX_ROWS_PER_INSERT:
        step = _MAX_ROWS_PER_INSERT * _WIDTH
        for start in range(0, len(values), step):
            chunk = values[start : start + step]
            insert_values(database, len(chunk) // _WIDTH, chunk)
        return
    key = (type(database), rows)
    sql = _INSERT_SQL.get(key)
    if sql is None:
        sql = _INSERT_SQL[key] = _insert_sql(param(database), rows)
    database.execute_sql(sql, values)


def last_checkpoint_sequence(database: peewee.Database) -> int:
    row = database.execute_sql(f"SELECT MAX(sequence) FROM {CHECKPOINT_TABLE}").fetchone()
    return row[0] or 0 if row else 0


def last_checkpoint_statement(database: peewee.Database) -> str | None:
    """The signed statement of the newest checkpoint (None without one): the next names its hash."""
    row = database.execute_sql(f"SELECT statement FROM {CHECKPOINT_TABLE} ORDER BY sequence DESC LIMIT 1").fetchone()
    return row[0] if row else None


def checkpoint_at(database: peewee.Database, sequence: int) -> tuple | None:
    p = param(database)
    return database.execute_sql(
        f"SELECT {', '.join(CHECKPOINT_COLUMNS)} FROM {CHECKPOINT_TABLE} WHERE sequence = {p}",
        (sequence,),
    ).fetchone()


def insert_checkpoint(database: peewee.Database, values: tuple) -> int:
    p = param(database)
    cursor = database.execute_sql(
        f"INSERT INTO {CHECKPOINT_TABLE} ({', '.join(CHECKPOINT_COLUMNS)}) "
        f"VALUES ({', '.join([p] * len(CHECKPOINT_COLUMNS))}) RETURNING id",
        values,
    )
    return cursor.fetchone()[0]


def all_checkpoints(database: peewee.Database) -> list[tuple]:
    return list(
        database.execute_sql(
            f"SELECT {', '.join(CHECKPOINT_COLUMNS)} FROM {CHECKPOINT_TABLE} ORDER BY sequence"
        ).fetchall()
    )


def max_sequence(database: peewee.Database) -> int:
    row = database.execute_sql(f"SELECT MAX(sequence) FROM {ENTRY_TABLE}").fetchone()
    return (row[0] or 0) if row else 0


def sequence_of_event(database: peewee.Database, event_id: str) -> int | None:
    p = param(database)
    row = database.execute_sql(f"SELECT sequence FROM {ENTRY_TABLE} WHERE event_id = {p}", (event_id,)).fetchone()
    return row[0] if row else None


def event_id_at(database: peewee.Database, sequence: int) -> str | None:
    p = param(database)
    row = database.execute_sql(f"SELECT event_id FROM {ENTRY_TABLE} WHERE sequence = {p}", (sequence,)).fetchone()
    return row[0] if row else None


def entry_row(database: peewee.Database, sequence: int) -> tuple | None:
    """Every column of the entry at ``sequence`` (in :data:`ENTRY_COLUMNS` order)."""
    p = param(database)
    return database.execute_sql(
        f"SELECT {', '.join(ENTRY_COLUMNS)} FROM {ENTRY_TABLE} WHERE sequence = {p}", (sequence,)
    ).fetchone()


# Rows per batch when streaming the chain: small enough that a verify's memory does not
# depend on the chain's length (a batch of 1000 entries is about 1 MB), large enough that
# the per-batch round trip costs little.
STREAM_BATCH = 1000
_LINK_COLUMNS = "sequence, canonical, previous_hash, hash"


def stream_links(database: peewee.Database, up_to: int, page_size: int = STREAM_BATCH):
    """Batches of (sequence, canonical, previous_hash, hash) in sequence order, up to ``up_to``,
    in constant memory.

    PostgreSQL: a server-side cursor (``DECLARE ... CURSOR``, what a psycopg2 named cursor
    is) fetched ``page_size`` rows at a time, inside a transaction of its own (or the
    caller's), so the rows come from one snapshot. SQLite: keyset batches on the primary
    key, each a short statement, so no read transaction stays open (it would hold back WAL
    checkpoints); entries are append-only, so batches read at different moments still form
    one picture of the rows <= ``up_to``.
    """
    p = param(database)
    if is_postgres(database):
        yield from _stream_with_server_cursor(database, up_to, page_size)
        return
    sql = (
        f"SELECT {_LINK_COLUMNS} FROM {ENTRY_TABLE} WHERE sequence > {p} AND sequence <= {p} "
        f"ORDER BY sequence LIMIT {int(page_size)}"
    )
    after = -(2**62)
    while True:
        rows = database.execute_sql(sql, (after, up_to)).fetchall()
        if not rows:
            return
        yield rows
        if len(rows) < page_size:
            return
        after = rows[-1][0]


def _stream_with_server_cursor(database: peewee.Database, up_to: int, page_size: int):
    name = f"flowker_audit_stream_{uuid.uuid4().hex[:12]}"
    with database.atomic():
        database.execute_sql(
            f"DECLARE {name} NO SCROLL CURSOR FOR SELECT {_LINK_COLUMNS} FROM {ENTRY_TABLE} "
            f"WHERE sequence <= %s ORDER BY sequence",
            (up_to,),
        )
        # The cursor ends with the transaction (commit, or rollback on an error).
        while True:
            rows = database.execute_sql(f"FETCH FORWARD {int(page_size)} FROM {name}").fetchall()
            if not rows:
                return
            yield rows


# COLUMN_PREFIX_TEMPLATE as a printf/format() string over the row's columns.
_PREFIX_FORMAT = (
    '{"entry":{"action":"%s","actor":{"id":"%s","ipAddress":"%s","type":"%s"},"eventId":"%s",'
    '"eventType":"%s","resourceId":"%s","resourceType":"%s","result":"%s","sequence":%s,'
    '"timestamp":"%s"},"payload":{'
)
_PREFIX_ARGUMENTS = (
    "action, actor_id, actor_ip, actor_type, event_id, event_type, resource_id, resource_type, "
    "result, sequence, timestamp"
)
_PAYLOAD_BOUNDARY = '},"payload":{'


def column_mismatch_candidates(database: peewee.Database, up_to: int):
    """Sequences whose columns may differ from their hashed document, in order.

    The database compares each document's start with the prefix printed from the row's
    columns (see :data:`flowker.audit.canonical.COLUMN_PREFIX_TEMPLATE`). A row passes if
    that prefix matches and no backslash comes before the payload: then no value needed
    JSON escaping, so equal text means equal values (a quote inside a value would have
    been escaped with a backslash). Every other row is a candidate, which the caller
    checks exactly by parsing its document.
    """
    p = param(database)
    if is_postgres(database):
        # psycopg2 reads %s as a parameter: the format() placeholders are doubled.
        prefix = "format('{}', {})".format(_PREFIX_FORMAT.replace("%s", "%%s"), _PREFIX_ARGUMENTS)
        backslash = "strpos(canonical, chr(92))"
        boundary = f"strpos(canonical, '{_PAYLOAD_BOUNDARY}')"
        starts = f"starts_with(canonical, {prefix})"
    else:
        prefix = "printf('{}', {})".format(_PREFIX_FORMAT, _PREFIX_ARGUMENTS)
        backslash = "instr(canonical, char(92))"
        boundary = f"instr(canonical, '{_PAYLOAD_BOUNDARY}')"
        starts = f"instr(canonical, {prefix}) = 1"
    passes = f"{starts} AND ({backslash} = 0 OR {backslash} > {boundary})"
    cursor = database.execute_sql(
        f"SELECT sequence FROM {ENTRY_TABLE} WHERE sequence <= {p} AND NOT ({passes}) ORDER BY sequence",
        (up_to,),
    )
    while True:
        rows = cursor.fetchmany(1000)
        if not rows:
            return
        for (sequence,) in rows:
            yield sequence

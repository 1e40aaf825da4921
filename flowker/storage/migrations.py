"""Schema migrations: an ordered list, applied under a lock so that several
processes starting at once apply each migration exactly once.
"""

from __future__ import annotations

import time

import peewee

from flowker.storage import audit_function
from flowker.storage.database import connection, exclusive_transaction, is_postgres
from flowker.storage.models import (
    ALL_MODELS,
    ApiKeyRecord,
    AuditCheckpoint,
    AuditEntry,
    CircuitBreakerState,
    Execution,
    ScheduleTick,
    SchemaMigration,
    WebhookDelivery,
    Workflow,
)

# An arbitrary constant: the PostgreSQL advisory lock that serializes migrations.
MIGRATION_LOCK_ID = 0x466C6F776B6572  # "Flowker"

APPEND_ONLY_TABLES = (AuditEntry._meta.table_name, AuditCheckpoint._meta.table_name)


def _create_tables(database: peewee.Database) -> None:
    database.create_tables(ALL_MODELS, safe=True)


def create_append_only_triggers(database: peewee.Database) -> None:
    """UPDATE and DELETE (and TRUNCATE on PostgreSQL) on the audit tables fail.

    Idempotent: existing triggers are kept (SQLite) or recreated (PostgreSQL).
    """
    if is_postgres(database):
        database.execute_sql(
            "CREATE OR REPLACE FUNCTION flowker_refuse_audit_change() RETURNS trigger AS $$ "
            "BEGIN RAISE EXCEPTION 'audit entries are append-only (%% refused on %%)', TG_OP, TG_TABLE_NAME; END; "
            "$$ LANGUAGE plpgsql"
        )
        for table in APPEND_ONLY_TABLES:
            # DROP + CREATE rather than CREATE OR REPLACE TRIGGER, which needs PostgreSQL 14.
            for trigger, timing in (
                (f"{table}_append_only", "BEFORE UPDATE OR DELETE ON {table} FOR EACH ROW"),
                (f"{table}_no_truncate", "BEFORE TRUNCATE ON {table} FOR EACH STATEMENT"),
            ):
                database.execute_sql(f"DROP TRIGGER IF EXISTS {trigger} ON {table}")
                database.execute_sql(
                    f"CREATE TRIGGER {trigger} {timing.format(table=table)} "
                    "EXECUTE FUNCTION flowker_refuse_audit_change()"
                )
    else:
        for table in APPEND_ONLY_TABLES:
            for operation in ("UPDATE", "DELETE"):
                database.execute_sql(
                    f"CREATE TRIGGER IF NOT EXISTS {table}_no_{operation.lower()} "
                    f"BEFORE {operation} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, 'audit entries are append-only ({operation} refused on {table})'); END"
                )


def _initial(database: peewee.Database) -> None:
    _create_tables(database)
    create_append_only_triggers(database)


# Indexes that cost every execution page writes and serve no query (flowker.storage.models).
UNNEEDED_INDEXES = (
    "execution_workflow_id",  # the (workflow_id, idempotency_key) index serves it
    "execution_lease_expires_at",  # the lease sweep finds running rows by status
    "execution_completed_at",  # nothing filters or sorts on it
    "step_result_execution_id",  # the (execution_id, step_number) index serves it
)


def _drop_unneeded_indexes(database: peewee.Database) -> None:
    for name in UNNEEDED_INDEXES:
        database.execute_sql(f'DROP INDEX IF EXISTS "{name}"')


def _create_breaker_state(database: peewee.Database) -> None:
    # A database made by migration 1 after the model was added already has the table.
    database.create_tables([CircuitBreakerState], safe=True)


# Columns added to existing tables after migration 1: (table, column, SQL type). A database
# created since has them already (migration 1 creates the tables from the current models).
ADDED_COLUMNS = (
    (AuditCheckpoint._meta.table_name, "previous_checkpoint_hash", "VARCHAR(64)"),
    (AuditCheckpoint._meta.table_name, "entry_count", "BIGINT"),
)
# Migration 7: the execution's OpenTelemetry trace id (flowker.tracing).
TRACE_ID_COLUMNS = ((Execution._meta.table_name, "trace_id", "VARCHAR(32)"),)
QUEUED_INDEX = "execution_queued"
RETRY_OF_INDEX = "execution_retry_of"
# Migration 8: the execution queue (flowker.queue), resume and retry.
QUEUE_COLUMNS = (
    (Execution._meta.table_name, "queued_at", "TIMESTAMP"),
    (Execution._meta.table_name, "retry_of", "VARCHAR(36)"),
    # A constant default: neither backend rewrites existing rows for it.
    (Execution._meta.table_name, "resumes", "INTEGER NOT NULL DEFAULT 0"),
    (Execution._meta.table_name, "trace_parent", "VARCHAR(55)"),
)


def _add_columns(database: peewee.Database, columns) -> None:
    # ALTER TABLE ... ADD COLUMN (nullable, no default) fires no UPDATE trigger and
    # rewrites no row on either backend; existing rows keep NULL.
    for table, column, sql_type in columns:
        present = {c.name for c in database.get_columns(table)}
        if column not in present:
            database.execute_sql(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}")


def _create_api_keys(database: peewee.Database) -> None:
    # A database made by migration 1 after the model was added already has the table.
    database.create_tables([ApiKeyRecord], safe=True)


def _create_webhook_deliveries(database: peewee.Database) -> None:
    # Signed webhooks' replay ledger; a database made by migration 1 since has it already.
    database.create_tables([WebhookDelivery], safe=True)


def _add_checkpoint_chain_columns(database: peewee.Database) -> None:
    _add_columns(database, ADDED_COLUMNS)  # existing checkpoints keep NULL (version 1)


def _add_execution_trace_id(database: peewee.Database) -> None:
    _add_columns(database, TRACE_ID_COLUMNS)


def _add_execution_queue(database: peewee.Database) -> None:
    _add_columns(database, QUEUE_COLUMNS)
    # Workers claim the oldest queued rows; a partial index holds only those, so runs that
    # start at once (never queued) cost it no write.
    table = Execution._meta.table_name
    database.execute_sql(
        f'CREATE INDEX IF NOT EXISTS "{QUEUED_INDEX}" ON "{table}" ("queued_at", "id") WHERE "status" = \'queued\''
    )
    # A failed execution has at most one retry (two racing requests: one wins, on every
    # backend), and the original finds it (its retriedBy); only retries are in the index.
    database.execute_sql(
        f'CREATE UNIQUE INDEX IF NOT EXISTS "{RETRY_OF_INDEX}" ON "{table}" ("retry_of") WHERE "retry_of" IS NOT NULL'
    )


def _create_audit_append_function(database: peewee.Database) -> None:
    # PostgreSQL appends to the audit chain with one server-side call (flowker.audit.server_append).
    if is_postgres(database):
        audit_function.install(database)


def _create_schedule_ticks(database: peewee.Database) -> None:
    # Schedule ticks fired once (flowker.schedules); a database made by migration 1 since has it.
    database.create_tables([ScheduleTick], safe=True)


# (version, name, function). Append only; never edit a migration that has shipped.
MIGRATIONS = (
    (1, "initial schema with append-only audit tables", _initial),
    (2, "drop indexes no query needs (fewer page writes per execution)", _drop_unneeded_indexes),
    (3, "circuit breaker state shared by every process", _create_breaker_state),
    (4, "chain the audit checkpoints (previous checkpoint hash, entry count)", _add_checkpoint_chain_columns),
    (5, "API keys stored as hashes, with roles and workflow scopes", _create_api_keys),
    (6, "signed webhook messages already accepted (replays refused on every server)", _create_webhook_deliveries),
    (7, "the execution's OpenTelemetry trace id", _add_execution_trace_id),
    (8, "the execution queue (queued_at, retry_of, resumes, trace_parent)", _add_execution_queue),
    (9, "schedule ticks fired, each once across every process (unique workflow and tick)", _create_schedule_ticks),
    (10, "PostgreSQL: the audit append as one server-side call", _create_audit_append_function),
)

LATEST_VERSION = MIGRATIONS[-1][0]


# SQLite: processes migrating a new file at once may find it locked outside the busy
# handler (the first writer switching the journal mode); each waits and tries again.
LOCKED_RETRIES = 20


def upgrade(database: peewee.Database) -> list[int]:
    """Apply pending migrations; returns the versions applied by this call."""
    for attempt in range(LOCKED_RETRIES):
        try:
            return _upgrade_once(database)
        except peewee.OperationalError as exc:
            if "locked" not in str(exc) or attempt == LOCKED_RETRIES - 1:
                raise
            time.sleep(0.1 * (attempt + 1))
    raise AssertionError("unreachable")


def _upgrade_once(database: peewee.Database) -> list[int]:
    applied_now: list[int] = []
    # bind_ctx: the models may not be bound to this database (a CLI, a child process).
    with database.bind_ctx((SchemaMigration, *ALL_MODELS)), connection(database):
        with exclusive_transaction(database, MIGRATION_LOCK_ID):  # one migrator at a time
            database.create_tables([SchemaMigration], safe=True)
            done = {row.version for row in SchemaMigration.select(SchemaMigration.version)}
            for version, name, apply in MIGRATIONS:
                if version in done:
                    continue
                apply(database)
                SchemaMigration.create(version=version, name=name)
                applied_now.append(version)
    return applied_now


def current_version(database: peewee.Database) -> int:
    with database.bind_ctx((SchemaMigration,)), connection(database):
        if not database.table_exists(SchemaMigration._meta.table_name):
            return 0
        latest = SchemaMigration.select(peewee.fn.MAX(SchemaMigration.version)).scalar()
        return latest or 0


def schema_exists(database: peewee.Database) -> bool:
    """Whether the tables were created (a dry run reads a database it must not migrate)."""
    return database.table_exists(Workflow._meta.table_name)

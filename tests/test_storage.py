"""Models and migrations on both backends."""

from __future__ import annotations

import multiprocessing
import os

import peewee
import pytest

from flowker.storage import models
from flowker.storage.database import open_database, write_transaction
from flowker.storage.migrations import LATEST_VERSION, MIGRATIONS, current_version, upgrade


def test_migrations_create_every_table_and_record_the_version(database):
    for model in models.ALL_MODELS:
        assert database.table_exists(model._meta.table_name), model.__name__
    assert current_version(database) == LATEST_VERSION
    assert upgrade(database) == []  # a second run applies nothing


def _upgrade_in_child(url, queue):
    try:
        queue.put(upgrade(open_database(url)))
    except Exception as exc:  # noqa: BLE001 - report any failure to the parent
        queue.put(repr(exc))


def test_concurrent_upgrades_apply_each_migration_once(database_url):
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    children = [context.Process(target=_upgrade_in_child, args=(database_url, queue)) for _ in range(3)]
    for child in children:
        child.start()
    results = [queue.get(timeout=60) for _ in children]
    for child in children:
        child.join(timeout=60)
    assert all(isinstance(r, list) for r in results), results
    assert sorted(len(r) for r in results) == [0, 0, len(MIGRATIONS)]


def test_workflow_version_and_json_round_trip(database):
    spec = {"name": "wf", "nodes": [{"id": "start", "type": "trigger", "data": {"amount": "12.50"}}], "edges": []}
    with write_transaction():
        workflow = models.Workflow.create(name="wf", spec=spec, spec_hash="0" * 64)
        models.WorkflowVersion.create(workflow_id=workflow.id, version=1, spec=spec)
    loaded = models.Workflow.get_by_id(workflow.id)
    assert loaded.spec == spec
    assert loaded.status == "draft"
    with pytest.raises(peewee.IntegrityError):
        with write_transaction():
            models.WorkflowVersion.create(workflow_id=workflow.id, version=1, spec=spec)


def test_rolled_back_transaction_leaves_nothing(database):
    with pytest.raises(RuntimeError):
        with write_transaction():
            models.Workflow.create(name="doomed", spec={}, spec_hash="0" * 64)
            raise RuntimeError("abort")
    assert models.Workflow.select().where(models.Workflow.name == "doomed").count() == 0


def test_execution_idempotency_key_is_unique_per_workflow(database):
    models.Execution.create(workflow_id="w1", workflow_version=1, status="running", idempotency_key="k")
    models.Execution.create(workflow_id="w2", workflow_version=1, status="running", idempotency_key="k")
    with pytest.raises(peewee.IntegrityError):
        with write_transaction():
            models.Execution.create(workflow_id="w1", workflow_version=1, status="running", idempotency_key="k")


def test_no_connection_is_opened_by_importing_or_binding(database_url):
    from flowker.storage.database import bind_database

    db = bind_database(database_url)
    assert db.is_closed()


# --------------------------------------------------------------------------- compiled statements


def test_compiled_statements_store_and_read_what_the_models_do(database):
    import datetime as dt

    from flowker.storage.statements import CompiledInsert, CompiledSelect, CompiledUpdate, model_database

    db = model_database(models.Execution)
    assert db is database
    started = dt.datetime(2026, 11, 29, 12, 0, 0, 123456)
    # peewee's defaults live in Python, not in the schema: a compiled insert names every column.
    insert = CompiledInsert(
        models.Execution,
        ("id", "workflow_id", "workflow_version", "status", "input_data", "current_step", "total_steps", "started_at"),
    )
    insert.execute(
        db,
        [
            ("e-1", "w-1", 1, "running", {"a": [1, "é"]}, 0, 3, started),
            ("e-2", "w-1", 1, "running", None, 0, 3, started),
        ],
    )
    loaded = models.Execution.get_by_id("e-1")
    assert (loaded.input_data, loaded.started_at, loaded.current_step) == ({"a": [1, "é"]}, started, 0)
    assert models.Execution.get_by_id("e-2").input_data is None

    update = CompiledUpdate(
        models.Execution, ("status", "final_output", "completed_at"), '"id" = {p} AND "status" = \'running\''
    )
    assert update.execute(db, ("completed", {"ok": True}, started), ("e-1",)) == 1
    assert update.execute(db, ("completed", {"ok": True}, started), ("e-1",)) == 0  # no longer running

    select = CompiledSelect(models.Execution, '"id" = {p}')
    fresh, reference = select.first(db, ("e-1",)), models.Execution.get_by_id("e-1")
    assert fresh.__data__ == reference.__data__
    assert (fresh.final_output, fresh.completed_at, fresh.status) == ({"ok": True}, started, "completed")
    assert select.first(db, ("missing",)) is None


# --------------------------------------------------------------------------- the SQLite writer queue


def _queued_writer(url, name, count, queue):
    try:
        from flowker.storage.database import bind_database

        db = bind_database(url)
        for number in range(count):
            with write_transaction(db):
                models.WorkflowVersion.create(workflow_id=name, version=number, spec={})
        db.close()
        queue.put(count)
    except Exception as exc:  # noqa: BLE001 - report any failure to the parent
        queue.put(repr(exc))


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_writers_in_several_processes_and_threads_all_commit(database_url, database):
    import threading

    from flowker.storage.database import QueuedSqliteDatabase

    assert isinstance(database, QueuedSqliteDatabase) and database.writer_queue is not None
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    children = [context.Process(target=_queued_writer, args=(database_url, f"p{i}", 40, queue)) for i in range(2)]
    for child in children:
        child.start()
    errors = []

    def write(name):
        try:
            for number in range(40):
                with write_transaction():
                    models.WorkflowVersion.create(workflow_id=name, version=number, spec={})
        except Exception as exc:  # noqa: BLE001
            errors.append(repr(exc))

    threads = [threading.Thread(target=write, args=(f"t{i}",)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    results = [queue.get(timeout=120) for _ in children]
    for child in children:
        child.join(timeout=60)
    assert errors == [] and results == [40, 40]
    assert models.WorkflowVersion.select().count() == 5 * 40
    assert os.path.exists(database.database + "-writer.lock")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_writer_queue_is_released_by_rollback_and_failed_begin(database_url, database):
    import threading
    import time

    with pytest.raises(RuntimeError):
        with write_transaction():
            models.Workflow.create(name="doomed", spec={}, spec_hash="0" * 64)
            raise RuntimeError("abort")
    finished = []

    def other_thread():
        began = time.monotonic()
        with write_transaction():
            models.Workflow.create(name="kept", spec={}, spec_hash="0" * 64)
        finished.append(time.monotonic() - began)

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join(timeout=60)
    # Far below the 30 s a leaked queue slot would make it wait.
    assert finished and finished[0] < 10
    # Commit in this thread again too: the slot of the rolled-back transaction is free.
    with write_transaction():
        models.Workflow.create(name="again", spec={}, spec_hash="0" * 64)
    assert sorted(w.name for w in models.Workflow.select()) == ["again", "kept"]


# --------------------------------------------------------------------------- migration 2: fewer indexes


def _index_names(database, table: str) -> set[str]:
    return {index.name for index in database.get_indexes(table)}


def test_executions_keep_only_the_indexes_queries_use(database):
    from flowker.storage.migrations import UNNEEDED_INDEXES

    names = _index_names(database, "execution") | _index_names(database, "step_result")
    assert not names & set(UNNEEDED_INDEXES)
    # What serves the queries: list by workflow and idempotency lookups, status filters and
    # the lease sweep, date ranges, a run's steps in order.
    assert {
        "execution_workflow_id_idempotency_key",
        "execution_status",
        "execution_started_at",
        "step_result_execution_id_step_number",
    } <= names


def test_migration_2_drops_the_unneeded_indexes_of_an_older_database(database):
    from flowker.storage.migrations import UNNEEDED_INDEXES

    # A database made by a release with migration 1 only: its extra indexes exist.
    for name in UNNEEDED_INDEXES:
        table, column = (
            ("step_result", "execution_id")
            if name.startswith("step_result")
            else ("execution", name[len("execution_") :])
        )
        database.execute_sql(f'CREATE INDEX "{name}" ON "{table}" ("{column}")')
    models.SchemaMigration.delete().where(models.SchemaMigration.version >= 2).execute()
    assert current_version(database) == 1
    assert set(UNNEEDED_INDEXES) <= _index_names(database, "execution") | _index_names(database, "step_result")

    assert upgrade(database) == [number for number, _, _ in MIGRATIONS if number >= 2]
    assert not (_index_names(database, "execution") | _index_names(database, "step_result")) & set(UNNEEDED_INDEXES)
    assert upgrade(database) == []  # applied once


def test_an_upgraded_database_gets_the_shared_breaker_table(database):
    from flowker.storage.migrations import MIGRATIONS, _create_breaker_state

    version = next(number for number, _, apply in MIGRATIONS if apply is _create_breaker_state)
    # A database made before breakers were shared: no table, no record of that migration.
    table = models.CircuitBreakerState._meta.table_name
    database.execute_sql(f'DROP TABLE "{table}"')
    database.execute_sql(f"DELETE FROM schema_migration WHERE version = {version}")
    assert upgrade(database) == [version]
    assert database.table_exists(table) and current_version(database) == LATEST_VERSION
    assert upgrade(database) == []

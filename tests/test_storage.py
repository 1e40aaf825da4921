"""Models and migrations on both backends."""

from __future__ import annotations

import multiprocessing

import peewee
import pytest

from flowker.storage import models
from flowker.storage.database import open_database, write_transaction
from flowker.storage.migrations import LATEST_VERSION, current_version, upgrade


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
    assert sorted(len(r) for r in results) == [0, 0, len(range(LATEST_VERSION))]


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

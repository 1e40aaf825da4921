"""Appending: hashing, canonical form, redaction, transactions, immutability, forks."""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
import re
import uuid

import peewee
import pytest
import rfc8785

from audit_helpers import ENTRY, CHECKPOINT, p, rows
from flowker.audit import chain
from flowker.audit.canonical import GENESIS_HASH
from flowker.audit.chain import SYSTEM_ACTOR, Actor, AuditLog, append, entry_to_dict, verify_chain
from flowker.audit.events import Action, EventType, Result
from flowker.errors import AuditChainError, NotFound
from flowker.storage import models
from flowker.storage.database import is_postgres, write_transaction

ACTOR = Actor(type="api_key", id="ci-bot", ip="127.0.0.1")
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def _append(i=0, **overrides):
    arguments = dict(
        event_type=EventType.WORKFLOW_UPDATED,
        action=Action.UPDATE,
        result=Result.SUCCESS,
        resource_type="workflow",
        resource_id=f"wf-{i}",
        actor=ACTOR,
        context={"requestId": f"r{i}"},
        metadata={"version": i},
    )
    arguments.update(overrides)
    return append(**arguments)


def test_entries_link_into_a_chain_hashed_exactly_as_documented(database):
    entries = [_append(i) for i in range(5)]
    assert [e.sequence for e in entries] == [1, 2, 3, 4, 5]
    previous = GENESIS_HASH
    for entry, (sequence, event_id, digest, previous_hash, canonical) in zip(entries, rows(database)):
        assert (entry.sequence, entry.event_id, entry.hash) == (sequence, event_id, digest)
        assert previous_hash == previous
        # hash = sha256(previous hash hex || canonical bytes), canonical = RFC 8785 of itself
        assert digest == hashlib.sha256(previous.encode("ascii") + canonical.encode("utf-8")).hexdigest()
        assert rfc8785.dumps(json.loads(canonical)).decode("utf-8") == canonical
        document = json.loads(canonical)
        assert document["v"] == 1 and document["entry"]["sequence"] == sequence
        assert TIMESTAMP.fullmatch(document["entry"]["timestamp"])
        previous = digest
    assert verify_chain().is_valid


def test_positional_call_and_plain_strings_are_accepted(database):
    entry = chain.append(
        "EXECUTOR_CREATED",
        "CREATE",
        "SUCCESS",
        "executor",
        "ex-1",
        actor=ACTOR,
        context={},
        metadata={"executor.name": "fraud"},
    )
    assert entry.event_type == "EXECUTOR_CREATED" and entry.actor_id == "ci-bot"
    system = chain.append("EXECUTION_INTERRUPTED", "EXECUTE", "FAILED", "execution", "x-1")
    assert (system.actor_type, system.actor_id, system.actor_ip) == ("system", "flowker", "0.0.0.0")
    assert SYSTEM_ACTOR.type == "system"


def test_rest_item_shape(database):
    entry = _append(1, actor=Actor(type="api_key", id="ci-bot", ip=None))
    item = entry_to_dict(entry)
    assert set(item) == {
        "eventId",
        "sequence",
        "eventType",
        "action",
        "result",
        "resourceId",
        "resourceType",
        "actor",
        "context",
        "metadata",
        "timestamp",
        "hash",
        "previousHash",
    }
    assert item["actor"] == {"type": "api_key", "id": "ci-bot", "ipAddress": "0.0.0.0"}
    assert item["eventType"] == "WORKFLOW_UPDATED" and item["resourceId"] == "wf-1"
    assert item["previousHash"] == GENESIS_HASH and item["hash"] == entry.hash
    assert TIMESTAMP.fullmatch(item["timestamp"])
    stored = models.AuditEntry.get(models.AuditEntry.event_id == entry.event_id)
    assert entry_to_dict(stored) == item


def test_no_floats_are_hashed(database):
    entry = _append(
        metadata={
            "amount": 12.5,
            "ratio": 0.1,
            "big": 1e20,
            "tiny": 1e-7,
            "whole": 3.0,
            "nan": float("nan"),
            "price": decimal.Decimal("19.990"),
            "huge": 2**60,
            "when": dt.datetime(2026, 1, 2, 3, 4, 5, 678901),
            "id": uuid.UUID(int=1),
            "list": (1, 2.5),
            "kind": Result.FAILED,
            7: "int key",
        }
    )
    metadata = json.loads(entry.canonical)["payload"]["metadata"]
    assert metadata == {
        "amount": "12.5",
        "ratio": "0.1",
        "big": "100000000000000000000",
        "tiny": "0.0000001",
        "whole": "3.0",
        "nan": "NaN",
        "price": "19.990",
        "huge": str(2**60),
        "when": "2026-01-02T03:04:05.678Z",
        "id": "00000000-0000-0000-0000-000000000001",
        "list": [1, "2.5"],
        "kind": "FAILED",
        "7": "int key",
    }

    def floats(value):
        if isinstance(value, float):
            yield value
        elif isinstance(value, dict):
            for item in value.values():
                yield from floats(item)
        elif isinstance(value, list):
            for item in value:
                yield from floats(item)

    assert list(floats(json.loads(entry.canonical))) == []  # json.loads would parse any fraction as float


def test_secrets_are_redacted_before_hashing(database, database_url, tmp_path):
    secret = "hunter2-" + uuid.uuid4().hex
    entry = _append(
        context={"headers": {"Authorization": f"Bearer {secret}"}},
        metadata={"password": secret, "auth": {"client_secret": secret}, "name": "ok"},
    )
    assert secret not in entry.canonical
    assert json.loads(entry.canonical)["payload"]["metadata"]["password"] == "****"
    assert verify_chain().is_valid
    if database_url.startswith("sqlite"):
        database.execute_sql("PRAGMA wal_checkpoint(FULL)")
        data = b"".join(path.read_bytes() for path in tmp_path.glob("flowker.db*"))
        assert secret.encode() not in data


@pytest.mark.parametrize(
    "bad",
    [
        {"result": "MAYBE"},
        {"event_type": "lower_case"},
        {"resource_id": ""},
        {"metadata": {"raw": b"bytes"}},
        {"metadata": {"s": {1, 2}}},
        {"metadata": ["not", "a", "mapping"]},
        {"resource_id": "x" * 256},
        {"metadata": {1: "a", "1": "b"}},
    ],
)
def test_bad_entries_are_refused_and_nothing_is_written(database, bad):
    with pytest.raises(AuditChainError):
        _append(**bad)
    assert models.AuditEntry.select().count() == 0


def test_rolled_back_state_change_leaves_no_entry(database):
    with pytest.raises(RuntimeError):
        with write_transaction():
            workflow = models.Workflow.create(name="doomed", spec={}, spec_hash="0" * 64)
            _append(resource_id=workflow.id)
            raise RuntimeError("the change fails after its entry was appended")
    assert models.AuditEntry.select().count() == 0
    assert models.Workflow.select().count() == 0
    with write_transaction():
        workflow = models.Workflow.create(name="kept", spec={}, spec_hash="0" * 64)
        entry = _append(resource_id=workflow.id)
    assert models.AuditEntry.get().event_id == entry.event_id
    assert entry.sequence == 1  # the rolled-back entry took no sequence number


def test_failed_append_rolls_back_the_state_change(database):
    with pytest.raises(AuditChainError):
        with write_transaction():
            models.Workflow.create(name="unaudited", spec={}, spec_hash="0" * 64)
            _append(result="NOT-A-RESULT")
    assert models.Workflow.select().count() == 0


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE {entry} SET resource_id = 'changed'",
        "DELETE FROM {entry}",
        "DELETE FROM {entry} WHERE sequence = 1",
        "UPDATE {checkpoint} SET head_hash = 'x'",
        "DELETE FROM {checkpoint}",
    ],
)
def test_update_and_delete_are_refused_by_the_database(database, signing_key, statement):
    log = AuditLog(database, signing_key=signing_key, checkpoint_interval=1)
    log.append("WORKFLOW_CREATED", "CREATE", "SUCCESS", "workflow", "wf")
    with pytest.raises(peewee.DatabaseError, match="append-only"):
        with write_transaction():
            database.execute_sql(statement.format(entry=ENTRY, checkpoint=CHECKPOINT))
    assert models.AuditEntry.select().where(models.AuditEntry.resource_id == "wf").count() == 1
    assert models.AuditCheckpoint.select().count() == 1


def test_model_level_update_and_delete_are_refused(database):
    entry = _append()
    with pytest.raises(peewee.DatabaseError):
        with write_transaction():
            models.AuditEntry.update(result="FAILED").where(models.AuditEntry.sequence == entry.sequence).execute()
    with pytest.raises(peewee.DatabaseError):
        with write_transaction():
            models.AuditEntry.delete().execute()
    if is_postgres(database):
        with pytest.raises(peewee.DatabaseError, match="append-only"):
            with write_transaction():
                database.execute_sql(f"TRUNCATE {ENTRY}")
    assert verify_chain().is_valid


@pytest.mark.parametrize("duplicate", ["sequence", "previous_hash"])
def test_a_fork_cannot_commit_even_without_the_lock(database, duplicate):
    """A second entry claiming the same place in the chain violates a unique constraint."""
    first, second = _append(1), _append(2)
    row = dict(zip(("sequence", "event_id", "hash", "previous_hash", "canonical"), rows(database)[1]))
    fork = {
        "sequence": 3,
        "event_id": str(uuid.uuid4()),
        "event_type": "WORKFLOW_DELETED",
        "action": "DELETE",
        "result": "SUCCESS",
        "resource_type": "workflow",
        "resource_id": "wf",
        "actor_type": "system",
        "actor_id": "x",
        "actor_ip": "0.0.0.0",
        "timestamp": "2026-01-01T00:00:00.000Z",
        "canonical": row["canonical"] + " ",
        "previous_hash": second.hash,
        "hash": "f" * 64,
    }
    fork[duplicate] = getattr(second, duplicate)
    columns = list(fork)
    with pytest.raises(peewee.IntegrityError):
        with write_transaction():
            database.execute_sql(
                f"INSERT INTO {ENTRY} ({', '.join(columns)}) VALUES ({', '.join([p(database)] * len(columns))})",
                [fork[c] for c in columns],
            )
    assert [e.sequence for e in models.AuditEntry.select().order_by(models.AuditEntry.sequence)] == [1, 2]
    assert first.hash != second.hash


def test_verify_up_to_an_event(database):
    entries = [_append(i) for i in range(4)]
    result = verify_chain(entries[1].event_id)
    assert result.to_dict() == {"isValid": True, "totalChecked": 2, "message": result.message}
    assert verify_chain(3).total_checked == 3
    with pytest.raises(NotFound) as raised:
        verify_chain(str(uuid.uuid4()))
    assert raised.value.code == "FLK-0600"


def test_settings_log_checkpoints_automatically(database, signing_key, key_files):
    from flowker.settings import Settings

    settings = Settings.from_mapping({"audit_signing_key": key_files[0], "audit_checkpoint_interval": "3"})
    log = AuditLog.from_settings(settings, database)  # what the runtime passes to every appender
    for i in range(7):
        _append(i, audit_log=log)
    assert [c.sequence for c in models.AuditCheckpoint.select().order_by(models.AuditCheckpoint.sequence)] == [3, 6]
    result = verify_chain(audit_log=log)
    assert result.is_valid and result.signatures_checked and result.checkpoints_checked == 2
    on_demand = chain.create_checkpoint(audit_log=log)
    assert on_demand.sequence == 7
    assert chain.create_checkpoint(audit_log=log).sequence == 7  # idempotent at the same head
    # Without the log, appends go on unsigned (no attribute on the database carries a key).
    _append(8)
    assert models.AuditCheckpoint.select().count() == 3

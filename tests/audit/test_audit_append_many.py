"""Batch appends: one lock, one head read, one INSERT, the same chain as single appends."""

from __future__ import annotations

import hashlib

import pytest

from audit_helpers import rows
from flowker.audit import chain
from flowker.audit.canonical import GENESIS_HASH
from flowker.audit.chain import Actor, AuditLog, append, append_many, verify_chain
from flowker.errors import AuditChainError
from flowker.storage import models
from flowker.storage.database import write_transaction

ACTOR = Actor(type="api_key", id="ci-bot", ip="127.0.0.1")


def _item(i, **overrides):
    item = dict(
        event_type="STEP_COMPLETED",
        action="EXECUTE",
        result="SUCCESS",
        resource_type="execution",
        resource_id=f"ex-{i}",
        actor=ACTOR,
        context={"nodeId": f"n{i}"},
        metadata={"step": i},
    )
    item.update(overrides)
    return item


def test_a_batch_links_after_single_appends_and_verifies(database):
    first = append(**_item(0))
    batch = append_many([_item(i) for i in range(1, 6)])
    last = append(**_item(6))
    assert [e.sequence for e in [first, *batch, last]] == list(range(1, 8))
    previous = GENESIS_HASH
    for _sequence, _event_id, digest, previous_hash, canonical in rows(database):
        assert previous_hash == previous
        assert digest == hashlib.sha256(previous.encode("ascii") + canonical.encode("utf-8")).hexdigest()
        previous = digest
    assert [e.hash for e in batch] == [row[2] for row in rows(database)[1:6]]
    result = verify_chain()
    assert result.is_valid and result.total_checked == 7


def test_an_empty_batch_writes_nothing(database):
    assert append_many([]) == []
    assert rows(database) == []


def test_a_batch_is_redacted_like_single_appends(database):
    (entry,) = append_many([_item(1, metadata={"password": "hunter2", "note": "ok"})])
    assert "hunter2" not in entry.canonical
    assert chain.entry_to_dict(entry)["metadata"] == {"password": "****", "note": "ok"}


def test_one_invalid_item_writes_none_of_the_batch(database):
    with pytest.raises(AuditChainError):
        append_many([_item(1), _item(2, resource_id="")])
    assert rows(database) == []


def test_a_batch_commits_with_the_callers_change_or_not_at_all(database):
    with pytest.raises(RuntimeError):
        with write_transaction():
            models.WorkflowVersion.create(workflow_id="w-1", version=1, spec={})
            append_many([_item(1), _item(2)])
            raise RuntimeError("the change fails after its entries")
    assert rows(database) == [] and models.WorkflowVersion.select().count() == 0


def test_checkpoints_fall_inside_a_batch_where_single_appends_would_put_them(database, signing_key):
    log = AuditLog(database, signing_key=signing_key, checkpoint_interval=3)
    log.append_many([_item(i) for i in range(7)])
    checkpoints = list(models.AuditCheckpoint.select().order_by(models.AuditCheckpoint.sequence))
    hashes = {row[0]: row[2] for row in rows(database)}
    assert [(c.sequence, c.head_hash) for c in checkpoints] == [(3, hashes[3]), (6, hashes[6])]
    assert log.verify().is_valid


def test_a_large_batch_spans_several_insert_statements(database):
    entries = append_many([_item(i) for i in range(1203)])
    assert [e.sequence for e in entries] == list(range(1, 1204))
    assert verify_chain().is_valid

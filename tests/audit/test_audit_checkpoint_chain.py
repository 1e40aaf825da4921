"""Checkpoints chained to each other, and the migration that chains them on a database made before it."""

from __future__ import annotations

from audit_helpers import CHECKPOINT, unprotected

from flowker.audit import checkpoints as cp
from flowker.audit import store
from flowker.audit.chain import AuditLog
from flowker.audit.verify import verify_database
from flowker.storage.migrations import MIGRATIONS, _add_checkpoint_chain_columns, upgrade


def test_each_checkpoint_names_the_previous_one_and_its_entry_count(chain_db, signing_key):
    log = AuditLog(chain_db, signing_key=signing_key, checkpoint_interval=3)
    for i in range(10):
        log.append("WORKFLOW_UPDATED", "UPDATE", "SUCCESS", "workflow", f"wf-{i}")
    with chain_db.connection_context():
        checkpoints = [cp.Checkpoint.from_row(row) for row in store.all_checkpoints(chain_db)]
    assert [c.sequence for c in checkpoints] == [3, 6, 9]
    assert [c.entry_count for c in checkpoints] == [3, 6, 9]
    assert checkpoints[0].previous_checkpoint_hash == cp.GENESIS_CHECKPOINT_HASH
    assert [c.previous_checkpoint_hash for c in checkpoints[1:]] == [c.hash for c in checkpoints[:-1]]
    assert verify_database(chain_db, public_keys=cp.keys_by_id([signing_key]), checkpoint_interval=3).is_valid


def test_the_migration_adds_the_columns_and_old_checkpoints_still_verify(chain_db, signing_key):
    # A database made before the migration: no chain columns, a version-1 checkpoint.
    version = next(v for v, _name, apply in MIGRATIONS if apply is _add_checkpoint_chain_columns)
    log = AuditLog(chain_db, signing_key=signing_key, checkpoint_interval=0)
    for i in range(4):
        log.append("WORKFLOW_UPDATED", "UPDATE", "SUCCESS", "workflow", f"wf-{i}")
    with chain_db.connection_context():
        head = store.head(chain_db)
        statement, signature = cp.sign_document(
            signing_key,
            {
                "createdAt": "2026-01-01T00:00:00.000Z",
                "headHash": head[1],
                "interval": 4,
                "keyId": cp.key_id(signing_key),
                "sequence": head[0],
                "type": cp.STATEMENT_TYPE,
                "v": 1,
            },
        )
        with unprotected(chain_db):
            for column in ("previous_checkpoint_hash", "entry_count"):
                chain_db.execute_sql(f"ALTER TABLE {CHECKPOINT} DROP COLUMN {column}")
        chain_db.execute_sql(
            f"INSERT INTO {CHECKPOINT} (sequence, head_hash, key_id, created_at, statement, signature) "
            f"VALUES ({', '.join([store.param(chain_db)] * 6)})",
            (head[0], head[1], cp.key_id(signing_key), "2026-01-01T00:00:00.000Z", statement, signature),
        )
        chain_db.execute_sql(f"DELETE FROM schema_migration WHERE version >= {version}")
    assert upgrade(chain_db) == [number for number, _, _ in MIGRATIONS if number >= version]
    assert upgrade(chain_db) == []
    log = AuditLog(chain_db, signing_key=signing_key, checkpoint_interval=4)
    for i in range(4):
        log.append("WORKFLOW_UPDATED", "UPDATE", "SUCCESS", "workflow", f"after-{i}")
    with chain_db.connection_context():
        old, new = [cp.Checkpoint.from_row(row) for row in store.all_checkpoints(chain_db)]
    assert old.previous_checkpoint_hash is None and new.previous_checkpoint_hash == old.hash
    result = verify_database(chain_db, public_keys=cp.keys_by_id([signing_key]), checkpoint_interval=4)
    assert result.is_valid and "2 signed checkpoints verified" in result.message


def test_an_export_missing_a_middle_checkpoint_is_broken_offline(chain_db, signing_key, tmp_path):
    from audit_helpers import delete_checkpoint_at

    from flowker.audit.export import export_chain, verify_export

    log = AuditLog(chain_db, signing_key=signing_key, checkpoint_interval=3)
    for i in range(10):
        log.append("WORKFLOW_UPDATED", "UPDATE", "SUCCESS", "workflow", f"wf-{i}")
    out = tmp_path / "audit.jsonl"
    export_chain(chain_db, str(out), signing_key=signing_key, checkpoint_interval=3)
    assert verify_export(str(out), cp.keys_by_id([signing_key])).is_valid
    delete_checkpoint_at(chain_db, 6)
    export_chain(chain_db, str(out), signing_key=signing_key, checkpoint_interval=3)
    result = verify_export(str(out), None)
    assert not result.is_valid and result.first_invalid_sequence == 9
    assert "does not follow the checkpoint at sequence 3" in result.message

"""Verification detects each kind of tampering, and nothing else."""

from __future__ import annotations

import json
import os
import uuid

import pytest

from audit_helpers import delete_checkpoints, delete_entries, rewrite_from, rows, set_column
from flowker.audit import checkpoints as cp
from flowker.audit import verify as verify_module
from flowker.audit.chain import Actor, AuditLog
from flowker.audit.export import export_chain, verify_export
from flowker.audit.verify import verify_database

ODD_VALUES = [
    'quote " inside',
    "back\\slash",
    "new\nline",
    "tab\tand\u0001control",
    "ünïcødé ✓ 𝄞",
    '{"entry":',
    "\\u0022",
]


def _fill(log: AuditLog, count: int, odd: bool = False) -> None:
    for i in range(count):
        value = ODD_VALUES[i % len(ODD_VALUES)] if odd else f"wf-{i}"
        log.append(
            "WORKFLOW_UPDATED",
            "UPDATE",
            "SUCCESS",
            "workflow",
            value,
            actor=Actor(type="api_key", id=value if odd else "ci-bot", ip="10.0.0.1"),
            context={"note": value},
            metadata={"i": i, "amount": i / 4},
        )


def _strict(database, key, interval=5):
    return verify_database(database, public_keys=cp.keys_by_id([key]), checkpoint_interval=interval)


def test_values_that_need_json_escaping_verify(chain_db, monkeypatch):
    monkeypatch.setattr(verify_module, "CONCURRENT_COLUMN_CHECK_FROM", 1)  # the threaded path too
    _fill(AuditLog(chain_db), 14, odd=True)
    result = verify_database(chain_db)
    assert result.is_valid, result.message
    assert result.total_checked == 14


@pytest.mark.parametrize("odd", [False, True])
@pytest.mark.parametrize(
    "column",
    [
        "event_type",
        "action",
        "result",
        "resource_type",
        "resource_id",
        "actor_type",
        "actor_id",
        "actor_ip",
        "timestamp",
        "event_id",
    ],
)
def test_an_edited_column_is_detected(chain_db, column, odd):
    _fill(AuditLog(chain_db), 10, odd=odd)
    original = dict(zip(("sequence", "event_id"), rows(chain_db)[6][:2]))
    value = (
        str(uuid.uuid4()) if column == "event_id" else ("X" if column != "timestamp" else "2020-01-01T00:00:00.000Z")
    )
    set_column(chain_db, 7, column, value)
    result = verify_database(chain_db)
    assert not result.is_valid
    assert result.first_invalid_sequence == 7 and result.total_checked == 7
    assert "indexed columns" in result.message
    if column != "event_id":
        assert result.first_invalid_id == original["event_id"]


def test_a_column_rewritten_to_its_escaped_json_form_is_detected(chain_db):
    """The fast column check compares text; a value holding the JSON-escaped form of the
    original (same text once quoted) must still be caught."""
    log = AuditLog(chain_db)
    log.append("WORKFLOW_UPDATED", "UPDATE", "SUCCESS", "workflow", 'a"b')
    log.append("WORKFLOW_UPDATED", "UPDATE", "SUCCESS", "workflow", "plain")
    assert verify_database(chain_db).is_valid
    set_column(chain_db, 1, "resource_id", 'a\\"b')
    result = verify_database(chain_db)
    assert not result.is_valid and result.first_invalid_sequence == 1


@pytest.mark.parametrize("column", ["hash", "previous_hash", "canonical"])
def test_an_edited_link_or_content_is_detected(chain_db, column):
    _fill(AuditLog(chain_db), 10)
    sequence, event_id, digest, previous, canonical = rows(chain_db)[4]
    replacement = {"hash": "a" * 64, "previous_hash": "b" * 64, "canonical": canonical.replace('"i":4', '"i":40')}[
        column
    ]
    set_column(chain_db, 5, column, replacement)
    result = verify_database(chain_db)
    assert not result.is_valid and result.first_invalid_sequence == 5
    assert result.first_invalid_id == event_id


def test_a_deleted_middle_entry_is_detected(chain_db):
    _fill(AuditLog(chain_db), 10)
    after = rows(chain_db)[4][1]
    delete_entries(chain_db, [4])
    result = verify_database(chain_db)
    assert not result.is_valid
    assert result.first_invalid_sequence == 5 and result.first_invalid_id == after
    assert "entry 4 is missing" in result.message


def test_tail_truncation_is_detected_by_a_checkpoint(chain_db, signing_key):
    log = AuditLog(chain_db, signing_key=signing_key, checkpoint_interval=5)
    _fill(log, 12)  # checkpoints at 5 and 10
    delete_entries(chain_db, [12, 11])
    assert verify_database(chain_db).is_valid  # past the last checkpoint: undetectable by design
    delete_entries(chain_db, [10, 9])
    for result in (verify_database(chain_db), _strict(chain_db, signing_key)):
        assert not result.is_valid
        assert "signs sequence 10 but the chain ends at 8" in result.message


def test_rewrite_without_the_key_is_detected(chain_db, signing_key, attacker_key):
    log = AuditLog(chain_db, signing_key=signing_key, checkpoint_interval=5)
    _fill(log, 8)
    rewrite_from(chain_db, 1, marker=1)
    for result in (verify_database(chain_db), _strict(chain_db, signing_key)):
        assert not result.is_valid and result.first_invalid_sequence == 5
        assert "rewritten" in result.message


def test_rewrite_with_forged_checkpoints_needs_the_public_key(chain_db, signing_key, attacker_key):
    log = AuditLog(chain_db, signing_key=signing_key, checkpoint_interval=5)
    _fill(log, 8)
    rewrite_from(chain_db, 1, marker=1, forge_key=attacker_key)
    assert verify_database(chain_db).is_valid  # consistent, but signed by someone else
    result = _strict(chain_db, signing_key)
    assert not result.is_valid and "not a trusted public key" in result.message


def test_deleted_checkpoints_are_detected_with_the_public_key(chain_db, signing_key):
    log = AuditLog(chain_db, signing_key=signing_key, checkpoint_interval=5)
    _fill(log, 7)
    assert _strict(chain_db, signing_key).is_valid
    delete_checkpoints(chain_db)
    result = _strict(chain_db, signing_key)
    assert not result.is_valid and "checkpoints were removed" in result.message
    assert verify_database(chain_db).is_valid  # without the key nothing says checkpoints were due


def test_a_bad_signature_is_detected(chain_db, signing_key):
    log = AuditLog(chain_db, signing_key=signing_key, checkpoint_interval=3)
    _fill(log, 4)
    from audit_helpers import CHECKPOINT, p, unprotected

    with unprotected(chain_db):
        chain_db.execute_sql(f"UPDATE {CHECKPOINT} SET signature = {p(chain_db)}", ("A" * 88,))
    assert verify_database(chain_db).is_valid
    result = _strict(chain_db, signing_key, interval=3)
    assert not result.is_valid and "signature is invalid" in result.message


def test_export_round_trip_and_truncated_exports(chain_db, signing_key, attacker_key, tmp_path):
    log = AuditLog(chain_db, signing_key=signing_key, checkpoint_interval=4)
    _fill(log, 9, odd=True)
    out = tmp_path / "audit.jsonl"
    summary = export_chain(chain_db, str(out), signing_key=signing_key, checkpoint_interval=4)
    assert summary == {"entries": 9, "checkpoints": 2, "headHash": rows(chain_db)[-1][2], "signed": True}
    keys = cp.keys_by_id([signing_key])
    assert verify_export(str(out), keys).is_valid
    assert not verify_export(str(out), cp.keys_by_id([attacker_key])).is_valid

    lines = out.read_text(encoding="utf-8").splitlines(keepends=True)
    cut = tmp_path / "cut.jsonl"
    cut.write_text("".join(lines[:-2]), encoding="utf-8")  # entry 9 and the end record
    assert "truncated" in verify_export(str(cut), keys).message
    # Cut right after the checkpoint at 8, with the unsigned header and end record forged
    # to match (signature and statement copied): the signed end statement gives it away.
    header, end = json.loads(lines[0]), json.loads(lines[-1])
    header["headSequence"] = 8
    end.update(entries=8, headHash=json.loads(lines[-3])["headHash"])
    cut.write_text(json.dumps(header) + "\n" + "".join(lines[1:-2]) + json.dumps(end) + "\n", encoding="utf-8")
    result = verify_export(str(cut), keys)
    assert not result.is_valid and "differs from its signed statement" in result.message
    del end["statement"], end["signature"]
    cut.write_text(json.dumps(header) + "\n" + "".join(lines[1:-2]) + json.dumps(end) + "\n", encoding="utf-8")
    result = verify_export(str(cut), keys)
    assert not result.is_valid and "not signed" in result.message
    assert verify_export(str(cut), None).is_valid  # without the key, unsigned records are believed
    cut.write_text("".join(lines)[:-10], encoding="utf-8")  # cut inside the last line
    assert not verify_export(str(cut), keys).is_valid
    dropped = tmp_path / "dropped.jsonl"
    dropped.write_text("".join(lines[:3] + lines[4:]), encoding="utf-8")  # an entry taken out
    result = verify_export(str(dropped), None)
    assert not result.is_valid and "missing" in result.message


def test_empty_chain_is_valid_and_export_of_it_too(chain_db, signing_key, tmp_path):
    assert verify_database(chain_db).to_dict() == {
        "isValid": True,
        "totalChecked": 0,
        "message": "hash chain is valid: the chain is empty",
    }
    out = tmp_path / "empty.jsonl"
    export_chain(chain_db, str(out), signing_key=signing_key)
    assert verify_export(str(out), cp.keys_by_id([signing_key])).is_valid
    assert os.path.getsize(out) > 0

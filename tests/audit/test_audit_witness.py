"""A witness outside the database catches what the database alone cannot: entries cut from
the end together with the checkpoints past the cut (issue 19 §1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import requests
from audit_helpers import (
    delete_checkpoint_at,
    delete_checkpoints_from,
    rewrite_from,
    rows,
    truncate,
)

from flowker.audit import checkpoints as cp
from flowker.audit.chain import AuditLog
from flowker.audit.verify import verify_database
from flowker.audit.witness import WitnessRefused, WitnessUnavailable, open_witness
from flowker.audit.witness_server import countersignature_problem

INTERVAL = 50


def fill(log: AuditLog, count: int, batch: int = 7) -> None:
    items = [
        {
            "event_type": "WORKFLOW_UPDATED",
            "action": "UPDATE",
            "result": "SUCCESS",
            "resource_type": "workflow",
            "resource_id": f"wf-{i}",
            "metadata": {"i": i},
        }
        for i in range(count)
    ]
    for start in range(0, count, batch):
        log.append_many(items[start : start + batch])


def strict(database, key, witness=None):
    return verify_database(database, public_keys=cp.keys_by_id([key]), checkpoint_interval=INTERVAL, witness=witness)


def test_deep_truncation_with_the_checkpoints_past_the_cut(chain_db, signing_key, witness_url):
    """The probe: 341 entries, a checkpoint every 50; cut 42, then 164 of them, with the
    checkpoint rows past the cut. The database alone says valid; the witness says where."""
    witness = open_witness(witness_url)
    log = AuditLog(chain_db, signing_key=signing_key, checkpoint_interval=INTERVAL, witness=witness)
    fill(log, 341)
    assert [w.sequence for w in witness.witnessed()] == [50, 100, 150, 200, 250, 300]
    assert strict(chain_db, signing_key, witness).is_valid

    truncate(chain_db, 341 - 42)
    unwitnessed = strict(chain_db, signing_key)
    assert unwitnessed.is_valid, unwitnessed.message  # what the database alone can tell: nothing
    assert "3 signed" not in unwitnessed.message and "5 signed checkpoints verified" in unwitnessed.message
    result = strict(chain_db, signing_key, witness)
    assert not result.is_valid
    assert result.first_invalid_sequence == 300
    assert "the witness holds a checkpoint at sequence 300 (300 entries) but the chain ends at 299" in result.message
    assert "at least entry 300 was removed from the end, and 1 witnessed checkpoint with them" in result.message

    truncate(chain_db, 341 - 164)
    assert strict(chain_db, signing_key).is_valid  # "valid, 3 signed checkpoints verified"
    assert "3 signed checkpoints verified" in strict(chain_db, signing_key).message
    result = verify_database(chain_db, witness=witness)  # even without the public key
    assert not result.is_valid
    assert "sequence 300" in result.message and "ends at 177" in result.message
    assert "at least entries 178..300 were removed" in result.message
    assert "3 witnessed checkpoints with them" in result.message


def test_cli_verify_with_a_witness_service(chain_db, database_url, signing_key, key_files, witness_service):
    url, _directory = witness_service
    log = AuditLog(chain_db, signing_key=signing_key, checkpoint_interval=INTERVAL, witness=open_witness(url))
    fill(log, 120)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWKER_")}
    env.update(
        FLOWKER_DATABASE_URL=database_url,
        FLOWKER_AUDIT_SIGNING_KEY=key_files[0],
        FLOWKER_AUDIT_CHECKPOINT_INTERVAL=str(INTERVAL),
    )

    def cli(*extra):
        return subprocess.run(
            [sys.executable, "-m", "flowker", "audit", "verify", "--json", *extra],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )

    ok = cli("--witness", url)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "2 witnessed checkpoints matched" in json.loads(ok.stdout)["message"]
    truncate(chain_db, 99)
    assert cli().returncode == 0  # without the witness: valid
    broken = cli("--witness", url)
    assert broken.returncode == 1
    body = json.loads(broken.stdout)
    assert body["isValid"] is False and body["firstInvalidSequence"] == 100
    assert "witness holds a checkpoint at sequence 100" in body["message"]
    # The witness named by FLOWKER_AUDIT_WITNESS is used by default.
    env["FLOWKER_AUDIT_WITNESS"] = url
    assert cli().returncode == 1


def test_a_rewrite_with_forged_checkpoints_differs_from_the_witness(chain_db, signing_key, attacker_key, witness_url):
    witness = open_witness(witness_url)
    log = AuditLog(chain_db, signing_key=signing_key, checkpoint_interval=INTERVAL, witness=witness)
    fill(log, 160)
    rewrite_from(chain_db, 101, marker=1, forge_key=attacker_key)
    assert verify_database(chain_db).is_valid  # consistent, re-signed by the attacker
    result = verify_database(chain_db, witness=witness)
    assert not result.is_valid and result.first_invalid_sequence == 150
    assert "the checkpoint at sequence 150 differs from the one the witness holds" in result.message


def test_a_deleted_checkpoint_is_named(chain_db, signing_key, witness_url):
    witness = open_witness(witness_url)
    log = AuditLog(chain_db, signing_key=signing_key, checkpoint_interval=INTERVAL, witness=witness)
    fill(log, 160)
    delete_checkpoint_at(chain_db, 100)
    lax = verify_database(chain_db)  # the checkpoints' own chain shows the gap
    assert not lax.is_valid and "does not follow the checkpoint at sequence 50" in lax.message
    result = verify_database(chain_db, witness=witness)
    assert not result.is_valid and result.first_invalid_sequence == 100
    assert "the witness holds a checkpoint at sequence 100 that the database does not" in result.message


def test_a_different_hash_at_a_witnessed_sequence_is_named(chain_db, signing_key, witness_url):
    witness = open_witness(witness_url)
    log = AuditLog(chain_db, signing_key=signing_key, checkpoint_interval=INTERVAL, witness=witness)
    fill(log, 60)
    delete_checkpoints_from(chain_db, 1)
    rewrite_from(chain_db, 1, marker=2)  # the whole chain, consistent, no checkpoint left
    assert verify_database(chain_db).is_valid
    result = verify_database(chain_db, witness=witness)
    assert not result.is_valid and result.first_invalid_sequence == 50
    assert "checkpoint at sequence 50 that the database does not" in result.message


def test_an_unreachable_witness_refuses_only_the_append_that_completes_an_interval(chain_db, signing_key):
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = AuditLog(
        chain_db, signing_key=signing_key, checkpoint_interval=5, witness=open_witness(f"http://127.0.0.1:{port}")
    )
    fill(log, 4, batch=1)  # no checkpoint due: the witness is not asked
    with pytest.raises(WitnessUnavailable, match="unreachable"):
        log.append("WORKFLOW_UPDATED", "UPDATE", "SUCCESS", "workflow", "fifth")
    assert len(rows(chain_db)) == 4  # the entry and its checkpoint rolled back together
    with chain_db.connection_context():
        assert chain_db.execute_sql("SELECT COUNT(*) FROM audit_checkpoint").fetchone()[0] == 0


def test_the_witness_refuses_a_checkpoint_that_does_not_extend_its_last(signing_key, witness_service):
    url, _directory = witness_service
    first = cp.sign(signing_key, sequence=50, head_hash="a" * 64, interval=50, created_at="2026-01-01T00:00:00.000Z")
    accepted = requests.post(f"{url}/v1/checkpoints", json=first.to_dict(), timeout=10)
    assert accepted.status_code == 201
    assert requests.post(f"{url}/v1/checkpoints", json=first.to_dict(), timeout=10).status_code == 200  # a retry

    detached = cp.sign(
        signing_key, sequence=100, head_hash="b" * 64, interval=50, created_at="2026-01-01T00:00:01.000Z"
    )  # names the genesis, not the first
    refused = requests.post(f"{url}/v1/checkpoints", json=detached.to_dict(), timeout=10)
    assert refused.status_code == 409 and refused.json()["code"] == "FLK-0612"
    earlier = cp.sign(
        signing_key,
        sequence=40,
        head_hash="c" * 64,
        interval=50,
        created_at="2026-01-01T00:00:02.000Z",
        previous_checkpoint_hash=first.hash,
    )
    assert requests.post(f"{url}/v1/checkpoints", json=earlier.to_dict(), timeout=10).status_code == 409
    assert requests.post(f"{url}/v1/checkpoints", data=b"{nope", timeout=10).status_code == 400
    with pytest.raises(WitnessRefused):
        open_witness(url).submit(detached)

    extending = cp.sign(
        signing_key,
        sequence=100,
        head_hash="b" * 64,
        interval=50,
        created_at="2026-01-01T00:00:01.000Z",
        previous_checkpoint_hash=first.hash,
    )
    assert requests.post(f"{url}/v1/checkpoints", json=extending.to_dict(), timeout=10).status_code == 201
    held = requests.get(f"{url}/v1/checkpoints", timeout=10).json()
    assert [record["sequence"] for record in held["checkpoints"]] == [50, 100]
    assert requests.get(f"{url}/v1/checkpoints/latest", timeout=10).json()["checkpoint"]["sequence"] == 100


def test_the_countersignature_verifies(signing_key, witness_service):
    url, directory = witness_service
    checkpoint = cp.sign(signing_key, sequence=5, head_hash="d" * 64, interval=5, created_at="2026-01-01T00:00:00.000Z")
    record = open_witness(url).submit(checkpoint)
    witness_key = cp.load_public_key(requests.get(f"{url}/v1/witness-key", timeout=10).json()["witnessPublicKey"])
    assert countersignature_problem(record, witness_key) is None
    assert record["witness"]["keyId"] == cp.key_id(witness_key)
    assert oct(os.stat(directory / "witness-key.pem").st_mode & 0o777) == "0o600"
    forged = {**record, "headHash": "e" * 64}
    assert countersignature_problem(forged, witness_key) == "the countersigned statement does not match the record"
    assert "not a trusted" in countersignature_problem(record, cp.generate_signing_key().public_key())
    # What it stored is what it answered, on disk, one line per checkpoint.
    stored = [json.loads(line) for line in (directory / "checkpoints.jsonl").read_text().splitlines()]
    assert stored == [record]


def test_a_file_witness_is_append_only_and_refuses_a_fork(tmp_path, signing_key):
    witness = open_witness(f"file://{tmp_path}/w")
    first = cp.sign(signing_key, sequence=5, head_hash="a" * 64, interval=5, created_at="2026-01-01T00:00:00.000Z")
    witness.submit(first)
    fork = cp.sign(signing_key, sequence=5, head_hash="b" * 64, interval=5, created_at="2026-01-01T00:00:00.000Z")
    with pytest.raises(WitnessRefused, match="already holds a checkpoint at sequence 5"):
        witness.submit(fork)
    assert [w.head_hash for w in witness.witnessed()] == ["a" * 64]


def test_witness_urls(tmp_path):
    from flowker.errors import ConfigurationError

    assert open_witness(None) is None and open_witness("") is None
    assert open_witness("https://user:secret@witness.example:8443/").url == "https://witness.example:8443"
    assert open_witness(f"file://{tmp_path}").log.directory == str(tmp_path)
    for bad in ("ftp://x/", "file://host/dir", "witness.example"):
        with pytest.raises(ConfigurationError):
            open_witness(bad)

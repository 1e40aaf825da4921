"""``flowker audit ...`` run as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from audit_helpers import set_column
from flowker.audit.chain import AuditLog
from flowker.audit.checkpoints import load_signing_key


def flowker(*args, env=None, timeout=120):
    environment = {k: v for k, v in os.environ.items() if not k.startswith("FLOWKER_")}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "flowker", *args], capture_output=True, text=True, env=environment, timeout=timeout
    )


@pytest.fixture
def populated(chain_db, database_url, key_files):
    """A chain of 12 entries with checkpoints every 5, and the settings that go with it."""
    log = AuditLog(chain_db, signing_key=load_signing_key(key_files[0]), checkpoint_interval=5)
    for i in range(12):
        log.append("WORKFLOW_UPDATED", "UPDATE", "SUCCESS", "workflow", f"wf-{i}", metadata={"i": i})
    env = {
        "FLOWKER_DATABASE_URL": database_url,
        "FLOWKER_AUDIT_SIGNING_KEY": key_files[0],
        "FLOWKER_AUDIT_CHECKPOINT_INTERVAL": "5",
    }
    return chain_db, env


def test_verify_exits_0_for_a_valid_chain_and_1_for_a_broken_one(populated, database_url):
    database, env = populated
    ok = flowker("audit", "verify", "--json", env=env)
    assert ok.returncode == 0, ok.stderr
    body = json.loads(ok.stdout)
    assert body["isValid"] is True and body["totalChecked"] == 12 and body["signaturesChecked"] is True
    # --db wins over the environment; without a key, checkpoints are only checked for consistency.
    lax = flowker("audit", "verify", "--db", database_url)
    assert lax.returncode == 0 and "signatures not checked" in lax.stdout

    set_column(database, 4, "result", "FAILED")
    broken = flowker("audit", "verify", env=env)
    assert broken.returncode == 1
    assert "broken" in broken.stdout and "entry 4" in broken.stdout


def test_export_then_offline_verify_and_a_truncated_export(populated, key_files, tmp_path):
    _, env = populated
    out = tmp_path / "audit.jsonl"
    exported = flowker("audit", "export", "--out", str(out), env=env)
    assert exported.returncode == 0, exported.stderr
    assert "exported 12 entries and 2 checkpoints" in exported.stdout
    # Offline: no database in the environment at all.
    offline = flowker("audit", "verify", "--file", str(out), "--public-key", key_files[1])
    assert offline.returncode == 0, offline.stdout + offline.stderr
    assert "end is signed" in offline.stdout

    lines = out.read_text(encoding="utf-8").splitlines(keepends=True)
    truncated = tmp_path / "truncated.jsonl"
    truncated.write_text("".join(lines[:-3]), encoding="utf-8")
    result = flowker("audit", "verify", "--file", str(truncated), "--public-key", key_files[1])
    assert result.returncode == 1 and "truncated" in result.stdout

    unsigned = flowker("audit", "verify", "--file", str(out))
    assert unsigned.returncode == 0 and "not checked" in unsigned.stderr


def test_offline_verify_refuses_a_foreign_key_and_an_unsigned_export(populated, tmp_path):
    _, env = populated
    other = tmp_path / "other.pem"
    made = flowker("audit", "keygen", "--out", str(other), "--public-out", str(tmp_path / "other.pub"))
    assert made.returncode == 0 and oct(os.stat(other).st_mode & 0o777) == "0o600"
    out = tmp_path / "audit.jsonl"
    assert flowker("audit", "export", "--out", str(out), env=env).returncode == 0
    foreign = flowker("audit", "verify", "--file", str(out), "--public-key", str(tmp_path / "other.pub"))
    assert foreign.returncode == 1 and "not a trusted public key" in foreign.stdout

    unsigned_out = tmp_path / "unsigned.jsonl"
    no_key_env = {k: v for k, v in env.items() if k != "FLOWKER_AUDIT_SIGNING_KEY"}
    assert flowker("audit", "export", "--out", str(unsigned_out), env=no_key_env).returncode == 0
    public = flowker("audit", "public-key", env=env).stdout
    (tmp_path / "ours.pub").write_text(public)
    refused = flowker("audit", "verify", "--file", str(unsigned_out), "--public-key", str(tmp_path / "ours.pub"))
    assert refused.returncode == 1 and "not signed" in refused.stdout


def test_usage_and_configuration_errors_exit_2(populated, tmp_path):
    _, env = populated
    both = flowker("audit", "verify", "--db", "sqlite:///x.db", "--file", "x.jsonl", env=env)
    assert both.returncode == 2
    bad_key = flowker("audit", "verify", env={**env, "FLOWKER_AUDIT_SIGNING_KEY": str(tmp_path / "missing.pem")})
    assert bad_key.returncode == 2 and "missing.pem" in bad_key.stderr
    empty = flowker("audit", "verify", "--db", f"sqlite:///{tmp_path}/never-migrated.db")
    # A file that does not exist is named, not created, and not "run db upgrade" (it is
    # most likely the wrong database, not an unmigrated one).
    assert empty.returncode == 2 and f"no database at {tmp_path}/never-migrated.db" in empty.stderr
    assert not (tmp_path / "never-migrated.db").exists()


def test_checkpoint_on_demand(populated):
    database, env = populated
    signed = flowker("audit", "checkpoint", env=env)
    assert signed.returncode == 0 and "sequence 12" in signed.stdout
    with database.connection_context():
        sequences = [r[0] for r in database.execute_sql("SELECT sequence FROM audit_checkpoint ORDER BY sequence")]
    assert sequences == [5, 10, 12]

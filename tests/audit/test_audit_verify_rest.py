"""The REST verify runs every check the CLI runs (issue 19 §2), one at a time per process,
and verification streams in constant memory (§3)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import tracemalloc

import falcon.testing
import pytest
from app_factory import app_settings
from audit_helpers import delete_checkpoints_from, delete_entries, rewrite_from

from flowker.audit.chain import AuditLog
from flowker.audit.checkpoints import load_signing_key
from flowker.audit.verify import verify_database
from flowker.audit.verify_gate import VerifyGate
from flowker.errors import TooManyRequests

API_KEY = "rest-verify-key-0123456789"


@pytest.fixture
def rest_and_cli(database, database_url, key_files, tmp_path):
    """A 12-entry chain (checkpoints at 5 and 10), an app on it, and the CLI's verdict."""
    from flowker.api.app import create_app

    log = AuditLog(database, signing_key=load_signing_key(key_files[0]), checkpoint_interval=5)
    for i in range(12):
        log.append("WORKFLOW_UPDATED", "UPDATE", "SUCCESS", "workflow", f"wf-{i}", metadata={"i": i})
    settings = app_settings(
        database_url, api_keys=f"tester:{API_KEY}", audit_signing_key=key_files[0], audit_checkpoint_interval="5"
    )
    app = create_app(settings, database=database)
    client = falcon.testing.TestClient(app, headers={"X-API-Key": API_KEY})
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWKER_")}
    env.update(
        FLOWKER_DATABASE_URL=database_url, FLOWKER_AUDIT_SIGNING_KEY=key_files[0], FLOWKER_AUDIT_CHECKPOINT_INTERVAL="5"
    )

    def rest_at_newest():
        newest = client.simulate_get("/v1/audit-events", params={"sortOrder": "desc", "limit": 1}).json["items"][0]
        return client.simulate_get(f"/v1/audit-events/{newest['eventId']}/verify").json

    def cli():
        done = subprocess.run(
            [sys.executable, "-m", "flowker", "audit", "verify", "--json"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        assert done.returncode in (0, 1), done.stderr
        return json.loads(done.stdout)

    try:
        yield database, rest_at_newest, cli, app
    finally:
        app.state.close()


def _same(rest: dict, cli: dict) -> None:
    assert rest == {k: cli[k] for k in ("isValid", "totalChecked", "firstInvalidId", "message") if k in cli}


def test_truncation_through_the_last_checkpoint(rest_and_cli):
    database, rest_at_newest, cli, _app = rest_and_cli
    _same(rest_at_newest(), cli())
    delete_entries(database, [12, 11, 10])  # the checkpoint at 10 stays, pointing past the end
    rest, expected = rest_at_newest(), cli()
    assert expected["isValid"] is False and "signs sequence 10 but the chain ends at 9" in expected["message"]
    _same(rest, expected)


def test_rewrite_with_the_later_checkpoints_deleted(rest_and_cli):
    database, rest_at_newest, cli, _app = rest_and_cli
    rewrite_from(database, 6, marker=1)
    delete_checkpoints_from(database, 6)
    rest, expected = rest_at_newest(), cli()
    assert expected["isValid"] is False and "checkpoints were removed" in expected["message"]
    _same(rest, expected)


def test_a_second_verify_in_the_process_gets_429_with_retry_after(rest_and_cli):
    _database, _rest_at_newest, _cli, app = rest_and_cli
    client = falcon.testing.TestClient(app, headers={"X-API-Key": API_KEY})
    event_id = client.simulate_get("/v1/audit-events", params={"limit": 1}).json["items"][0]["eventId"]
    gate = next(resource.gate for resource in _resources(app) if hasattr(resource, "gate"))
    gate._lock.acquire()  # a verification in flight in this process
    try:
        busy = client.simulate_get(f"/v1/audit-events/{event_id}/verify")
    finally:
        gate._lock.release()
    assert busy.status_code == 429 and busy.json["code"] == "FLK-0614"
    assert int(busy.headers["Retry-After"]) >= 1
    assert client.simulate_get(f"/v1/audit-events/{event_id}/verify").json["isValid"] is True


def _resources(app):
    """The route resources of a falcon app (its router's compiled nodes)."""
    found, stack = [], list(app._router._roots)
    while stack:
        node = stack.pop()
        if node.resource is not None:
            found.append(node.resource)
        stack.extend(node.children)
    return found


def test_the_gate_runs_one_at_a_time_and_reuses_an_unchanged_result(chain_db):
    log = AuditLog(chain_db)
    log.append("WORKFLOW_UPDATED", "UPDATE", "SUCCESS", "workflow", "wf")
    gate, entered, release, runs = VerifyGate(), threading.Event(), threading.Event(), []

    def slow_verify():
        runs.append(1)
        entered.set()
        release.wait(10)
        return verify_database(chain_db)

    worker = threading.Thread(target=gate.run, args=(chain_db, 1, slow_verify))
    worker.start()
    try:
        assert entered.wait(10)
        with pytest.raises(TooManyRequests) as refused:
            gate.run(chain_db, 1, lambda: verify_database(chain_db))
        assert refused.value.headers["Retry-After"].isdigit()
    finally:
        release.set()
        worker.join(10)
    assert gate.run(chain_db, 1, slow_verify).is_valid and len(runs) == 1  # reused: nothing changed
    log.append("WORKFLOW_UPDATED", "UPDATE", "SUCCESS", "workflow", "wf-2")
    assert gate.run(chain_db, 1, slow_verify).is_valid and len(runs) == 2  # the head moved: run again


def _peak_bytes_verifying(database) -> int:
    tracemalloc.start()
    try:
        result = verify_database(database)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.is_valid, result.message
    return peak


def _grow_to(log: AuditLog, count: int) -> None:
    items = [
        {
            "event_type": "STEP_COMPLETED",
            "action": "EXECUTE",
            "result": "SUCCESS",
            "resource_type": "execution",
            "resource_id": f"run-{i}",
            "metadata": {"payload": "x" * 200, "i": i},
        }
        for i in range(500)
    ]
    with log.database.connection_context():
        have = verify_database(log.database).total_checked
    while have < count:
        log.append_many(items[: min(500, count - have)])
        have += min(500, count - have)


def test_verify_memory_does_not_grow_with_the_chain(chain_db):
    log = AuditLog(chain_db)
    _grow_to(log, 2_000)
    small = _peak_bytes_verifying(chain_db)
    _grow_to(log, 20_000)
    large = _peak_bytes_verifying(chain_db)
    # Ten times the entries (about 5 MB more text): the peak stays within 1 MB of the small one.
    assert large < small + 1_000_000, (small, large)

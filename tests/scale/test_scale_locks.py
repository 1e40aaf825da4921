"""Lock ordering between the lease heartbeat, step commits and execution ends, on a real
PostgreSQL (several runs share one process and one audit lock).

Found by the multi-server load test (``deadlock detected``, answered as 500): the step
commit took the audit lock before renewing the execution row, while the execution's end
and recovery take the row first; the heartbeat's multi-row UPDATE closed the cycle. The
commit now renews the row first. This test builds that exact interleaving step by step
(the other session holding the audit lock is released last), so a regression deadlocks
every time.
"""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from scale_helpers import wait_for

pytestmark = pytest.mark.postgres

OWNER = "lock-test-owner"


def _waits(connection, pid: int | None, locktype: str) -> bool:
    """Whether that backend waits for a lock of that type (other tests share the server)."""
    if pid is None:
        return False
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COUNT(*) FROM pg_locks WHERE NOT granted AND pid = %s AND locktype = %s", (pid, locktype)
        )
        return cursor.fetchone()[0] > 0


def test_heartbeat_step_commit_and_finish_do_not_deadlock(postgres_schema_url):
    import psycopg2

    from flowker.audit.store import AUDIT_LOCK_ID
    from flowker.runner.engine import COMPLETED, RunOutcome, StepRecord
    from flowker.runner.graph import NodePlan
    from flowker.runner.records import ExecutionRecorder
    from flowker.runner.recovery import LeaseHeartbeat
    from flowker.security.redaction import Redactor
    from flowker.storage.database import bind_database
    from flowker.storage.migrations import upgrade
    from flowker.storage.models import Execution, utcnow

    database = bind_database(postgres_schema_url)
    upgrade(database)
    lease = dt.timedelta(seconds=60)
    with database.connection_context():
        # x sorts and is stored before y, so the heartbeat's UPDATE locks x first.
        x, y = (
            Execution.create(
                id=f"00000000-0000-4000-8000-00000000000{n}",
                workflow_id="w",
                workflow_version=1,
                status="running",
                total_steps=1,
                owner=OWNER,
                lease_expires_at=utcnow() + lease,
            )
            for n in (1, 2)
        )
    admin = psycopg2.connect(dbname=database.database, **database.connect_params)
    blocker = psycopg2.connect(dbname=database.database, **database.connect_params)
    heartbeat = LeaseHeartbeat(OWNER, 60.0, interval=3600)
    errors: list[str] = []
    pids: dict[str, int] = {}

    def in_thread(name, work):
        def run():
            try:
                with database.connection_context():
                    pids[name] = database.execute_sql("SELECT pg_backend_pid()").fetchone()[0]
                    work()
            except Exception as exc:  # noqa: BLE001 - what the test reports
                errors.append(f"{name}: {type(exc).__name__}: {str(exc).splitlines()[0]}")

        thread = threading.Thread(target=run, name=name)
        thread.start()
        return thread

    node = NodePlan(id="start", name="start", type="trigger", step_number=1, incoming=())
    now = utcnow()
    step = StepRecord(node=node, status=COMPLETED, started_at=now, completed_at=now, output={})
    step_commit = ExecutionRecorder(x, owner=OWNER, lease_seconds=60, redactor=Redactor(), flush_interval=0.0)
    ending = ExecutionRecorder(y, owner=OWNER, lease_seconds=60, redactor=Redactor())
    threads = []
    try:
        with blocker.cursor() as cursor:  # another process appending to the audit chain
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (AUDIT_LOCK_ID,))
        threads.append(in_thread("step commit (x)", lambda: step_commit.step_finished(step)))
        wait_for(
            lambda: _waits(admin, pids.get("step commit (x)"), "advisory"),
            "the step commit to wait for the audit lock",
            10,
        )
        threads.append(in_thread("finish (y)", lambda: ending.finish(RunOutcome(status=COMPLETED, final_output={}))))
        wait_for(lambda: _waits(admin, pids.get("finish (y)"), "advisory"), "the finish to wait for the audit lock", 10)
        heartbeat.track(x.id)
        heartbeat.track(y.id)
        threads.append(in_thread("heartbeat", heartbeat.beat))
        wait_for(lambda: _waits(admin, pids.get("heartbeat"), "transactionid"), "the heartbeat to wait for row y", 10)
        blocker.commit()  # the audit lock goes to the step commit first
        for thread in threads:
            thread.join(timeout=30)
    finally:
        blocker.rollback()
        blocker.close()
        admin.close()
        heartbeat.stop()
        if not database.is_closed():
            database.close()
        database.close_all()
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []

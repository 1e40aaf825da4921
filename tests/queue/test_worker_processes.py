"""Real ``flowker worker`` processes on each backend (PostgreSQL, and SQLite with several
processes): every queued execution runs exactly once, a workflow's ``concurrency`` holds
across processes (seen from the executor's side), an idle worker barely touches the
database and a notification wakes it at once, and SIGTERM lets the run in flight end."""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone

from flowker.storage.database import is_postgres, write_transaction
from queue_helpers import execution_report, store_stub_executor, store_workflow, wait_for, workflow_spec

RUNS = 200
WORKERS = 3


def _settled(database, count: int):
    def check():
        report = execution_report(database)
        done = [row for row in report["executions"].values() if row.status in ("completed", "failed")]
        return report if len(done) >= count else None

    return check


def test_200_queued_executions_across_3_workers_each_finish_exactly_once(database, service, stub, start_worker):
    # Calls of 50 ms: one worker alone would need 2.5 s for all 200, so on a loaded
    # machine every worker is claiming before the queue is drained (the share check below).
    stub.stub.delay = 0.05
    store_stub_executor(stub.url, ["work"])
    workflow_id = store_workflow(workflow_spec("bulk", "work"))
    workers = [start_worker("--concurrency", "4") for _ in range(WORKERS)]
    queued = [service.enqueue(workflow_id, {"n": n}, actor=None).execution.id for n in range(RUNS)]
    report = wait_for(_settled(database, RUNS), "every queued execution to end", 180, interval=0.2)

    rows, events = report["executions"], report["events"]
    assert sorted(rows) == sorted(queued)
    assert [row.status for row in rows.values()].count("completed") == RUNS
    for execution_id in queued:
        for event in ("EXECUTION_QUEUED", "EXECUTION_STARTED", "EXECUTION_COMPLETED"):
            assert events[(execution_id, event)] == 1, (execution_id, event, events[(execution_id, event)])
        assert stub.stub.calls[execution_id] == 1, execution_id
        assert rows[execution_id].started_at >= rows[execution_id].queued_at
    assert sum(stub.stub.calls.values()) == RUNS
    assert report["verify"].is_valid, report["verify"]
    # Every process took a share (the owner is host:pid:...).
    pids = {row.owner.split(":")[1] for row in rows.values()}
    assert len(pids) == WORKERS, pids
    for worker in workers:
        assert worker.terminate() == 0, worker.output
        assert "Stopped" in worker.output


def test_a_workflows_concurrency_holds_across_worker_processes(database, service, stub, start_worker):
    # Slow calls: the runs of the limited workflow take longer (5 x 0.3 s) than an idle
    # SQLite worker's longest backoff (1 s), so every worker is looking while they run.
    stub.stub.delay = 0.3
    store_stub_executor(stub.url, ["limited", "free"])
    limited = store_workflow(workflow_spec("limited", "limited", concurrency=2))
    free = store_workflow(workflow_spec("free", "free"))
    workers = [start_worker("--concurrency", "4") for _ in range(WORKERS)]  # 12 run threads, idle
    # Queued in one transaction (each enqueue a savepoint of it): the idle workers race for all 20.
    with write_transaction():
        for n in range(10):
            service.enqueue(limited, {"n": n}, actor=None)
            service.enqueue(free, {"n": n}, actor=None)
    report = wait_for(_settled(database, 20), "the 20 runs to end", 120, interval=0.2)

    assert all(row.status == "completed" for row in report["executions"].values())
    # The executor's view: never more than 2 calls of the limited workflow at once...
    assert stub.stub.most_in_flight["limited"] == 2, stub.stub.most_in_flight
    # ...while the other workflow was not held back by it.
    assert stub.stub.most_in_flight["free"] >= 3, stub.stub.most_in_flight
    assert report["verify"].is_valid
    for worker in workers:
        assert worker.terminate() == 0, worker.output


STAMPED_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z (.*)$", re.MULTILINE)


def _stamped(worker) -> list[tuple[datetime, str]]:
    """The worker's log lines with their times (UTC)."""
    return [(datetime.fromisoformat(stamp), rest) for stamp, rest in STAMPED_LINE.findall(worker.output)]


def _claims_between(worker, start: datetime, end: datetime) -> int:
    """The claims the worker logged between ``start`` and ``end``, by the lines' own times:
    its DEBUG lines reach the output in batches, up to a second late (log_output.FLUSH_SECONDS)."""
    wait_for(
        lambda: any(stamp > end for stamp, _ in _stamped(worker)),
        "the worker's lines past the idle window",
        15,  # a look every 5 s at most, and its lines up to 1 s late
    )
    return sum(1 for stamp, rest in _stamped(worker) if start <= stamp <= end and "queue claim: " in rest)


def _utc_now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def test_an_idle_worker_claims_rarely_and_new_work_wakes_it(database, service, stub, start_worker):
    store_stub_executor(stub.url, ["work"])
    workflow_id = store_workflow(workflow_spec("wake", "work"))
    worker = start_worker("--concurrency", "2", env={"FLOWKER_LOG_LEVEL": "DEBUG"})
    time.sleep(0.5)  # past the first looks
    idle_start = _utc_now()
    time.sleep(3.0)
    idle_claims = _claims_between(worker, idle_start, _utc_now())
    postgres = is_postgres(database)
    # PostgreSQL: LISTEN, and a look every 5 s at most; SQLite: a backoff doubling to 1 s.
    assert idle_claims <= (2 if postgres else 6), (idle_claims, worker.output[-2000:])

    execution_id = service.enqueue(workflow_id, {}, actor=None).execution.id
    report = wait_for(_settled(database, 1), "the run to end", 30)
    row = report["executions"][execution_id]
    assert row.status == "completed"
    waited = (row.started_at - row.queued_at).total_seconds()
    # A notification wakes it at once (the fallback look is 5 s away); SQLite's longest wait is 1 s.
    assert waited < (0.5 if postgres else 1.5), waited
    assert worker.terminate() == 0


def test_sigterm_lets_the_run_in_flight_end_then_the_worker_exits_0(database, service, stub, start_worker):
    stub.stub.delay = 2.0
    store_stub_executor(stub.url, ["work"])
    workflow_id = store_workflow(workflow_spec("graceful", "work"))
    worker = start_worker("--concurrency", "1", "--grace-seconds", "30")
    execution_id = service.enqueue(workflow_id, {}, actor=None).execution.id
    wait_for(lambda: stub.stub.in_flight["work"] == 1, "the call to be in flight", 30)
    started = time.monotonic()
    assert worker.terminate() == 0, worker.output
    assert time.monotonic() - started < 30
    row = execution_report(database)["executions"][execution_id]
    assert row.status == "completed", worker.output
    assert "Stopping: no new claims" in worker.output and "Stopped\n" in worker.output


def test_worker_processes_fire_a_schedule_tick_once_and_run_it(database, service, stub, start_worker):
    """Two real `flowker worker` processes both run the scheduler: the every-minute tick
    due since the workflow's activation (two minutes ago, catchUp latest) fires once, and
    one of the workers runs the execution it queued to the end."""
    import datetime as dt

    from flowker.storage.models import Workflow, utcnow

    store_stub_executor(stub.url, ["tick"])
    spec = workflow_spec("every-minute", "tick")
    spec["nodes"][0]["data"] = {"triggerType": "schedule", "cron": "* * * * *", "catchUp": "latest"}
    workflow_id = store_workflow(spec)
    activated = utcnow() - dt.timedelta(minutes=2, seconds=5)
    Workflow.update(updated_at=activated).where(Workflow.id == workflow_id).execute()
    workers = [start_worker("--concurrency", "2") for _ in range(2)]
    report = wait_for(_settled(database, 1), "the scheduled execution to end", 60, interval=0.2)
    rows = report["executions"]
    assert len(rows) == 1, rows
    (row,) = rows.values()
    assert row.status == "completed" and row.workflow_id == workflow_id
    assert set(row.input_data) == {"scheduledAt"}
    assert stub.stub.calls[row.id] == 1
    assert report["verify"].is_valid, report["verify"]
    for worker in workers:
        assert worker.terminate() == 0, worker.output
    # Still one: no tick was fired twice while both workers passed over the schedule.
    assert len(execution_report(database)["executions"]) == 1

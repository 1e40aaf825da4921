"""The Scheduler on each backend with an injected clock (no sleeping): a downtime of three
ticks in each catchUp mode, exactly once within and across passes, the audit entry naming
the tick, a refused input, an inactive workflow, and a fired run that a worker runs."""

from __future__ import annotations

import datetime as dt

import pytest

from flowker.audit.verify import verify_database
from flowker.queue.claim import claim
from flowker.schedules.scheduler import Scheduler, SchedulerThread
from flowker.storage.models import AuditEntry, Execution, ScheduleTick

from schedule_helpers import at, schedule_spec, store_workflow


def _queued(workflow_id: str) -> list[str]:
    rows = Execution.select().where(Execution.workflow_id == workflow_id).order_by(Execution.queued_at)
    return sorted(row.input_data["scheduledAt"] for row in rows)


@pytest.mark.parametrize(
    ("catch_up", "back_at", "expected"),
    [
        ("none", "2026-06-01 12:00:10", ["2026-06-01T12:00:00Z"]),  # only the current tick
        ("none", "2026-06-01 12:30:00", []),
        ("latest", "2026-06-01 12:30:00", ["2026-06-01T12:00:00Z"]),
        ("all", "2026-06-01 12:30:00", ["2026-06-01T10:00:00Z", "2026-06-01T11:00:00Z", "2026-06-01T12:00:00Z"]),
    ],
)
def test_a_downtime_of_three_ticks_in_each_catch_up_mode(service, database, catch_up, back_at, expected):
    workflow = store_workflow(schedule_spec(f"hourly-{catch_up}", "0 * * * *", catch_up), at("2026-06-01 08:30"))
    scheduler = Scheduler(service)
    first = scheduler.tick(at("2026-06-01 09:00:05"))
    assert [f.tick for f in first.fired] == [at("2026-06-01 09:00")]
    assert first.next_due == at("2026-06-01 10:00")
    # Down from 09:00:05 to back_at: the 10:00, 11:00 and 12:00 ticks were missed.
    again = Scheduler(service).tick(at(back_at))  # a new process after the downtime
    assert [f"{f.tick:%Y-%m-%dT%H:%M:%SZ}" for f in again.fired] == expected
    assert _queued(workflow.id) == ["2026-06-01T09:00:00Z"] + expected
    # The same pass again fires nothing more.
    assert Scheduler(service).tick(at(back_at)).fired == []
    assert len(_queued(workflow.id)) == 1 + len(expected)


def test_first_activation_fires_nothing_from_before_it(service, database):
    workflow = store_workflow(schedule_spec("every-five", "*/5 * * * *", "all"), at("2026-06-01 10:02:30"))
    scheduler = Scheduler(service)
    assert scheduler.tick(at("2026-06-01 10:04:59")).fired == []
    assert [f.tick for f in scheduler.tick(at("2026-06-01 10:05:01")).fired] == [at("2026-06-01 10:05")]
    assert _queued(workflow.id) == ["2026-06-01T10:05:00Z"]


def test_a_fired_tick_is_queued_with_its_audit_entry_and_a_worker_runs_it(service, database):
    spec = schedule_spec("berlin-nightly", "30 2 * * *", "latest", timezone="Europe/Berlin", input={"report": "daily"})
    workflow = store_workflow(spec, at("2026-03-28 00:00"))
    # Spring forward: 02:30 does not exist on 2026-03-29, the run is at 03:00 CEST (01:00Z).
    fired = Scheduler(service).tick(at("2026-03-29 01:00:01")).fired
    assert [f.tick for f in fired] == [at("2026-03-29 01:00")]
    execution = Execution.get_by_id(fired[0].execution_id)
    assert execution.status == "queued"
    assert execution.input_data == {"report": "daily", "scheduledAt": "2026-03-29T01:00:00Z"}
    tick_row = ScheduleTick.get(ScheduleTick.workflow_id == workflow.id)
    assert (tick_row.tick, tick_row.execution_id, tick_row.outcome) == (
        dt.datetime(2026, 3, 29, 1, 0),
        execution.id,
        "queued",
    )
    entry = AuditEntry.get((AuditEntry.resource_id == execution.id) & (AuditEntry.event_type == "EXECUTION_QUEUED"))
    assert (entry.actor_type, entry.actor_id) == ("system", "scheduler")
    assert '"scheduledAt":"2026-03-29T01:00:00Z"' in entry.canonical
    assert '"cron":"30 2 * * *"' in entry.canonical and '"timezone":"Europe/Berlin"' in entry.canonical

    (claimed,) = claim(service, 1).executions
    done = service.run_claimed(claimed)
    assert done.status == "completed", done.error_message
    assert done.final_output == {"at": "2026-03-29T01:00:00Z"}
    assert verify_database(database).is_valid


def test_fall_back_fires_the_repeated_0230_once(service, database):
    spec = schedule_spec("berlin-fall", "30 2 * * *", "all", timezone="Europe/Berlin")
    workflow = store_workflow(spec, at("2026-10-24 12:00"))
    scheduler = Scheduler(service)
    for minute in range(0, 24 * 60, 7):  # a pass every 7 minutes through the day of the change
        scheduler.tick(at("2026-10-24 22:00") + dt.timedelta(minutes=minute))
    assert _queued(workflow.id) == ["2026-10-25T00:30:00Z"]  # 02:30 CEST, not 02:30 CET as well


def test_a_refused_input_records_the_tick_and_is_not_tried_again(service, database, caplog):
    spec = schedule_spec(
        "needs-region",
        "0 * * * *",
        inputSchema={"type": "object", "required": ["region"]},
    )
    workflow = store_workflow(spec, at("2026-06-01 08:30"))
    scheduler = Scheduler(service)
    (fired,) = scheduler.tick(at("2026-06-01 09:00:01")).fired
    assert fired.execution_id is None
    assert "refused by the inputSchema" in caplog.text
    assert ScheduleTick.get(ScheduleTick.workflow_id == workflow.id).outcome == "refused"
    assert scheduler.tick(at("2026-06-01 09:00:30")).fired == []
    assert Execution.select().where(Execution.workflow_id == workflow.id).count() == 0


def test_inactive_workflows_and_other_triggers_are_not_scheduled(service, database):
    store_workflow(schedule_spec("paused", "* * * * *"), at("2026-06-01 08:00"), status="inactive")
    manual = schedule_spec("manual", "* * * * *")
    manual["nodes"][0]["data"] = {"triggerType": "manual"}
    store_workflow(manual, at("2026-06-01 08:00"))
    result = Scheduler(service).tick(at("2026-06-01 09:00"))
    assert result.fired == [] and result.next_due is None
    assert Execution.select().count() == 0


def test_old_ticks_are_pruned_but_each_workflow_keeps_its_latest(service, database):
    workflow = store_workflow(schedule_spec("pruned", "0 0 * * *", "all"), at("2026-05-01 00:00:30"))
    Scheduler(service).tick(at("2026-05-20 00:00:01"))  # 19 ticks (cap 1000), then prunes
    kept = [row.tick for row in ScheduleTick.select().where(ScheduleTick.workflow_id == workflow.id)]
    assert min(kept) >= dt.datetime(2026, 5, 13) and max(kept) == dt.datetime(2026, 5, 20)
    assert Execution.select().where(Execution.workflow_id == workflow.id).count() == 19


def test_the_thread_fires_a_due_tick_and_stops(service, database):
    now = dt.datetime.now(dt.timezone.utc)
    # Yearly, activated 400 days ago: one tick is due now, the next is months away.
    workflow = store_workflow(schedule_spec("thread", "0 0 1 1 *"), now - dt.timedelta(days=400))
    woken = []
    runner = SchedulerThread(Scheduler(service), refresh_seconds=0.05, on_fired=lambda: woken.append(1))
    runner.start()
    try:
        deadline = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=20)
        while not _queued(workflow.id) and dt.datetime.now(dt.timezone.utc) < deadline:
            database.close()  # this thread's connection: see the runner's commits fresh
            runner._stop.wait(0.05)
    finally:
        runner.stop()
    assert len(_queued(workflow.id)) == 1 and runner.passes >= 1 and woken == [1]


def test_a_workflow_created_and_activated_through_the_catalog_fires_from_its_activation(service, database, registry):
    from flowker.audit.chain import SYSTEM_ACTOR
    from flowker.catalog.workflows import WorkflowStore
    from flowker.errors import SpecError

    store = WorkflowStore(registry)
    with pytest.raises(SpecError) as refused:
        store.create(schedule_spec("bad-cron", "* * * *"), SYSTEM_ACTOR)
    assert "has 4 fields; it needs 5" in str(refused.value.problems)
    workflow = store.activate(store.create(schedule_spec("catalog", "* * * * *"), SYSTEM_ACTOR).id, SYSTEM_ACTOR)
    activated = workflow.updated_at.replace(tzinfo=dt.timezone.utc)
    scheduler = Scheduler(service)
    fired = scheduler.tick(activated + dt.timedelta(minutes=3)).fired
    # catchUp latest: the 3 minutes since activation give one run, for the latest minute.
    assert [f.tick for f in fired] == [(activated + dt.timedelta(minutes=3)).replace(second=0, microsecond=0)]
    store.deactivate(workflow.id, SYSTEM_ACTOR)
    assert scheduler.tick(activated + dt.timedelta(minutes=10)).fired == []

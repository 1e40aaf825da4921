"""The scheduler's time arithmetic (flowker.schedules.ticks), without a database: which
ticks are due between a baseline and now, what each catchUp mode fires, and DST in
Europe/Berlin as cronsim documents it (Debian cron: a fixed wall time in the skipped
spring hour runs at the first valid minute after it, one in the repeated autumn hour
runs once; `*` in minute or hour runs by elapsed time)."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from flowker.validation.schedule_spec import ScheduleSpec, next_fire_times, schedule_of
from flowker.schedules.ticks import due_ticks, next_tick, ticks_to_fire

UTC = dt.timezone.utc


def at(text: str) -> dt.datetime:
    """An aware UTC datetime from 'YYYY-MM-DD HH:MM[:SS]'."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def hourly(catch_up: str) -> ScheduleSpec:
    return ScheduleSpec(cron="0 * * * *", catch_up=catch_up)


@pytest.mark.parametrize(
    ("catch_up", "now", "expected"),
    [
        # Down from just after the 09:00 tick until 12:00:10: 10:00, 11:00 and 12:00 were missed.
        ("all", "2026-06-01 12:00:10", ["10:00", "11:00", "12:00"]),
        ("latest", "2026-06-01 12:00:10", ["12:00"]),
        ("none", "2026-06-01 12:00:10", ["12:00"]),  # the current tick, 10 s late, within grace
        # Back at 12:30: the same three ticks missed, none of them current.
        ("all", "2026-06-01 12:30", ["10:00", "11:00", "12:00"]),
        ("latest", "2026-06-01 12:30", ["12:00"]),
        ("none", "2026-06-01 12:30", []),
    ],
)
def test_a_downtime_of_three_ticks_in_each_catch_up_mode(catch_up, now, expected):
    due = ticks_to_fire(hourly(catch_up), at("2026-06-01 09:00"), at(now))
    assert [tick.strftime("%H:%M") for tick in due.ticks] == expected
    assert all(tick.tzinfo is not None and tick.utcoffset() == dt.timedelta(0) for tick in due.ticks)


def test_none_fires_a_tick_only_within_the_grace_window():
    schedule = ScheduleSpec(cron="*/5 * * * *", catch_up="none")
    baseline = at("2026-06-01 10:00")
    assert [t.minute for t in ticks_to_fire(schedule, baseline, at("2026-06-01 10:05:59")).ticks] == [5]
    late = ticks_to_fire(schedule, baseline, at("2026-06-01 10:06:01"))
    assert late.ticks == [] and late.left_out
    wider = ticks_to_fire(schedule, baseline, at("2026-06-01 10:06:01"), grace=dt.timedelta(minutes=2))
    assert [t.minute for t in wider.ticks] == [5]


def test_a_tick_at_the_baseline_is_not_due_again_and_one_exactly_now_is():
    schedule = hourly("all")
    assert due_ticks(schedule, at("2026-06-01 10:00"), at("2026-06-01 10:59:59"), 10).ticks == []
    assert due_ticks(schedule, at("2026-06-01 10:00"), at("2026-06-01 11:00"), 10).ticks == [at("2026-06-01 11:00")]


def test_first_activation_fires_nothing_from_before_it():
    # Activated at 10:02:30 (the baseline of a workflow that never fired): 10:00 is not due.
    every_five = ScheduleSpec(cron="*/5 * * * *", catch_up="all")
    assert due_ticks(every_five, at("2026-06-01 10:02:30"), at("2026-06-01 10:04"), 100).ticks == []
    assert due_ticks(every_five, at("2026-06-01 10:02:30"), at("2026-06-01 10:05"), 100).ticks == [
        at("2026-06-01 10:05")
    ]


def test_all_is_capped_at_the_most_recent_ticks_and_says_older_ones_were_dropped():
    schedule = ScheduleSpec(cron="* * * * *", catch_up="all")
    now = at("2026-06-02 10:00:30")
    due = ticks_to_fire(schedule, at("2026-06-01 10:00"), now, limit=1000)
    assert len(due.ticks) == 1000 and due.left_out
    assert due.ticks[-1] == at("2026-06-02 10:00") and due.ticks[0] == at("2026-06-02 10:00") - dt.timedelta(
        minutes=999
    )
    exactly = due_ticks(schedule, at("2026-06-02 10:00") - dt.timedelta(minutes=1000), now, 1000)
    assert len(exactly.ticks) == 1000 and not exactly.left_out


def test_a_year_of_downtime_costs_a_bounded_search():
    schedule = ScheduleSpec(cron="* * * * *", catch_up="latest")
    due = ticks_to_fire(schedule, at("2025-06-01 00:00"), at("2026-06-01 12:34:56"))
    assert due.ticks == [at("2026-06-01 12:34")]


BERLIN = "Europe/Berlin"


def berlin_ticks(cron: str, start: str, count: int) -> list[str]:
    schedule = ScheduleSpec(cron=cron, timezone=BERLIN)
    return [t.isoformat() for t in next_fire_times(schedule, at(start), count)]


def test_daily_0230_berlin_on_the_spring_forward_day_runs_at_0300_cest():
    # 2026-03-29: clocks go from 02:00 CET to 03:00 CEST; 02:30 does not exist that day.
    assert berlin_ticks("30 2 * * *", "2026-03-27 12:00", 3) == [
        "2026-03-28T02:30:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
    ]


def test_daily_0230_berlin_on_the_fall_back_day_runs_once():
    # 2026-10-25: 03:00 CEST becomes 02:00 CET; 02:30 happens twice, the job runs at the first.
    assert berlin_ticks("30 2 * * *", "2026-10-24 12:00", 3) == [
        "2026-10-25T02:30:00+02:00",
        "2026-10-26T02:30:00+01:00",
        "2026-10-27T02:30:00+01:00",
    ]
    # A scheduler whose last fired tick is that first 02:30 (00:30Z) finds nothing more due
    # during the repeated hour (02:30 CET is 01:30Z).
    schedule = ScheduleSpec(cron="30 2 * * *", timezone=BERLIN, catch_up="all")
    assert due_ticks(schedule, at("2026-10-25 00:30"), at("2026-10-25 01:45"), 10).ticks == []
    assert due_ticks(schedule, at("2026-10-24 01:00"), at("2026-10-25 01:45"), 10).ticks == [at("2026-10-25 00:30")]


def test_hourly_at_half_past_berlin_runs_by_elapsed_time_across_both_transitions():
    assert berlin_ticks("30 * * * *", "2026-03-29 00:00", 3) == [
        "2026-03-29T01:30:00+01:00",
        "2026-03-29T03:30:00+02:00",  # 02:30 does not exist
        "2026-03-29T04:30:00+02:00",
    ]
    assert berlin_ticks("30 * * * *", "2026-10-24 23:00", 4) == [
        "2026-10-25T01:30:00+02:00",
        "2026-10-25T02:30:00+02:00",
        "2026-10-25T02:30:00+01:00",  # the repeated hour runs again
        "2026-10-25T03:30:00+01:00",
    ]


@pytest.mark.parametrize("cron", ["30 2 * * *", "30 * * * *", "*/20 * * * *", "0 1-3 * * *", "15 2 25 10 *"])
def test_the_window_search_finds_what_a_plain_forward_walk_finds(cron):
    """due_ticks searches a window behind now; a walk from the baseline is the reference,
    with baselines and nows around both of 2026's Berlin transitions."""
    schedule = ScheduleSpec(cron=cron, timezone=BERLIN)
    rng = random.Random(cron)
    for transition in (at("2026-03-29 01:00"), at("2026-10-25 01:00")):
        for _ in range(40):
            baseline = transition + dt.timedelta(minutes=rng.randint(-3000, 200))
            now = baseline + dt.timedelta(minutes=rng.randint(0, 4000))
            reference = []
            for tick in schedule.ticks_after(baseline):
                if tick.astimezone(UTC) > now:
                    break
                reference.append(tick.astimezone(UTC))
            for limit in (1, 3, 1000):
                due = due_ticks(schedule, baseline, now, limit)
                assert due.ticks == reference[-limit:], (baseline, now, limit)
                assert due.left_out == (len(reference) > limit), (baseline, now, limit)


def test_next_tick_and_a_spec_read_from_a_workflow_body():
    body = {
        "nodes": [
            {
                "id": "start",
                "type": "trigger",
                "data": {"triggerType": "schedule", "cron": " 30  2 * * * ", "timezone": BERLIN, "input": {"a": 1}},
            }
        ]
    }
    schedule = schedule_of(body)
    assert schedule == ScheduleSpec(cron="30 2 * * *", timezone=BERLIN, catch_up="latest")
    assert schedule.input == {"a": 1}
    assert schedule.run_input(at("2026-03-29 01:00")) == {"a": 1, "scheduledAt": "2026-03-29T01:00:00Z"}
    assert next_tick(schedule, at("2026-03-29 00:00")) == at("2026-03-29 01:00")
    assert schedule_of({"nodes": [{"id": "s", "type": "trigger", "data": {"triggerType": "manual"}}]}) is None
    bad = {"nodes": [{"id": "s", "type": "trigger", "data": {"triggerType": "schedule", "cron": "61 * * * *"}}]}
    assert schedule_of(bad) is None

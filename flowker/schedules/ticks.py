"""Which ticks of a schedule are due, and which of them ``catchUp`` fires.

Pure time arithmetic (no database): the Scheduler gives the baseline (the later of
the workflow's activation and its last fired tick) and now; these functions answer
the ticks to fire, oldest first, as aware UTC datetimes of second precision.

Only the most recent ticks are ever needed (one for ``none`` and ``latest``, at most
the cap for ``all``), so they are found in a window behind ``now`` that doubles until it
holds enough of them or reaches the baseline: a week of downtime of an every-minute
schedule costs a few thousand cron steps, not ten thousand per pass.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

from flowker.validation.schedule_spec import UTC, ScheduleSpec

# catchUp: all fires at most this many missed ticks (the most recent ones) per catch-up.
DEFAULT_CATCH_UP_LIMIT = 1000
# catchUp: none still fires a tick this late (a pass that ran a little after it).
DEFAULT_GRACE = _dt.timedelta(seconds=60)
_FIRST_WINDOW = _dt.timedelta(hours=1)


@dataclass(frozen=True)
class DueTicks:
    ticks: list[_dt.datetime]  # oldest first, aware UTC
    left_out: bool = False  # older due ticks exist that were not included


def due_ticks(schedule: ScheduleSpec, baseline: _dt.datetime, now: _dt.datetime, limit: int) -> DueTicks:
    """The most recent ``limit`` ticks t with baseline < t <= now (aware datetimes)."""
    baseline, now = baseline.astimezone(UTC), now.astimezone(UTC)
    if limit < 1 or now <= baseline:
        return DueTicks([])
    window = _FIRST_WINDOW
    while True:
        start = max(baseline, now - window)
        found = _ticks_between(schedule, start, baseline, now)
        if len(found) >= limit or start == baseline:
            break
        window *= 2
    if len(found) > limit:
        return DueTicks(found[-limit:], left_out=True)
    if start > baseline:  # exactly `limit` found in the window: is there an older one?
        older = next(iter(schedule.ticks_after(baseline)), None)
        return DueTicks(found, left_out=older is not None and older.astimezone(UTC) < found[0])
    return DueTicks(found)


def _ticks_between(schedule: ScheduleSpec, start: _dt.datetime, baseline: _dt.datetime, now: _dt.datetime) -> list:
    found: set[_dt.datetime] = set()
    for tick in schedule.ticks_after(start):
        moment = tick.astimezone(UTC)
        if moment > now:
            break
        # A fixed-wall-time job iterates in local time: from a start in the repeated autumn
        # hour it may yield a tick a little before `start`, a real one all the same.
        if moment > baseline:
            found.add(moment)
    return sorted(found)


def ticks_to_fire(
    schedule: ScheduleSpec,
    baseline: _dt.datetime,
    now: _dt.datetime,
    *,
    grace: _dt.timedelta = DEFAULT_GRACE,
    limit: int = DEFAULT_CATCH_UP_LIMIT,
) -> DueTicks:
    """The ticks ``catchUp`` fires now: none - the latest due tick only if it is at most
    ``grace`` old; latest - the latest due tick; all - every due tick, at most ``limit``
    (the most recent; ``left_out`` says older ones were dropped)."""
    if schedule.catch_up == "all":
        return due_ticks(schedule, baseline, now, limit)
    due = due_ticks(schedule, baseline, now, 1)
    if schedule.catch_up == "none" and due.ticks and now.astimezone(UTC) - due.ticks[-1] > grace:
        return DueTicks([], left_out=True)
    return due


def next_tick(schedule: ScheduleSpec, after: _dt.datetime) -> _dt.datetime | None:
    """The first tick after ``after``, aware UTC (None: the expression never fires again)."""
    tick = next(iter(schedule.ticks_after(after)), None)
    return tick.astimezone(UTC) if tick is not None else None

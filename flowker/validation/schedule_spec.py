"""A schedule trigger (``triggerType: schedule``) read from a workflow spec, and the
checks of its ``cron`` expression and ``timezone``.

The expression is parsed by ``cronsim`` (no cron parser of our own): five fields,
minute hour day-of-month month day-of-week, with cronsim's extensions (``L``, ``#``,
``W``, names of months and days). Fire times are computed in the IANA ``timezone``
(default UTC) with tz-aware datetimes, so daylight saving time follows cronsim's
documented Debian-cron behaviour: a job at a fixed wall time that falls in the hour
skipped in spring runs at the first valid minute after it, and one that falls in
the hour repeated in autumn runs once (the first occurrence); jobs with ``*`` in the
minute or hour field run by elapsed time (so both repeated-hour occurrences fire).
"""

from __future__ import annotations

import datetime as _dt
import functools
import zoneinfo
from dataclasses import dataclass, field
from typing import Any, Iterator

from cronsim import CronSim, CronSimError

SCHEDULE = "schedule"
CATCH_UP_MODES = ("none", "latest", "all")
DEFAULT_CATCH_UP = "latest"
DEFAULT_TIMEZONE = "UTC"
CRON_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
# The input key every scheduled run gets: the tick it fires for, ISO 8601 in UTC.
SCHEDULED_AT = "scheduledAt"
UTC = _dt.timezone.utc


@dataclass(frozen=True)
class ScheduleSpec:
    """A workflow's schedule trigger, checked (cron parses, timezone exists)."""

    cron: str
    timezone: str = DEFAULT_TIMEZONE
    catch_up: str = DEFAULT_CATCH_UP
    input: dict = field(default_factory=dict, compare=False)

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zone_named(self.timezone)

    def run_input(self, tick: _dt.datetime) -> dict:
        """The input of the run fired for ``tick`` (aware): the fixed input plus scheduledAt."""
        return {**self.input, SCHEDULED_AT: iso_utc(tick)}

    def ticks_after(self, moment: _dt.datetime) -> Iterator[_dt.datetime]:
        """Fire times strictly after ``moment`` (aware), as aware datetimes in the timezone."""
        return CronSim(self.cron, moment.astimezone(self.zone))


def iso_utc(moment: _dt.datetime) -> str:
    """``2026-03-29T01:00:00Z`` (second precision, as ticks are)."""
    return moment.astimezone(UTC).replace(tzinfo=None, microsecond=0).isoformat() + "Z"


@functools.lru_cache(maxsize=1)
def _known_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


@functools.lru_cache(maxsize=256)
def zone_named(name: str) -> zoneinfo.ZoneInfo:
    """The IANA zone ``name``; raises ValueError for names the tz database does not have."""
    if name != DEFAULT_TIMEZONE and name not in _known_zones():
        # available_timezones() is the list of names; ZoneInfo alone would also open
        # any relative path under the tz folders (and say little when it fails).
        raise ValueError(f"unknown timezone {name!r}")
    return zoneinfo.ZoneInfo(name)


def timezone_problem(name: Any) -> str | None:
    """Why ``name`` is not an IANA timezone, or None."""
    if not isinstance(name, str):
        return None  # the schema reports the type
    try:
        zone_named(name)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        from flowker.validation.suggestions import hint

        suggestion = hint(name, _known_zones()) or " (an IANA name such as Europe/Berlin, America/New_York or UTC)"
        return f"unknown timezone {name!r}{suggestion}"
    return None


def cron_problem(expression: Any) -> str | None:
    """Why ``expression`` is not a 5-field cron expression cronsim accepts, or None."""
    if not isinstance(expression, str):
        return None  # the schema reports the type
    parts = expression.split()
    if len(parts) != len(CRON_FIELDS):
        return (
            f"cron expression {expression!r} has {len(parts)} field{'' if len(parts) == 1 else 's'}; "
            f"it needs 5: {' '.join(CRON_FIELDS)}"
        )
    try:
        CronSim(expression, _dt.datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        return f"cron expression {expression!r}: {_field_message(str(exc), parts)}"
    except (ValueError, IndexError, KeyError, TypeError) as exc:  # cronsim's own parse on odd text
        return f"cron expression {expression!r} is not valid ({type(exc).__name__})"
    return None


def _field_message(message: str, parts: list[str]) -> str:
    # cronsim says "Bad hour" / "Bad day-of-month"; name the text of that field too.
    for index, name in enumerate(CRON_FIELDS):
        if message == f"Bad {name}":
            return f"the {name} field {parts[index]!r} is not valid"
    return message


def schedule_data(body: Any) -> Iterator[tuple[int, dict]]:
    """(node index, data) of each schedule trigger node of a workflow body."""
    nodes = body.get("nodes") if isinstance(body, dict) else None
    for index, node in enumerate(nodes if isinstance(nodes, list) else []):
        if not isinstance(node, dict) or node.get("type") != "trigger":
            continue
        data = node.get("data")
        if isinstance(data, dict) and data.get("triggerType") == SCHEDULE:
            yield index, data


def schedule_of(body: Any) -> ScheduleSpec | None:
    """The workflow's schedule, or None when its trigger is no (valid) schedule."""
    for _index, data in schedule_data(body):
        cron, timezone = data.get("cron"), data.get("timezone", DEFAULT_TIMEZONE)
        catch_up = data.get("catchUp", DEFAULT_CATCH_UP)
        fixed_input = data.get("input", {})
        if cron_problem(cron) or timezone_problem(timezone) or not isinstance(cron, str):
            return None
        if catch_up not in CATCH_UP_MODES or not isinstance(fixed_input, dict):
            return None
        return ScheduleSpec(cron=" ".join(cron.split()), timezone=timezone, catch_up=catch_up, input=fixed_input)
    return None


def next_fire_times(schedule: ScheduleSpec, after: _dt.datetime, count: int = 3) -> list[_dt.datetime]:
    """The next ``count`` fire times after ``after``, aware in the schedule's timezone."""
    times = []
    for tick in schedule.ticks_after(after):
        times.append(tick)
        if len(times) == count:
            break
    return times

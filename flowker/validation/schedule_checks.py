"""Checks of schedule triggers (``triggerType: schedule``): the cron expression parses
(cronsim, 5 fields), the timezone is an IANA name, schedule fields appear on schedule
triggers only, and the input a scheduled run gets matches the trigger's inputSchema.
"""

from __future__ import annotations

import datetime as _dt

from flowker.validation.schedule_spec import SCHEDULE, SCHEDULED_AT, cron_problem, iso_utc, timezone_problem
from flowker.validation.problems import ProblemList

SCHEDULE_FIELDS = ("cron", "timezone", "catchUp", "input")


def check_schedules(body: dict, problems: ProblemList) -> None:
    nodes = body.get("nodes")
    for index, node in enumerate(nodes if isinstance(nodes, list) else []):
        if not isinstance(node, dict) or node.get("type") != "trigger" or not isinstance(node.get("data"), dict):
            continue
        data = node["data"]
        base = ("nodes", index, "data")
        if data.get("triggerType") != SCHEDULE:
            for name in SCHEDULE_FIELDS:
                if name in data:
                    problems.add(base + (name,), f"{name!r} only applies to schedule triggers", at_key=True)
            continue
        message = cron_problem(data.get("cron"))
        if message:
            problems.add(base + ("cron",), message)
        message = timezone_problem(data.get("timezone"))
        if message:
            problems.add(base + ("timezone",), message)
        if "mode" in data:
            problems.add(
                base + ("mode",),
                "'mode' only applies to webhook triggers: scheduled runs are always queued",
                at_key=True,
            )
        _check_run_input(base, data, problems)


def _check_run_input(base: tuple, data: dict, problems: ProblemList) -> None:
    """A scheduled run's input ({...input, scheduledAt}) must pass the trigger's inputSchema,
    or every tick would be refused."""
    schema, fixed = data.get("inputSchema"), data.get("input", {})
    if not isinstance(schema, dict) or not isinstance(fixed, dict):
        return
    from flowker.validation.input_schema import InputValidator

    try:
        validator = InputValidator(schema)
    except Exception:  # noqa: BLE001 - a bad schema is reported by check_input_schema
        return
    sample = {**fixed, SCHEDULED_AT: iso_utc(_dt.datetime(2026, 1, 1, tzinfo=_dt.timezone.utc))}
    for problem in validator.problems(sample)[:5]:
        where = problem["path"] or "the input"
        problems.add(
            base + (("input",) if "input" in data else ("inputSchema",)),
            f"a scheduled run's input (input plus {SCHEDULED_AT}) would not match the inputSchema: "
            f"{where}: {problem['message']}",
        )

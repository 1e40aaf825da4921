"""`flowker validate` on schedule triggers: a bad cron expression and a bad timezone are
reported at the line and column of the value, and `--verbose` prints each schedule's next
3 fire times with their UTC offsets."""

from __future__ import annotations

import datetime as dt
import textwrap

from cronsim import CronSim

WORKFLOW = """\
kind: Workflow
name: {name}
nodes:
  - id: start
    type: trigger
    data:
      triggerType: schedule
      cron: {cron}
      timezone: {timezone}
      catchUp: all
  - id: done
    type: action
    data: {{actionType: set_output, output: {{at: "${{{{ workflow.scheduledAt }}}}"}}}}
edges:
  - {{source: start, target: done}}
"""


def _write(path, name="nightly", cron='"30 2 * * *"', timezone="Europe/Berlin"):
    path.write_text(WORKFLOW.format(name=name, cron=cron, timezone=timezone))
    return path


def test_a_bad_cron_and_a_bad_timezone_are_reported_at_their_values(run_flowker, tmp_path):
    spec = _write(tmp_path / "bad.yaml", cron='"61 2 * * *"', timezone="Mars/Olympus_Mons")
    result = run_flowker("validate", spec)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"{spec}:8:13: cron expression '61 2 * * *': the minute field '61' is not valid (at $.nodes[0].data.cron)",
        f"{spec}:9:17: unknown timezone 'Mars/Olympus_Mons' (an IANA name such as Europe/Berlin, "
        "America/New_York or UTC) (at $.nodes[0].data.timezone)",
    ]
    six = _write(tmp_path / "six.yaml", cron="'0 30 2 * * *'", timezone="UTC")
    result = run_flowker("validate", six)
    assert result.returncode == 1
    assert result.stdout.startswith(f"{six}:8:13: cron expression '0 30 2 * * *' has 6 fields; it needs 5: minute")


def test_a_missing_cron_and_an_unknown_catch_up_are_schema_problems(run_flowker, tmp_path):
    spec = tmp_path / "missing.yaml"
    spec.write_text(
        textwrap.dedent(
            """\
            kind: Workflow
            name: missing
            nodes:
              - {id: start, type: trigger, data: {triggerType: schedule, catchUp: sometimes}}
              - {id: done, type: action, data: {actionType: log, message: hi}}
            edges:
              - {source: start, target: done}
            """
        )
    )
    result = run_flowker("validate", spec)
    assert result.returncode == 1
    assert "cron" in result.stdout and "catchUp" in result.stdout and f"{spec}:4:" in result.stdout


def _expected_ticks(cron: str, zone: str) -> list[str]:
    import zoneinfo

    moment = dt.datetime.now(zoneinfo.ZoneInfo(zone))
    ticks = []
    for tick in CronSim(cron, moment):
        ticks.append(tick.isoformat())
        if len(ticks) == 3:
            return ticks
    return ticks


def test_verbose_prints_the_next_three_fire_times_with_their_offsets(run_flowker, tmp_path):
    berlin = _write(tmp_path / "berlin.yaml")
    hourly = _write(tmp_path / "hourly.yaml", name="hourly", cron='"0 */6 * * 1-5"', timezone="America/New_York")
    before = (_expected_ticks("30 2 * * *", "Europe/Berlin"), _expected_ticks("0 */6 * * 1-5", "America/New_York"))
    result = run_flowker("validate", "--verbose", berlin, hourly)
    after = (_expected_ticks("30 2 * * *", "Europe/Berlin"), _expected_ticks("0 */6 * * 1-5", "America/New_York"))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == (
        f"{berlin}:8:13: workflow 'nightly' runs on '30 2 * * *' in Europe/Berlin (catchUp: all); next fire times:"
    )
    assert lines[4].startswith(f"{hourly}:8:13: workflow 'hourly' runs on '0 */6 * * 1-5' in America/New_York")
    shown = ([line.split()[0] for line in lines[1:4]], [line.split()[0] for line in lines[5:8]])
    assert shown in (before, after)  # computed just before and just after the command
    for line in lines[1:4] + lines[5:8]:
        local, utc = line.split()
        moment = dt.datetime.fromisoformat(local)
        assert moment.utcoffset() is not None and local[-6] in "+-"
        assert utc == f"({moment.astimezone(dt.timezone.utc):%Y-%m-%dT%H:%M:%SZ})"
    assert lines[8] == "2 files checked: all valid"
    # Without --verbose: the summary only.
    assert run_flowker("validate", berlin).stdout.splitlines() == ["1 file checked: all valid"]

"""Processes racing to fire the same ticks: each tick fires exactly once.

Three real processes (scheduler_child.py) share the database; each makes one pass at the
same fixed time once a go-file appears, over a workflow whose 40 missed ticks all fire
(catchUp: all) and one firing only the latest. Whatever the interleaving, each tick has
exactly one execution, one EXECUTION_QUEUED entry, and the chain verifies.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from flowker.audit.verify import verify_database
from flowker.storage.models import AuditEntry, Execution, ScheduleTick

from schedule_helpers import at, schedule_spec, store_workflow

CHILD = Path(__file__).with_name("scheduler_child.py")
PROCESSES = 3
ROUNDS = 2


def _race(database_url: str, now: str, go_file: Path) -> list[list]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(CHILD.parent), *sys.path])}
    children = [
        subprocess.Popen(
            [sys.executable, str(CHILD), database_url, now, str(go_file)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    try:
        for child in children:
            assert child.stdout.readline().strip() == "ready", child.stderr.read()
        go_file.touch()  # every process is set up: they pass at the same moment
        reports = []
        for child in children:
            out, err = child.communicate(timeout=180)
            assert child.returncode == 0, err
            reports.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait(10)
    return reports


def test_processes_racing_to_fire_the_same_ticks_fire_each_once(database, database_url, tmp_path):
    every = store_workflow(schedule_spec("race-all", "*/5 * * * *", "all"), at("2026-06-01 09:59:30"))
    latest = store_workflow(schedule_spec("race-latest", "*/5 * * * *", "latest"), at("2026-06-01 09:59:30"))
    fired_by_process = []
    for round_number, now in enumerate(["2026-06-01T13:17:00+00:00", "2026-06-01T16:37:00+00:00"][:ROUNDS]):
        reports = _race(database_url, now, tmp_path / f"go-{round_number}")
        fired_by_process.append([len(report) for report in reports])
        fired = [tuple(item) for report in reports for item in report]
        # Every fired tick once across the processes, with an execution of its own.
        assert len(fired) == len({(workflow_id, tick) for workflow_id, tick, _ in fired}), fired
        assert all(execution_id for _, _, execution_id in fired)
    # 10:00 ... 13:15 is 40 ticks, 13:20 ... 16:35 another 40; `latest` fired 13:15 and 16:35.
    ticks_all = [row.input_data["scheduledAt"] for row in Execution.select().where(Execution.workflow_id == every.id)]
    assert len(ticks_all) == len(set(ticks_all)) == 80
    ticks_latest = sorted(
        row.input_data["scheduledAt"] for row in Execution.select().where(Execution.workflow_id == latest.id)
    )
    assert ticks_latest == ["2026-06-01T13:15:00Z", "2026-06-01T16:35:00Z"]
    assert ScheduleTick.select().count() == 82
    queued = AuditEntry.select().where(AuditEntry.event_type == "EXECUTION_QUEUED").count()
    assert queued == Execution.select().count() == 82
    assert verify_database(database).is_valid
    print("ticks fired per process and round:", fired_by_process)

"""Cost of the scheduler every worker runs (flowker.schedules): an idle pass over many
active scheduled workflows (what each worker pays after every tick and every 15 s), and
firing ticks (claim row + queued execution + audit entry, one transaction each).

    .venv/bin/python benchmarks/schedules.py [--workflows 200] [--db URL]

Default database: a SQLite file in a temporary folder. Prints the median milliseconds of
an idle pass (5 passes) and of a pass firing one tick per workflow, with milliseconds per
fired tick, and the load average.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import tempfile
import time

UTC = dt.timezone.utc


def _spec(name: str) -> dict:
    return {
        "name": name,
        "nodes": [
            {"id": "start", "type": "trigger", "data": {"triggerType": "schedule", "cron": "*/5 * * * *"}},
            {"id": "out", "type": "action", "data": {"actionType": "set_output", "output": {"ok": True}}},
        ],
        "edges": [{"source": "start", "target": "out"}],
    }


def main() -> None:
    from flowker.plugins import load_registry
    from flowker.runner.service import ExecutionService
    from flowker.schedules.scheduler import Scheduler
    from flowker.settings import Settings
    from flowker.storage.database import bind_database, close_database
    from flowker.storage.migrations import upgrade
    from flowker.storage.models import Workflow, WorkflowVersion

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workflows", type=int, default=200)
    parser.add_argument("--db", default=None, help="a database URL (default: a temporary SQLite file)")
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="flowker-schedules-")
    url = args.db or f"sqlite:///{folder}/bench.db"
    database = bind_database(url)
    upgrade(database)
    settings = Settings.from_mapping({"database_url": url})
    service = ExecutionService(settings, load_registry(settings), database=database)
    since = dt.datetime(2026, 6, 1, 9, 58)
    stamp = str(time.time_ns())
    for number in range(args.workflows):
        spec = _spec(f"bench-{stamp}-{number}")
        row = Workflow.create(name=spec["name"], status="active", version=1, spec=spec, spec_hash="x", updated_at=since)
        WorkflowVersion.create(workflow_id=row.id, version=1, spec=spec)
    scheduler = Scheduler(service)
    scheduler.tick(dt.datetime(2026, 6, 1, 9, 59, tzinfo=UTC))  # parses and caches each schedule

    idle = []
    for second in range(5):
        started = time.perf_counter()
        result = scheduler.tick(dt.datetime(2026, 6, 1, 9, 59, 10 + second, tzinfo=UTC))
        idle.append((time.perf_counter() - started) * 1000)
        assert result.fired == []
    started = time.perf_counter()
    fired = scheduler.tick(dt.datetime(2026, 6, 1, 10, 0, 1, tzinfo=UTC)).fired
    firing = (time.perf_counter() - started) * 1000
    assert len(fired) >= args.workflows  # every workflow's 10:00 (other runs' rows too with --db)
    print(f"database: {url.split('?')[0]}")
    print(f"idle pass over {args.workflows} scheduled workflows: {statistics.median(idle):.1f} ms")
    print(f"pass firing {len(fired)} ticks: {firing:.0f} ms ({firing / len(fired):.2f} ms per tick)")
    print(f"load average: {os.getloadavg()[0]:.1f}")
    service.close()
    close_database(database)


if __name__ == "__main__":
    main()

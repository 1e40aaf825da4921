"""One process of a race (tests/schedules/test_scheduler_race.py): a Scheduler on the
shared database that makes one pass at a fixed time.

    python scheduler_child.py DATABASE_URL NOW_ISO GO_FILE

Prints ``ready`` once set up, waits (bounded) for GO_FILE to exist so every process
passes at the same moment, then prints one JSON line: the ticks it fired, each
``[workflow id, tick ISO, execution id]``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time

WAIT_SECONDS = 60.0


def main(database_url: str, now_iso: str, go_file: str) -> None:
    from flowker.plugins import load_registry
    from flowker.runner.service import ExecutionService
    from flowker.schedules.scheduler import Scheduler
    from flowker.settings import Settings
    from flowker.storage.database import bind_database, close_database

    settings = Settings.from_mapping({"database_url": database_url})
    database = bind_database(database_url)
    service = ExecutionService(settings, load_registry(settings), database=database)
    now = dt.datetime.fromisoformat(now_iso)
    try:
        print("ready", flush=True)
        deadline = time.monotonic() + WAIT_SECONDS
        while not os.path.exists(go_file) and time.monotonic() < deadline:
            time.sleep(0.001)
        result = Scheduler(service).tick(now)
        fired = [[f.workflow_id, f.tick.isoformat(), f.execution_id] for f in result.fired]
        print(json.dumps(fired), flush=True)
    finally:
        service.close()
        close_database(database)


if __name__ == "__main__":
    main(*sys.argv[1:])

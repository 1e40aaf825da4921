"""One process of a fleet (tests/runner/test_breaker_fleet.py): an execution service on the
shared database that calls one executor until its breaker refuses.

    python breaker_child.py DATABASE_URL EXECUTOR_NAME THRESHOLD GO_FILE

Prints ``ready`` once set up, waits (bounded) for GO_FILE to exist so every process
starts calling at the same moment, then prints one JSON line: the error code of each
call (null for none) and the refusal's message.
"""

from __future__ import annotations

import json
import os
import sys
import time

MAX_CALLS = 50
WAIT_SECONDS = 60.0


def main(database_url: str, executor_name: str, threshold: str, go_file: str) -> None:
    from flowker.plugins import load_registry
    from flowker.runner.executor_client import CallRequest
    from flowker.runner.service import ExecutionService
    from flowker.settings import Settings
    from flowker.storage.database import bind_database, close_database

    settings = Settings.from_mapping(
        {
            "database_url": database_url,
            "cb_failure_threshold": threshold,
            "cb_recovery_seconds": 600,
            "retry_max_attempts": 1,
            "retry_base_seconds": 0.01,
        }
    )
    database = bind_database(database_url)
    service = ExecutionService(settings, load_registry(settings))
    try:
        service.executors.resolve(executor_name)  # set up before the race: a query, no call
        print("ready", flush=True)
        deadline = time.monotonic() + WAIT_SECONDS
        while not os.path.exists(go_file) and time.monotonic() < deadline:
            time.sleep(0.002)
        codes, message = [], None
        for _ in range(MAX_CALLS):
            client, auth = service.executors.resolve(executor_name)
            result = client.call(CallRequest(endpoint="op"), auth=auth, deadline=time.monotonic() + 30)
            codes.append(result.error.code if result.error else None)
            if result.error is not None and result.error.code == "FLK-0507":
                message = result.error.message
                break
        print(json.dumps({"codes": codes, "message": message}), flush=True)
    finally:
        service.close()
        close_database(database)


if __name__ == "__main__":
    main(*sys.argv[1:5])

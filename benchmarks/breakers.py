"""What the fleet-wide circuit breaker costs a call (docs/resilience.md).

    .venv/bin/python benchmarks/breakers.py [--db URL] [--calls N] [--failures N]

Against a real database (default: a new SQLite file; ``--db postgresql://...`` for a
PostgreSQL database, where the table is created by the migrations): the time
``call_guarded`` adds to a call on a closed breaker, process-local and shared (the fast
path: no query but one read per cache period), the queries those calls made, and the
time of recording one failure in the shared row (a write transaction).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="database URL (default: a new SQLite file)")
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--failures", type=int, default=500)
    options = parser.parse_args()

    from flowker.runner.breakers import BreakerBoard, NetworkError
    from flowker.storage.breaker_store import BreakerStateStore
    from flowker.storage.database import bind_database, close_database
    from flowker.storage.migrations import upgrade

    url = options.db or f"sqlite:///{tempfile.mkdtemp()}/breakers.db"
    database = bind_database(url)
    upgrade(database)

    class CountingStore(BreakerStateStore):
        reads = changes = 0

        def read(self, executor_id):
            CountingStore.reads += 1
            return super().read(executor_id)

        def change(self, executor_id, transition):
            CountingStore.changes += 1
            return super().change(executor_id, transition)

    print(
        f"database: {url.split('?')[0] if url.startswith('postgres') else 'sqlite'}; "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    with database.connection_context():
        for label, shared in (("process-local", None), ("shared", CountingStore())):
            breaker = BreakerBoard(5, 30, shared=shared).get(f"bench-{label}", "bench")
            started = time.perf_counter()
            for _ in range(options.calls):
                breaker.call_guarded(int)
            elapsed = time.perf_counter() - started
            print(
                f"closed breaker, {label:>13}: {elapsed / options.calls * 1e6:6.2f} us per call over "
                f"{elapsed:.2f} s; queries {CountingStore.reads + CountingStore.changes}"
            )

        breaker = BreakerBoard(options.failures + 1, 30, shared=CountingStore()).get("bench-failures", "bench")

        def fail():
            raise NetworkError("down")

        started = time.perf_counter()
        for _ in range(options.failures):
            try:
                breaker.call_guarded(fail)
            except NetworkError:
                pass
        elapsed = time.perf_counter() - started
        print(
            f"one failure recorded in the shared row: {elapsed / options.failures * 1e3:.3f} ms "
            f"(a read and a write transaction)"
        )
    close_database(database)


if __name__ == "__main__":
    main()

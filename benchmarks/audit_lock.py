"""How long a PostgreSQL audit append holds the chain's lock: client-side vs one server-side call.

    .venv/bin/python benchmarks/audit_lock.py [--appends 2000] [--batch 4] [--writers 1,4]

Runs against FLOWKER_BENCH_POSTGRES_URL (or FLOWKER_TEST_POSTGRES_URL), each case in a
scratch schema dropped afterwards. Both paths run in the same run on the same code:

* ``client``: the path before migration 10 (``AuditLog(server_append=False)``): lock and
  head read, INSERT, COMMIT from the client, three round trips under the lock.
* ``server``: ``flowker_audit_append`` (migration 10), then COMMIT.

Each append is its own transaction of ``--batch`` entries (a runner flush writes a step's
entries in one), the audit append last before COMMIT as the runner does. The lock hold
is measured from the moment PostgreSQL granted the lock (its clock, read right after the
grant, by the function or by the client-side path's head read) to the moment COMMIT
returned to the client (the client's clock: same host, same system clock), so it
includes the COMMIT's WAL flush and the reply's way back. Round trips under the lock
count the statements sent from the grant to COMMIT, COMMIT included. With several
writers (forked processes started together) appends/s is what serializing on the lock
allows; hold times are then also stretched by the writers sharing the CPUs.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.audit import ACTOR, Scratch, close  # noqa: E402
from flowker.audit import server_append, store  # noqa: E402
from flowker.audit.chain import AuditLog  # noqa: E402
from flowker.audit.verify import verify_database  # noqa: E402
from flowker.storage.database import open_database  # noqa: E402

FORK = multiprocessing.get_context("fork")
BATCH = 4  # entries per transaction by default: a step with one executor call
_SERVER_APPEND = server_append.append  # the real ones, wrapped by LockClock
_LOCK_AND_HEAD = store.lock_and_head


class LockClock:
    """Records, per transaction, when the lock was granted (server clock) and how many
    statements went out from then to COMMIT. A context manager: it wraps the database's
    ``execute_sql`` and the two ways an append takes the lock, and puts them back."""

    def __init__(self, database):
        self.database = database
        self.locked_at: float | None = None
        self.statements = 0

    def __enter__(self) -> "LockClock":
        database, real_execute = self.database, self.database.execute_sql

        def counted_execute(sql, params=None, *args, **kwargs):
            if self.locked_at is not None:
                self.statements += 1
            return real_execute(sql, params, *args, **kwargs)

        def lock_and_head(db):
            # The client-side path's statement pair, with the server's clock read after the grant.
            row = real_execute(
                f"SELECT pg_advisory_xact_lock(%s); SELECT sequence, hash, clock_timestamp() FROM {store.ENTRY_TABLE} "
                "ORDER BY sequence DESC LIMIT 1",
                (store.AUDIT_LOCK_ID,),
            ).fetchone()
            self.locked_at, self.statements = row[2].timestamp(), 1
            return row[0], row[1]

        def timed_append(*args, **kwargs):
            result = _SERVER_APPEND(*args, **kwargs)
            self.locked_at, self.statements = result[5].timestamp(), 1
            return result

        database.execute_sql = counted_execute
        store.lock_and_head = lock_and_head  # type: ignore[assignment]
        server_append.append = timed_append  # type: ignore[assignment]
        return self

    def __exit__(self, *exc_info) -> None:
        del self.database.execute_sql  # the class's method again
        store.lock_and_head = _LOCK_AND_HEAD  # type: ignore[assignment]
        server_append.append = _SERVER_APPEND  # type: ignore[assignment]

    def take(self) -> tuple[float, int]:
        """(seconds from the grant to now, round trips under the lock counting COMMIT)."""
        assert self.locked_at is not None
        held = time.time() - self.locked_at
        taken = (held, self.statements + 1)
        self.locked_at, self.statements = None, 0
        return taken


def _items(batch: int, worker: int, index: int) -> list[dict]:
    return [
        {
            "event_type": "STEP_COMPLETED",
            "action": "EXECUTE",
            "result": "SUCCESS",
            "resource_type": "execution",
            "resource_id": f"exec-{worker}-{index}",
            "actor": ACTOR,
            "context": {"workflowId": "wf", "workflowVersion": 1, "nodeId": f"n{n}", "stepNumber": n},
            "metadata": {"status": "completed", "durationMs": 1.25, "attempts": 1, "worker": worker},
        }
        for n in range(batch)
    ]


def run_writer(url: str, mode: str, appends: int, batch: int, worker: int, start=None) -> dict:
    database = open_database(url)
    log = AuditLog(database, server_append=mode == "server")
    held, trips = [], set()
    try:
        with database.connection_context(), LockClock(database) as clock:
            if start is not None:
                start.wait(60)
            began = time.perf_counter()
            for index in range(appends):
                prepared = log.prepare_many(_items(batch, worker, index))  # before the transaction, as the runner does
                with database.atomic():
                    log.append_many(prepared)
                seconds, round_trips = clock.take()
                held.append(seconds)
                trips.add(round_trips)
            elapsed = time.perf_counter() - began
    finally:
        close(database)
    return {"held": held, "trips": sorted(trips), "elapsed": elapsed, "appends": appends}


def _child(url, mode, appends, batch, worker, start, results) -> None:
    try:
        results.put(run_writer(url, mode, appends, batch, worker, start))
    except Exception as exc:  # noqa: BLE001 - reported by the parent
        results.put({"error": repr(exc)})


def measure(scratch: Scratch, mode: str, writers: int, appends: int, batch: int) -> dict:
    url = scratch.new()
    seed = open_database(url)
    with seed.connection_context():
        AuditLog(seed).append("STEP_COMPLETED", "EXECUTE", "SUCCESS", "execution", "seed")  # a head to read
    close(seed)
    if writers == 1:
        reports = [run_writer(url, mode, appends, batch, 0)]
        wall = reports[0]["elapsed"]
    else:
        start, results = FORK.Event(), FORK.Queue()
        per_writer = appends // writers
        children = [
            FORK.Process(target=_child, args=(url, mode, per_writer, batch, n, start, results)) for n in range(writers)
        ]
        for child in children:
            child.start()
        began = time.perf_counter()
        start.set()
        reports = [results.get(timeout=600) for _ in children]
        wall = time.perf_counter() - began
        for child in children:
            child.join(timeout=60)
        errors = [report["error"] for report in reports if "error" in report]
        if errors:
            raise RuntimeError(f"a writer failed: {errors[0]}")
    held = sorted(seconds for report in reports for seconds in report["held"])
    transactions = sum(report["appends"] for report in reports)
    check = open_database(url)
    with check.connection_context():
        result = verify_database(check)
    close(check)
    return {
        "mode": mode,
        "writers": writers,
        "appends_per_s": transactions / wall,
        "entries_per_s": transactions * batch / wall,
        "held_p50_ms": statistics.median(held) * 1000,
        "held_p99_ms": held[min(len(held) - 1, int(len(held) * 0.99))] * 1000,
        "held_mean_ms": statistics.fmean(held) * 1000,
        "round_trips": sorted({trip for report in reports for trip in report["trips"]}),
        "valid": result.is_valid and result.total_checked == transactions * batch + 1,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--appends", type=int, default=2000, help="transactions per case (split among writers)")
    parser.add_argument("--batch", type=int, default=BATCH, help="entries per transaction")
    parser.add_argument("--writers", default="1,4", help="comma-separated writer counts")
    parser.add_argument("--rounds", type=int, default=2, help="each case this many times, alternating paths")
    args = parser.parse_args(argv)
    url = (os.environ.get("FLOWKER_BENCH_POSTGRES_URL") or os.environ.get("FLOWKER_TEST_POSTGRES_URL") or "").strip()
    if not url:
        print("audit_lock: set FLOWKER_BENCH_POSTGRES_URL (or FLOWKER_TEST_POSTGRES_URL): PostgreSQL only")
        return 2
    scratch = Scratch("postgresql", url)
    try:
        print(f"PostgreSQL audit lock, {args.batch} entries per transaction, {args.appends} transactions per case")
        print(
            f"{'path':<7} {'writers':>7} {'appends/s':>10} {'entries/s':>10} {'held p50':>9} {'p99':>8} {'mean':>8}  trips"
        )
        for writers in [int(w) for w in args.writers.split(",")]:
            for _round in range(args.rounds):
                for mode in ("client", "server"):
                    figures = measure(scratch, mode, writers, args.appends, args.batch)
                    print(
                        f"{mode:<7} {writers:>7} {figures['appends_per_s']:>10,.0f} {figures['entries_per_s']:>10,.0f} "
                        f"{figures['held_p50_ms']:>7.3f}ms {figures['held_p99_ms']:>6.3f}ms {figures['held_mean_ms']:>6.3f}ms"
                        f"  {figures['round_trips']} {'chain valid' if figures['valid'] else 'CHAIN INVALID'}",
                        flush=True,
                    )
    finally:
        scratch.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())

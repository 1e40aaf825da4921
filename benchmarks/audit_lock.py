"""How long a PostgreSQL audit append holds the chain's lock: client-side vs one server-side call.

    .venv/bin/python benchmarks/audit_lock.py [--appends 2000] [--batch 4] [--writers 1,4]

Runs against FLOWKER_BENCH_POSTGRES_URL (or FLOWKER_TEST_POSTGRES_URL), each case in a
scratch schema dropped afterwards. Both paths run in the same run on the same code:

* ``client``: the path before migration 10 (``AuditLog(append_on_server=False)``): lock and
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
        self.last_locked_at = 0.0  # the grant of the transaction take() ended
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
        self.last_locked_at, self.locked_at, self.statements = self.locked_at, None, 0
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


MODES = ("client", "server")


def run_writer(url: str, modes: tuple[str, ...], appends: int, batch: int, worker: int, start=None) -> dict:
    """``appends`` transactions, the paths of ``modes`` taking turns (one mode: all of them).
    Per mode: lock hold samples (s), the part before COMMIT, and the COMMIT's own time."""
    database = open_database(url)
    logs = [AuditLog(database, append_on_server=mode == "server") for mode in modes]
    samples: dict[str, dict] = {
        mode: {"held": [], "before_commit": [], "commit": [], "trips": set(), "wall": [], "cpu": 0.0, "server_cpu": 0.0}
        for mode in modes
    }
    try:
        with database.connection_context(), LockClock(database) as clock:
            backend = database.execute_sql("SELECT pg_backend_pid()").fetchone()[0]
            if start is not None:
                start.wait(60)
            began = time.perf_counter()
            for index in range(appends):
                turn = index % len(modes)
                log, figures = logs[turn], samples[modes[turn]]
                server_cpu, cpu, wall = _process_cpu(backend), time.process_time(), time.perf_counter()
                prepared = log.prepare_many(_items(batch, worker, index))  # before the transaction, as the runner does
                with database.atomic():
                    log.append_many(prepared)
                    committing = time.time()
                figures["wall"].append(time.perf_counter() - wall)
                figures["cpu"] += time.process_time() - cpu
                figures["server_cpu"] += _process_cpu(backend) - server_cpu
                seconds, round_trips = clock.take()
                figures["held"].append(seconds)
                figures["commit"].append(seconds - (committing - clock.last_locked_at))
                figures["before_commit"].append(committing - clock.last_locked_at)
                figures["trips"].add(round_trips)
            elapsed = time.perf_counter() - began
    finally:
        close(database)
    return {"samples": samples, "elapsed": elapsed, "appends": appends}


_TICK = os.sysconf("SC_CLK_TCK")


def _process_cpu(pid: int) -> float:
    """CPU seconds a process (here the PostgreSQL backend, on this host) has used: clock-tick
    accounting, so only sums over many transactions mean anything."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def _child(url, modes, appends, batch, worker, start, results) -> None:
    try:
        results.put(run_writer(url, modes, appends, batch, worker, start))
    except Exception as exc:  # noqa: BLE001 - reported by the parent
        results.put({"error": repr(exc)})


def _ms(values: list[float], quantile: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * quantile))] * 1000


def measure(scratch: Scratch, modes, writers: int, appends: int, batch: int) -> dict:
    """Run ``writers`` writers (``modes`` as for :func:`run_writer`; a str for one mode) on
    a fresh chain; figures per mode, appends/s for them all, whether the chain verifies."""
    modes = (modes,) if isinstance(modes, str) else tuple(modes)
    url = scratch.new()
    seed = open_database(url)
    with seed.connection_context():
        AuditLog(seed).append("STEP_COMPLETED", "EXECUTE", "SUCCESS", "execution", "seed")  # a head to read
    close(seed)
    if writers == 1:
        reports = [run_writer(url, modes, appends, batch, 0)]
        wall = reports[0]["elapsed"]
    else:
        start, results = FORK.Event(), FORK.Queue()
        per_writer = appends // writers
        children = [
            FORK.Process(target=_child, args=(url, modes, per_writer, batch, n, start, results)) for n in range(writers)
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
    transactions = sum(report["appends"] for report in reports)
    check = open_database(url)
    with check.connection_context():
        result = verify_database(check)
    close(check)
    figures: dict = {
        "writers": writers,
        "appends_per_s": transactions / wall,
        "entries_per_s": transactions * batch / wall,
        "valid": result.is_valid and result.total_checked == transactions * batch + 1,
    }
    for mode in modes:
        held = [v for report in reports for v in report["samples"][mode]["held"]]
        before = [v for report in reports for v in report["samples"][mode]["before_commit"]]
        commit = [v for report in reports for v in report["samples"][mode]["commit"]]
        count = sum(len(report["samples"][mode]["held"]) for report in reports)
        figures[mode] = {
            "transaction_p50_ms": _ms([v for report in reports for v in report["samples"][mode]["wall"]], 0.5),
            "client_cpu_ms": sum(report["samples"][mode]["cpu"] for report in reports) / count * 1000,
            "server_cpu_ms": sum(report["samples"][mode]["server_cpu"] for report in reports) / count * 1000,
            "held_p50_ms": _ms(held, 0.5),
            "held_p99_ms": _ms(held, 0.99),
            "held_mean_ms": statistics.fmean(held) * 1000,
            "before_commit_p50_ms": _ms(before, 0.5),
            "commit_p50_ms": _ms(commit, 0.5),
            "round_trips": sorted({t for report in reports for t in report["samples"][mode]["trips"]}),
        }
    if len(modes) == 1:  # the single-mode figures at the top level too
        figures.update(figures[modes[0]])
    return figures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--appends", type=int, default=2000, help="transactions per case (split among writers)")
    parser.add_argument("--batch", type=int, default=BATCH, help="entries per transaction")
    parser.add_argument("--writers", default="1,4", help="comma-separated writer counts")
    parser.add_argument("--rounds", type=int, default=2, help="throughput: each case this many times, alternating")
    args = parser.parse_args(argv)
    url = (os.environ.get("FLOWKER_BENCH_POSTGRES_URL") or os.environ.get("FLOWKER_TEST_POSTGRES_URL") or "").strip()
    if not url:
        print("audit_lock: set FLOWKER_BENCH_POSTGRES_URL (or FLOWKER_TEST_POSTGRES_URL): PostgreSQL only")
        return 2
    scratch = Scratch("postgresql", url)
    writer_counts = [int(w) for w in args.writers.split(",")]
    load = os.getloadavg()[0]
    try:
        print(f"PostgreSQL audit lock, {args.batch} entries per transaction; load average {load:.2f}")
        print("Lock hold per append, the two paths taking turns transaction by transaction (paired):")
        print(
            f"{'path':<7} {'writers':>7} {'held p50':>9} {'p99':>9} {'mean':>9} {'pre-COMMIT':>11} {'COMMIT':>8} "
            f"{'txn p50':>9} {'CPU client':>10} {'postgres':>9}  trips"
        )
        for writers in writer_counts:
            figures = measure(scratch, MODES, writers, args.appends, args.batch)
            for mode in MODES:
                f = figures[mode]
                print(
                    f"{mode:<7} {writers:>7} {f['held_p50_ms']:>7.3f}ms {f['held_p99_ms']:>7.3f}ms "
                    f"{f['held_mean_ms']:>7.3f}ms {f['before_commit_p50_ms']:>9.3f}ms {f['commit_p50_ms']:>6.3f}ms "
                    f"{f['transaction_p50_ms']:>7.3f}ms {f['client_cpu_ms']:>8.3f}ms {f['server_cpu_ms']:>7.3f}ms"
                    f"  {f['round_trips']} {'chain valid' if figures['valid'] else 'CHAIN INVALID'}",
                    flush=True,
                )
        print("Appends/s, one path per run, runs alternating:")
        print(f"{'path':<7} {'writers':>7} {'appends/s':>10} {'entries/s':>10} {'held p50':>9} {'p99':>9}")
        for writers in writer_counts:
            for _round in range(args.rounds):
                for mode in MODES:
                    f = measure(scratch, mode, writers, args.appends, args.batch)
                    print(
                        f"{mode:<7} {writers:>7} {f['appends_per_s']:>10,.0f} {f['entries_per_s']:>10,.0f} "
                        f"{f['held_p50_ms']:>7.3f}ms {f['held_p99_ms']:>7.3f}ms "
                        f"{'chain valid' if f['valid'] else 'CHAIN INVALID'}",
                        flush=True,
                    )
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    finally:
        scratch.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Audit chain throughput: appends/s (one writer, and N processes) and entries/s verified.

    .venv/bin/python benchmarks/audit.py [--appends 20000] [--processes 4]
                                         [--verify-entries 1000000] [--backends sqlite,postgresql]

Targets: >= 5,000 appends/s for one writer on SQLite; a 1,000,000-entry chain verified in
under 5 s. PostgreSQL runs against FLOWKER_BENCH_POSTGRES_URL (or FLOWKER_TEST_POSTGRES_URL)
in a scratch schema dropped afterwards; without either that half is skipped, with a note.

* appends: ``AuditLog.append`` with each entry its own transaction (lock, head read,
  canonical JSON, sha256, insert, commit), as a state change would commit it. Measured
  without a signing key and with one (a signed checkpoint every 1000 entries).
* N processes: forked writers start together on one database; wall time for all.
* verify: the chain is bulk-loaded (entries built by the same code, indexes rebuilt after
  the load, a signed checkpoint every 1000 entries), then ``verify_database`` with the
  public key: every hash, link, column and signature checked.
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flowker.audit import checkpoints as cp  # noqa: E402
from flowker.audit import store  # noqa: E402
from flowker.audit.canonical import GENESIS_HASH, build_document, canonical_text  # noqa: E402
from flowker.audit.chain import Actor, AuditLog  # noqa: E402
from flowker.audit.verify import verify_database  # noqa: E402
from flowker.storage.database import is_postgres, open_database  # noqa: E402
from flowker.storage.migrations import upgrade  # noqa: E402

ACTOR = Actor(type="api_key", id="ci-bot", ip="127.0.0.1")
CHECKPOINT_INTERVAL = 1000


def close(database) -> None:
    if not database.is_closed():
        database.close()
    if hasattr(database, "close_all"):
        database.close_all()


# --------------------------------------------------------------------------- scratch databases


class Scratch:
    """Fresh migrated databases: SQLite files in a temporary folder, PostgreSQL schemas."""

    def __init__(self, backend: str, postgres_url: str | None):
        self.backend, self.postgres_url = backend, postgres_url
        self.folder = tempfile.mkdtemp(prefix="flowker-bench-audit-")
        self.schemas: list[str] = []

    def _admin(self):
        import psycopg2

        database = open_database(self.postgres_url)
        params = {k: v for k, v in database.connect_params.items() if k != "options"}
        connection = psycopg2.connect(dbname=database.database, **params)
        connection.autocommit = True
        return connection

    def new(self) -> str:
        if self.backend == "sqlite":
            url = f"sqlite:///{self.folder}/audit-{uuid.uuid4().hex[:8]}.db"
        else:
            schema = "flowker_bench_" + uuid.uuid4().hex[:10]
            admin = self._admin()
            with admin.cursor() as cursor:
                cursor.execute(f"CREATE SCHEMA {schema}")
            admin.close()
            self.schemas.append(schema)
            separator = "&" if "?" in self.postgres_url else "?"
            url = f"{self.postgres_url}{separator}options={quote('-csearch_path=' + schema)}"
        database = open_database(url)
        upgrade(database)
        close(database)
        return url

    def cleanup(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        if self.schemas:
            admin = self._admin()
            with admin.cursor() as cursor:
                for schema in self.schemas:
                    cursor.execute(f"DROP SCHEMA {schema} CASCADE")
            admin.close()


# --------------------------------------------------------------------------- appends


def append_many(url: str, count: int, signing_key=None, worker: int = 0) -> None:
    database = open_database(url)
    log = AuditLog(database, signing_key=signing_key, checkpoint_interval=CHECKPOINT_INTERVAL)
    try:
        for i in range(count):
            log.append(
                "STEP_COMPLETED",
                "EXECUTE",
                "SUCCESS",
                "execution",
                f"exec-{worker}",
                actor=ACTOR,
                context={"requestId": f"req-{i}"},
                metadata={"node": "score", "durationMs": 12, "attempt": 1, "worker": worker},
            )
    finally:
        close(database)


def single_writer(scratch: Scratch, count: int, signing_key=None) -> float:
    url = scratch.new()
    started = time.perf_counter()
    append_many(url, count, signing_key)
    return count / (time.perf_counter() - started)


def _process_writer(url: str, count: int, worker: int, start) -> None:
    start.wait(60)
    append_many(url, count, worker=worker)


def many_writers(scratch: Scratch, count: int, processes: int) -> float:
    url = scratch.new()
    context = multiprocessing.get_context("fork")
    start = context.Event()
    per_process = count // processes
    writers = [context.Process(target=_process_writer, args=(url, per_process, n, start)) for n in range(processes)]
    for writer in writers:
        writer.start()
    time.sleep(0.5)  # let every child open its database before the clock starts
    started = time.perf_counter()
    start.set()
    for writer in writers:
        writer.join()
    elapsed = time.perf_counter() - started
    if any(writer.exitcode for writer in writers):
        raise SystemExit("a writer process failed")
    database = open_database(url)
    try:
        with database.connection_context():
            assert store.max_sequence(database) == per_process * processes
    finally:
        close(database)
    return per_process * processes / elapsed


# --------------------------------------------------------------------------- bulk load + verify

# Canonical text of the benchmark's entries; every 997th one is checked against the real
# canonicalizer (rfc8785) so the fast path cannot drift from it.
_FAST_CANONICAL = (
    '{{"entry":{{"action":"EXECUTE","actor":{{"id":"ci-bot","ipAddress":"127.0.0.1","type":"api_key"}},'
    '"eventId":"{event_id}","eventType":"STEP_COMPLETED","resourceId":"{resource_id}",'
    '"resourceType":"execution","result":"SUCCESS","sequence":{sequence},"timestamp":"{timestamp}"}},'
    '"payload":{{"context":{{"requestId":"req-{sequence}"}},"metadata":{{"attempt":1,"durationMs":12,'
    '"node":"score","workflow.id":"{resource_id}"}}}},"v":1}}'
)


def _entries(count: int, signing_key):
    previous = GENESIS_HASH
    resource_id = str(uuid.uuid4())
    base = time.time() - count / 1000
    for sequence in range(1, count + 1):
        if sequence % 500 == 1:
            resource_id = str(uuid.uuid4())
        moment = base + sequence / 1000
        timestamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment)) + f".{int(moment * 1000) % 1000:03d}Z"
        event_id = str(uuid.uuid4())
        canonical = _FAST_CANONICAL.format(
            event_id=event_id, resource_id=resource_id, sequence=sequence, timestamp=timestamp
        )
        if sequence % 997 == 1:
            real = canonical_text(
                build_document(
                    sequence=sequence,
                    event_id=event_id,
                    event_type="STEP_COMPLETED",
                    action="EXECUTE",
                    result="SUCCESS",
                    resource_type="execution",
                    resource_id=resource_id,
                    actor_type="api_key",
                    actor_id="ci-bot",
                    actor_ip="127.0.0.1",
                    timestamp=timestamp,
                    context={"requestId": f"req-{sequence}"},
                    metadata={"attempt": 1, "durationMs": 12, "node": "score", "workflow.id": resource_id},
                )
            )
            assert real == canonical, "the benchmark's canonical template drifted from rfc8785"
        digest = hashlib.sha256((previous + canonical).encode("utf-8")).hexdigest()
        yield (
            sequence,
            event_id,
            "STEP_COMPLETED",
            "EXECUTE",
            "SUCCESS",
            "execution",
            resource_id,
            "api_key",
            "ci-bot",
            "127.0.0.1",
            timestamp,
            canonical,
            previous,
            digest,
        )
        previous = digest


def _entry_indexes(database) -> list[tuple[str, str]]:
    if is_postgres(database):
        return list(
            database.execute_sql(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s AND schemaname = current_schema() "
                "AND indexname NOT LIKE %s",
                (store.ENTRY_TABLE, "%pkey"),
            ).fetchall()
        )
    return list(
        database.execute_sql(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL",
            (store.ENTRY_TABLE,),
        ).fetchall()
    )


def bulk_load(url: str, count: int, signing_key) -> float:
    """Load a valid ``count``-entry chain with checkpoints; returns seconds taken."""
    database = open_database(url)
    started = time.perf_counter()
    columns = ", ".join(store.ENTRY_COLUMNS)
    try:
        with database.connection_context():
            if not is_postgres(database):
                database.execute_sql("PRAGMA cache_size = -262144")
            indexes = _entry_indexes(database)
            for name, _ in indexes:
                database.execute_sql(f"DROP INDEX {name}")
            heads = {}
            batch: list[tuple] = []

            def flush() -> None:
                if not batch:
                    return
                with database.atomic():
                    if is_postgres(database):
                        from psycopg2.extras import execute_values

                        execute_values(
                            database.cursor(),
                            f"INSERT INTO {store.ENTRY_TABLE} ({columns}) VALUES %s",
                            batch,
                            page_size=5000,
                        )
                    else:
                        database.cursor().executemany(
                            f"INSERT INTO {store.ENTRY_TABLE} ({columns}) VALUES ({', '.join(['?'] * 14)})", batch
                        )
                batch.clear()

            for row in _entries(count, signing_key):
                batch.append(row)
                if row[0] % CHECKPOINT_INTERVAL == 0:
                    heads[row[0]] = row[13]
                if len(batch) >= 50_000:
                    flush()
            flush()
            for _, definition in indexes:
                database.execute_sql(definition)
            with database.atomic():
                previous = cp.GENESIS_CHECKPOINT_HASH
                for sequence, head_hash in heads.items():
                    signed = cp.sign(
                        signing_key,
                        sequence=sequence,
                        head_hash=head_hash,
                        interval=CHECKPOINT_INTERVAL,
                        created_at="2026-01-01T00:00:00.000Z",
                        previous_checkpoint_hash=previous,
                    )
                    store.insert_checkpoint(database, signed.to_row())
                    previous = signed.hash
            if is_postgres(database):
                database.execute_sql(f"ANALYZE {store.ENTRY_TABLE}")
    finally:
        close(database)
    return time.perf_counter() - started


def verify_rate(url: str, count: int, signing_key) -> tuple[float, float]:
    database = open_database(url)
    try:
        started = time.perf_counter()
        result = verify_database(
            database, public_keys=cp.keys_by_id([signing_key]), checkpoint_interval=CHECKPOINT_INTERVAL
        )
        elapsed = time.perf_counter() - started
    finally:
        close(database)
    if not result.is_valid or result.total_checked != count:
        raise SystemExit(f"verification of the benchmark chain failed: {result.message}")
    return count / elapsed, elapsed


# --------------------------------------------------------------------------- main


def run_backend(backend: str, args, postgres_url: str | None, signing_key) -> None:
    scratch = Scratch(backend, postgres_url)
    try:
        print(f"\n== {backend}")
        rate = single_writer(scratch, args.appends, None)
        print(f"single writer:                      {rate:10,.0f} appends/s  ({args.appends:,} appends)")
        rate = single_writer(scratch, args.appends, signing_key)
        print(f"single writer, signed checkpoints:  {rate:10,.0f} appends/s  (one every {CHECKPOINT_INTERVAL})")
        rate = many_writers(scratch, args.appends, args.processes)
        print(f"{args.processes} processes:                        {rate:10,.0f} appends/s  (all together)")
        if args.verify_entries:
            url = scratch.new()
            loaded = bulk_load(url, args.verify_entries, signing_key)
            print(f"bulk-loaded {args.verify_entries:,} entries in {loaded:.1f} s")
            for attempt in range(args.verify_runs):
                rate, elapsed = verify_rate(url, args.verify_entries, signing_key)
                print(
                    f"verify (run {attempt + 1}):                   {rate:10,.0f} entries/s  "
                    f"({args.verify_entries:,} entries in {elapsed:.2f} s, hashes, links, columns, signatures)"
                )
    finally:
        scratch.cleanup()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--appends", type=int, default=20_000, help="appends per append measurement")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--verify-entries", type=int, default=1_000_000, help="chain length to verify (0: skip)")
    parser.add_argument("--verify-runs", type=int, default=2, help="verification runs (the first warms caches)")
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args(argv)
    postgres_url = (
        os.environ.get("FLOWKER_BENCH_POSTGRES_URL") or os.environ.get("FLOWKER_TEST_POSTGRES_URL") or ""
    ).strip()
    signing_key = cp.generate_signing_key()
    print(f"audit chain benchmark: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        if backend == "postgresql" and not postgres_url:
            print("\n== postgresql\nskipped: set FLOWKER_BENCH_POSTGRES_URL (or FLOWKER_TEST_POSTGRES_URL)")
            continue
        run_backend(backend, args, postgres_url or None, signing_key)


if __name__ == "__main__":
    main()

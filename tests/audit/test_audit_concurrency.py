"""Several processes appending at once, and writers killed with SIGKILL mid-append.

Writers are forked (fast to start, so many crash cycles fit in a few seconds). The parent
holds no database connection while they run; each child opens its own.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time

from audit_helpers import close, read_acks
from flowker.audit import checkpoints as cp
from flowker.audit.chain import AuditLog
from flowker.audit.verify import verify_database
from flowker.storage.database import open_database

FORK = multiprocessing.get_context("fork")
WRITERS = 4
APPENDS_PER_WRITER = 150
CRASH_CYCLES = 24
CRASH_WRITERS = 2
CRASH_INTERVAL = 7


def _race_writer(url: str, worker: int, start, results) -> None:
    database = open_database(url)
    log = AuditLog(database)
    acknowledged, error = [], None
    start.wait(30)
    try:
        for i in range(APPENDS_PER_WRITER):
            entry = log.append(
                "STEP_COMPLETED",
                "EXECUTE",
                "SUCCESS",
                "execution",
                f"worker-{worker}",
                metadata={"worker": worker, "i": i},
            )
            acknowledged.append(entry.sequence)
            # A breath between appends: on a loaded machine one writer could otherwise make all
            # of its appends before the others are scheduled, and the race would not be run.
            time.sleep(0.001)
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails the test
        error = repr(exc)
    results.put((worker, acknowledged, error))


def test_concurrent_appenders_make_one_gap_free_chain(fresh_url):
    url = fresh_url()
    start, results = FORK.Event(), FORK.Queue()
    writers = [FORK.Process(target=_race_writer, args=(url, n, start, results)) for n in range(WRITERS)]
    for writer in writers:
        writer.start()
    start.set()
    reports = [results.get(timeout=120) for _ in writers]
    for writer in writers:
        writer.join(timeout=60)
    assert [error for _, _, error in reports if error] == []
    acknowledged = [sequence for _, sequences, _ in reports for sequence in sequences]
    total = WRITERS * APPENDS_PER_WRITER
    assert sorted(acknowledged) == list(range(1, total + 1))  # every sequence handed out once
    # Writers really interleaved (otherwise this test would not test the lock).
    assert any(sequences != list(range(sequences[0], sequences[0] + len(sequences))) for _, sequences, _ in reports)

    database = open_database(url)
    try:
        with database.connection_context():
            sequences = [
                row[0] for row in database.execute_sql("SELECT sequence FROM audit_entry ORDER BY sequence").fetchall()
            ]
            distinct_previous = database.execute_sql(
                "SELECT COUNT(DISTINCT previous_hash) FROM audit_entry"
            ).fetchone()[0]
        assert sequences == list(range(1, total + 1))  # gap-free
        assert distinct_previous == total  # no two entries continue the same one: 0 forks
        result = verify_database(database)
        assert result.is_valid and result.total_checked == total, result.message
    finally:
        close(database)


def _crash_writer(url: str, ack_path: str, worker: int, key_pem: str) -> None:
    """Append forever; each begin and each acknowledged commit goes to ``ack_path``."""
    database = open_database(url)
    log = AuditLog(database, signing_key=cp.load_signing_key(key_pem), checkpoint_interval=CRASH_INTERVAL)
    descriptor = os.open(ack_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    rng = random.Random(worker)
    i = 0
    while True:
        os.write(descriptor, f"B {worker} {i}\n".encode())
        # The caller's transaction, as a state change would hold it; sometimes it takes a
        # moment after the append, so kills land with the transaction open.
        with database.atomic():
            entry = log.append(
                "STEP_COMPLETED",
                "EXECUTE",
                "SUCCESS",
                "execution",
                f"crash-{worker}",
                metadata={"worker": worker, "i": i},
            )
            if rng.random() < 0.3:
                time.sleep(0.002)
        os.write(descriptor, f"A {entry.sequence} {entry.event_id}\n".encode())
        i += 1


def test_writers_killed_mid_append_lose_nothing_acknowledged(fresh_url, signing_key, tmp_path):
    url = fresh_url()
    key_pem = cp.private_key_pem(signing_key)
    rng = random.Random(20261129)
    ack_files, killed_mid_append = [], 0
    for cycle in range(CRASH_CYCLES):
        writers = []
        for worker in range(CRASH_WRITERS):
            path = str(tmp_path / f"acks-{cycle}-{worker}.log")
            ack_files.append(path)
            process = FORK.Process(target=_crash_writer, args=(url, path, cycle * 10 + worker, key_pem))
            process.start()
            writers.append((process, path))
        time.sleep(rng.uniform(0.03, 0.09))
        for process, _ in writers:
            os.kill(process.pid, signal.SIGKILL)
        for process, path in writers:
            process.join(timeout=30)
            assert process.exitcode == -signal.SIGKILL
            killed_mid_append += read_acks(path)[1]

    acknowledged = [pair for path in ack_files for pair in read_acks(path)[0]]
    assert len(acknowledged) > CRASH_CYCLES  # the writers did get work done between kills
    assert killed_mid_append >= 1  # and at least some kills hit an open append
    database = open_database(url)
    try:
        with database.connection_context():
            stored = dict(database.execute_sql("SELECT sequence, event_id FROM audit_entry").fetchall())
        lost = [(sequence, event_id) for sequence, event_id in acknowledged if stored.get(sequence) != event_id]
        assert lost == []
        result = verify_database(database, public_keys=cp.keys_by_id([signing_key]), checkpoint_interval=CRASH_INTERVAL)
        assert result.is_valid, result.message
        assert result.total_checked == len(stored) == max(stored)
        assert result.checkpoints_checked >= len(stored) // CRASH_INTERVAL
    finally:
        close(database)

"""Background WAL checkpoints: the log is copied back off the commit path, nothing is lost."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sqlite3
import time

from flowker.runner.wal_checkpoints import WalCheckpointer, sqlite_path
from flowker.storage.database import write_transaction
from flowker.storage.models import Workflow


def _write_rows(count: int, prefix: str) -> None:
    for number in range(count):
        with write_transaction():
            Workflow.create(name=f"{prefix}-{number}", status="active", version=1, spec={"nodes": []}, spec_hash="h")


def _wait_until(predicate, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_log_is_copied_back_in_the_background(sqlite_database, tmp_path):
    path = sqlite_path(sqlite_database)
    assert path is not None and path.endswith("runner.db")
    # The commits themselves never checkpoint here: only the background thread can.
    sqlite_database.execute_sql("PRAGMA wal_autocheckpoint=0")
    _write_rows(30, "wal")
    checkpointer = WalCheckpointer(interval=0.02)
    try:
        checkpointer.poke()
        assert _wait_until(lambda: checkpointer.checkpoints >= 1)
        # The database file alone (copied without its log) holds every committed row.
        alone = tmp_path / "file-alone.db"
        shutil.copyfile(path, alone)
        probe = sqlite3.connect(alone)
        try:
            assert probe.execute("SELECT count(*) FROM workflow WHERE name LIKE 'wal-%'").fetchone()[0] == 30
        finally:
            probe.close()
    finally:
        checkpointer.stop()
    assert checkpointer._thread is None


def test_thread_ends_when_idle_and_starts_again_on_use(sqlite_database):
    checkpointer = WalCheckpointer(interval=0.01, idle_exit=3)
    try:
        checkpointer.poke()
        first = checkpointer._thread
        assert first is not None
        first.join(timeout=10)
        assert not first.is_alive() and checkpointer._thread is None  # nothing to copy: it ended
        checkpointer.poke()
        assert checkpointer._thread is not None and checkpointer._thread is not first
    finally:
        checkpointer.stop()


def test_a_deleted_database_is_not_created_again(sqlite_database, tmp_path):
    path = sqlite_path(sqlite_database)
    sqlite_database.close()
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / f"runner.db{suffix}").unlink(missing_ok=True)
    checkpointer = WalCheckpointer(interval=0.01, idle_exit=3)
    try:
        checkpointer.poke()
        thread = checkpointer._thread
        assert thread is not None
        thread.join(timeout=10)
    finally:
        checkpointer.stop()
    assert not (tmp_path / "runner.db").exists(), path


def test_postgres_or_unbound_needs_no_thread():
    assert sqlite_path(None) is None
    checkpointer = WalCheckpointer()

    class NotSqlite:
        pass

    assert sqlite_path(NotSqlite()) is None
    checkpointer.stop()
    checkpointer.poke()  # stopped: never starts again
    assert checkpointer._thread is None


def test_one_process_per_file_checkpoints(sqlite_database):
    """Another process holding the file's checkpoint lock does the checkpoints; this one
    waits its turn, and takes over once that process lets go."""
    path = sqlite_path(sqlite_database)
    sqlite_database.execute_sql("PRAGMA wal_autocheckpoint=0")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys\n"
            "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)\n"
            "fcntl.lockf(fd, fcntl.LOCK_EX)\n"
            "print('held', flush=True)\n"
            "sys.stdin.readline()\n",
            f"{path}-checkpoint.lock",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    checkpointer = WalCheckpointer(interval=0.01, idle_exit=10_000)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        _write_rows(10, "turn")
        checkpointer.poke()
        time.sleep(0.3)  # thirty ticks, each finding the lock taken
        assert checkpointer.checkpoints == 0
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.wait(timeout=10) == 0
        assert _wait_until(lambda: checkpointer.checkpoints >= 1)
    finally:
        checkpointer.stop()
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=10)

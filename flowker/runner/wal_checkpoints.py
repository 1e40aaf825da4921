"""SQLite WAL checkpoints in a background thread, off the commit path.

In WAL mode SQLite copies the log back into the database file (a checkpoint) when the
log has grown past ``wal_autocheckpoint`` pages, and it is the connection whose commit
crossed that line that does it, inside that commit: 10,000 pages written and synced,
~40 ms added to whichever step happened to commit then. That was the whole p99 tail of
the runner's steps. SQLite's documentation suggests the alternative used here: another
connection runs PASSIVE checkpoints in a thread of its own, often, so the log is
already copied back when a commit looks at it (the commit's own checkpoint, still
enabled as the fallback, then has nothing or little left to copy).

A PASSIVE checkpoint takes no writer lock and never waits: writers go on appending while
it runs, and it copies only frames already committed. Durability is unchanged (a commit
is durable in the log, as before). The thread starts on first use, stops by itself after
a while without anything to copy (a forgotten service costs nothing) and starts again on
the next use; :meth:`WalCheckpointer.stop` ends it for good.

One process per database file does the work: its thread takes a POSIX lock (``lockf``,
non-blocking) on ``<database>-checkpoint.lock`` before it checkpoints and keeps it while it
runs. The other processes (the other gunicorn workers) find it taken and only try again
at their next tick, so the log is not checked once per worker for the same copying. When
the holder's thread ends (idle, stopped, its process gone: the kernel releases the lock)
the next one takes over. A POSIX lock belongs to the process: a forked child does not
inherit it, and two runtimes of one process on the same file both checkpoint, as before.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
from urllib.parse import quote

import peewee

from flowker.storage.database import database_proxy

logger = logging.getLogger(__name__)

CHECKPOINT_INTERVAL_SECONDS = 0.1
# Checkpoints in a row that found nothing to copy before the thread ends (restarted on use).
IDLE_CHECKPOINTS_BEFORE_EXIT = 50


def sqlite_path(database) -> str | None:
    """The file of the bound SQLite database, or None (PostgreSQL, in-memory, unbound)."""
    if isinstance(database, peewee.DatabaseProxy):
        database = database.obj
    if not isinstance(database, peewee.SqliteDatabase):
        return None
    path = database.database
    if not path or path == ":memory:" or str(path).startswith("file:"):
        return None
    return str(path)


class WalCheckpointer:
    """Runs ``PRAGMA wal_checkpoint(PASSIVE)`` every ``interval`` seconds while in use."""

    def __init__(
        self,
        interval: float = CHECKPOINT_INTERVAL_SECONDS,
        idle_exit: int = IDLE_CHECKPOINTS_BEFORE_EXIT,
        *,
        database=None,
    ):
        self.interval = interval
        # The runtime's database (None: whatever the models' proxy is bound to).
        self.database = database if database is not None else database_proxy
        self.idle_exit = idle_exit
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()  # a forked child (gunicorn worker) starts its own thread
        self._stopped = False
        self.checkpoints = 0  # checkpoints that copied frames (tests and metrics)

    def poke(self) -> None:
        """Make sure the thread runs (cheap when it does): called as each execution starts."""
        if (self._thread is not None and self._pid == os.getpid()) or self._stopped:
            return
        if sqlite_path(self.database) is None:
            return
        with self._lock:
            if self._pid != os.getpid():  # forked: the parent's thread does not exist here
                self._pid, self._thread = os.getpid(), None
            if self._thread is None and not self._stopped:
                self._thread = threading.Thread(target=self._loop, name="flowker-wal-checkpoints", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            thread, self._thread = self._thread, None
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _loop(self) -> None:
        connection: sqlite3.Connection | None = None
        opened_for: str | None = None
        turn = _Turn()
        idle, last = 0, None
        try:
            while not self._wake.wait(self.interval):
                path = sqlite_path(self.database)
                if path != opened_for:
                    if connection is not None:
                        connection.close()
                    turn.release()
                    connection, opened_for = _open(path), path
                mine = connection is not None and turn.take(path)
                state = _checkpoint(connection) if mine and connection is not None else None
                if state is not None and state != last:
                    idle = 0
                    self.checkpoints += 1
                else:
                    idle += 1
                last = state
                if idle >= self.idle_exit:
                    with self._lock:
                        if self._thread is threading.current_thread():
                            self._thread = None  # the next poke starts a new one
                            return
        except Exception:  # noqa: BLE001 - checkpoints are an optimisation; commits still do their own
            logger.warning("background WAL checkpoints stopped", exc_info=True)
            with self._lock:
                if self._thread is threading.current_thread():
                    self._thread = None
        finally:
            turn.release()
            if connection is not None:
                connection.close()


class _Turn:
    """The lock that makes one process per database file the one that checkpoints."""

    def __init__(self) -> None:
        self._fd: int | None = None
        self._path: str | None = None

    def take(self, path: str | None) -> bool:
        """Whether this thread holds the file's checkpoint lock (taking it when free). Without
        a lock file (a read-only folder) every thread checkpoints, as before."""
        if path is None:
            return False
        if self._fd is not None and self._path == path:
            return True
        self.release()
        try:
            fd = os.open(f"{path}-checkpoint.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            return True
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)  # another process checkpoints this file
            return False
        self._fd, self._path = fd, path
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the lock
            self._fd, self._path = None, None


def _open(path: str | None) -> sqlite3.Connection | None:
    # mode=rw: a database deleted meanwhile (a test's temporary one) is not created again.
    if path is None or not os.path.exists(path):
        return None
    try:
        return sqlite3.connect(
            f"file:{quote(os.path.abspath(path))}?mode=rw", uri=True, isolation_level=None, check_same_thread=False
        )
    except sqlite3.Error:
        return None


def _checkpoint(connection: sqlite3.Connection) -> tuple[int, int] | None:
    """One PASSIVE checkpoint: (frames in the log, frames copied back), None when there is
    no log (not in WAL mode) or it failed. The same answer twice means nothing was written."""
    try:
        _busy, log_frames, copied = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    except sqlite3.Error:
        return None
    return (log_frames, copied) if log_frames > 0 else None

"""Opening the database named by a URL and binding it to the models' proxy.

Nothing connects at import time: gunicorn forks workers, and each opens its own
connections lazily on first use.
"""

from __future__ import annotations

import contextlib
import contextvars
import fcntl
import os
import threading
from urllib.parse import parse_qsl, unquote, urlsplit

import peewee
from playhouse.pool import PooledPostgresqlDatabase

from flowker.errors import ConfigurationError

# The database a Runtime bound to the current thread or task (None: the process's one).
_bound_database: contextvars.ContextVar[peewee.Database | None] = contextvars.ContextVar(
    "flowker_bound_database", default=None
)


class RuntimeDatabaseProxy(peewee.DatabaseProxy):
    """The models' proxy: the database bound to the running context (:func:`bound_to`,
    what each Runtime's entry points do), else the process's (:meth:`initialize`).

    So two Runtimes on two databases can serve one process: a request, a run or a
    runtime's own thread reads and writes the database of the runtime it belongs to.
    """

    __slots__ = ("_process_database",)

    @property  # type: ignore[override]
    def obj(self):
        bound = _bound_database.get()
        return bound if bound is not None else self._process_database

    @obj.setter
    def obj(self, value) -> None:
        object.__setattr__(self, "_process_database", value)

    def __setattr__(self, attr, value) -> None:
        object.__setattr__(self, attr, value)


# Every model binds to this proxy; `bind_database` points it at a real database.
database_proxy = RuntimeDatabaseProxy()


@contextlib.contextmanager
def bound_to(database: peewee.Database | None):
    """Models and ``database_proxy`` use ``database`` in this thread (or task) for the
    block; ``None`` leaves the binding as it is."""
    if database is None or _bound_database.get() is database:
        yield database
        return
    token = _bound_database.set(database)
    try:
        yield database
    finally:
        _bound_database.reset(token)


def bind_context(database: peewee.Database | None):
    """Bind ``database`` for the rest of this context (a request); returns the token for
    :func:`unbind_context`, or None when nothing changed."""
    if database is None or _bound_database.get() is database:
        return None
    return _bound_database.set(database)


def unbind_context(token) -> None:
    if token is None:
        return
    try:
        _bound_database.reset(token)
    except ValueError:  # set in another context (a thread the request moved from): nothing to undo here
        pass


SQLITE_BUSY_TIMEOUT_MS = 30_000


class WriterQueue:
    """Makes SQLite writers wait in line instead of in SQLite's busy handler.

    A writer that finds the database locked sleeps in SQLite's busy handler in steps of
    1, 2, 5, 10 ... 100 ms and retries; under load that sleeping, not the work, sets the
    latency (p99 of hundreds of ms). Here each write transaction first takes a lock that
    wakes the next waiter the moment it is released: a thread lock inside the process and
    an ``flock`` on ``<database>-writer.lock`` across processes. It only orders writers:
    ``BEGIN IMMEDIATE`` still takes SQLite's own lock, so a process that does not queue
    (another tool on the same file) stays correct, just not as prompt. A thread that waits
    longer than the busy timeout in the process goes on without the queue. The ``flock``
    wait has no timeout: only a process holding a write transaction open forever would
    stall it, and that would stop every SQLite writer anyway; the kernel releases the lock
    of a process that dies.
    """

    def __init__(self, path: str):
        self.path = path
        self._guard = threading.Lock()
        self._thread_lock = threading.Lock()
        self._local = threading.local()
        self._fd: int | None = None
        self._pid: int | None = None

    def _for_this_process(self) -> None:
        # After a fork (gunicorn workers) the child needs its own lock file description:
        # flock locks belong to the description, which a forked copy of the fd shares.
        with self._guard:
            if self._pid == os.getpid():
                return
            if self._fd is not None:
                os.close(self._fd)
            self._thread_lock = threading.Lock()
            self._local = threading.local()
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError:
                self._fd = None  # no lock file (read-only folder): SQLite's busy handler alone
            self._pid = os.getpid()

    def acquire(self) -> None:
        if self._pid != os.getpid():
            self._for_this_process()
        if self._fd is None or getattr(self._local, "held", False):
            return
        if not self._thread_lock.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000):
            return  # SQLite's busy handler takes over
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except OSError:
            self._thread_lock.release()
            return
        self._local.held = True

    def release(self) -> None:
        if not getattr(self._local, "held", False):
            return
        self._local.held = False
        try:
            assert self._fd is not None  # held only after a flock on it; a fork resets both
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()


class QueuedSqliteDatabase(peewee.SqliteDatabase):
    """SQLite whose write transactions (``BEGIN IMMEDIATE``) wait in a :class:`WriterQueue`."""

    writer_queue: WriterQueue | None = None

    def begin(self, lock_type=None):
        queue = self.writer_queue
        if queue is not None:
            queue.acquire()
        try:
            super().begin(lock_type)
        except BaseException:
            if queue is not None:
                queue.release()
            raise

    def commit(self):
        try:
            super().commit()
        finally:
            if self.writer_queue is not None:
                self.writer_queue.release()

    def rollback(self):
        try:
            super().rollback()
        finally:
            if self.writer_queue is not None:
                self.writer_queue.release()


def open_database(url: str) -> peewee.Database:
    """A peewee database for ``sqlite:///path`` or ``postgresql://user@host:port/db?opts``.

    The connection is not opened here.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    query = dict(parse_qsl(parts.query))
    if scheme == "sqlite":
        path = unquote(parts.path)
        # sqlite:///relative.db -> "relative.db"; sqlite:////abs/path.db -> "/abs/path.db"
        if parts.netloc:
            raise ConfigurationError(f"SQLite URLs look like sqlite:///path/to/file.db, not {url!r}")
        path = path[1:] if path.startswith("/") else path
        if not path:
            raise ConfigurationError("the SQLite URL names no file")
        database = QueuedSqliteDatabase(
            path,
            # IMMEDIATE: every write transaction takes the write lock up front, so two
            # writers never deadlock upgrading read locks, and audit appends serialize.
            lock_type="IMMEDIATE",
            timeout=SQLITE_BUSY_TIMEOUT_MS / 1000,
            pragmas={
                "journal_mode": "wal",
                "busy_timeout": SQLITE_BUSY_TIMEOUT_MS,
                "foreign_keys": 1,
                "synchronous": "normal",
                # Fewer, larger WAL checkpoints: appends stay off the fsync path longer.
                "wal_autocheckpoint": 10000,
            },
        )
        if path != ":memory:" and not path.startswith("file:"):
            database.writer_queue = WriterQueue(f"{path}-writer.lock")
        return database
    if scheme in ("postgresql", "postgres"):
        dbname = unquote(parts.path.lstrip("/"))
        if not dbname:
            raise ConfigurationError("the PostgreSQL URL names no database")
        max_connections = int(query.pop("max_connections", 32))
        connect_kwargs = {
            "host": parts.hostname or "127.0.0.1",
            "port": parts.port or 5432,
            "user": unquote(parts.username) if parts.username else None,
            "password": unquote(parts.password) if parts.password else None,
            "connect_timeout": int(query.pop("connect_timeout", 10)),
        }
        connect_kwargs.update(query)  # e.g. options=-csearch_path=..., sslmode=require
        connect_kwargs = {k: v for k, v in connect_kwargs.items() if v is not None}
        return PooledPostgresqlDatabase(
            dbname,
            max_connections=max_connections,
            stale_timeout=300,
            timeout=30,
            **connect_kwargs,
        )
    raise ConfigurationError("FLOWKER_DATABASE_URL must start with sqlite:/// or postgresql://")


def database_label(url: str) -> str:
    """The database URL for messages: a password in it is masked."""
    from flowker.security.redaction import redact_url

    return url if url.startswith("sqlite:") else redact_url(url)


def missing_sqlite_file(url: str) -> str | None:
    """The file a SQLite URL names when that file does not exist yet, else None (nothing is
    created; in-memory and ``file:`` URIs never count as missing)."""
    database = open_database(url)  # does not connect
    if (
        isinstance(database, peewee.SqliteDatabase)
        and database.database != ":memory:"
        and not database.database.startswith("file:")
        and not os.path.exists(database.database)
    ):
        return os.path.abspath(database.database)
    return None


def bind_database(url: str) -> peewee.Database:
    """Open the database for ``url`` and point the models' proxy at it."""
    database = open_database(url)
    database_proxy.initialize(database)
    return database


def is_postgres(database: peewee.Database | peewee.DatabaseProxy) -> bool:
    target = database.obj if isinstance(database, peewee.DatabaseProxy) else database
    return isinstance(target, peewee.PostgresqlDatabase)


def write_transaction(database: peewee.Database | None = None):
    """The transaction every state change uses (BEGIN IMMEDIATE on SQLite).

    Nested calls become savepoints of the outer transaction.
    """
    return (database or database_proxy).atomic()


@contextlib.contextmanager
def exclusive_transaction(database: peewee.Database, lock_id: int):
    """A write transaction that is also the only one holding the lock ``lock_id`` until it ends.

    Serializes a piece of work across every process and host on the database (migrations,
    spec sync): SQLite's ``BEGIN IMMEDIATE`` already excludes every other writer; PostgreSQL
    takes the transaction-scoped advisory lock ``lock_id``, released by commit or rollback.
    """
    with database.atomic():
        if is_postgres(database):
            database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (lock_id,))
        yield database


def close_database(database: peewee.Database) -> None:
    """Close this thread's connection and, for a pool, every idle pooled one (a pool keeps
    closed connections open for reuse, which would outlive a command or a fork)."""
    if not database.is_closed():
        database.close()
    close_all = getattr(database, "close_all", None)
    if close_all:
        close_all()


@contextlib.contextmanager
def connection(database: peewee.Database | peewee.DatabaseProxy | None = None):
    """Open a connection for the duration of a block (a request, a CLI command)."""
    database = database or database_proxy
    opened = database.connect(reuse_if_open=True)
    try:
        yield database
    finally:
        if opened and not database.is_closed():
            database.close()

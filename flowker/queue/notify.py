"""Waiting for queued work without polling the database hot.

A worker that found nothing to claim waits here before it looks again:

- :class:`PostgresListener`: ``LISTEN flowker_queue`` on a dedicated connection (not
  the pool's); ``ExecutionService.enqueue`` notifies at commit, so an idle worker
  claims within milliseconds and otherwise looks only every ``fallback_seconds`` (for
  anything a notification does not announce: a concurrency slot freed on another host,
  a notification lost while reconnecting).
- :class:`Backoff` (SQLite, which has no notifications): waits of ``minimum`` seconds
  doubling to ``maximum``, back to ``minimum`` as soon as work is found.

Both end a wait at once on :meth:`wake` (a run of this process ended, this process
queued a run) and on :meth:`close` (the worker is stopping); the thread that waited
calls :meth:`release` when it is done.
"""

from __future__ import annotations

import logging
import os
import select
import threading

logger = logging.getLogger(__name__)

BACKOFF_MINIMUM_SECONDS = 0.01
BACKOFF_MAXIMUM_SECONDS = 1.0
LISTEN_FALLBACK_SECONDS = 5.0
RECONNECT_SECONDS = 1.0


class Backoff:
    """Waits that double from ``minimum`` to ``maximum`` while no work is found."""

    def __init__(self, minimum: float = BACKOFF_MINIMUM_SECONDS, maximum: float = BACKOFF_MAXIMUM_SECONDS):
        self.minimum, self.maximum = minimum, maximum
        self.delay = minimum
        self._event = threading.Event()

    def wait(self) -> bool:
        """Wait the current delay (then double it); True when :meth:`wake` ended the wait."""
        delay, self.delay = self.delay, min(self.delay * 2, self.maximum)
        woken = self._event.wait(delay)
        self._event.clear()
        return woken

    def wake(self) -> None:
        self._event.set()

    def reset(self) -> None:
        self.delay = self.minimum

    def close(self) -> None:
        self.wake()

    def release(self) -> None:
        """Nothing held."""


class PostgresListener:
    """``LISTEN channel`` on its own connection to ``database`` (a peewee PostgreSQL
    database: its connection parameters are reused, never its pool). Notifications
    whose payload names another schema (another Flowker on the same database) are
    ignored."""

    def __init__(self, database, channel: str, *, fallback_seconds: float = LISTEN_FALLBACK_SECONDS):
        self.dbname = database.database
        self.connect_params = dict(database.connect_params)
        self.channel = channel
        self.fallback_seconds = fallback_seconds
        self.notifications = 0  # relevant notifications received (tests, metrics)
        self._connection = None
        self._schema: str | None = None
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        self._closed = False
        self._released = False

    def _connect(self):
        import psycopg2  # type: ignore[import-untyped]  # no stubs in the project

        connection = psycopg2.connect(dbname=self.dbname, **self.connect_params)
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f"LISTEN {self.channel}")
            cursor.execute("SELECT current_schema()")
            self._schema = cursor.fetchone()[0]
        return connection

    def wait(self) -> bool:
        """Wait up to ``fallback_seconds`` for a notification or :meth:`wake`; True when one
        came (or the connection was just made again: notifications may have been missed)."""
        if self._closed:
            return True
        if self._connection is None:
            try:
                self._connection = self._connect()
            except Exception as exc:  # noqa: BLE001 - the database is down: wait, then try again
                logger.warning(
                    "cannot LISTEN for queued work (%s); retrying in %.0f s", type(exc).__name__, RECONNECT_SECONDS
                )
                self._sleep(RECONNECT_SECONDS)
                return False
            return True
        if self._drain_notifications():
            return True
        try:
            ready, _, _ = select.select([self._connection, self._wake_read], [], [], self.fallback_seconds)
        except (OSError, ValueError):
            self._drop_connection()
            return True
        woken = False
        if self._wake_read in ready:
            self._drain_pipe()
            woken = True
        if self._connection in ready:
            woken = self._drain_notifications() or woken
        return woken

    def _drain_notifications(self) -> bool:
        connection = self._connection
        if connection is None:
            return False
        try:
            connection.poll()
        except Exception:  # noqa: BLE001 - the connection broke: made again by the next wait
            self._drop_connection()
            return True
        relevant = False
        while connection.notifies:
            notification = connection.notifies.pop()
            if not notification.payload or notification.payload == self._schema:
                relevant = True
        if relevant:
            self.notifications += 1
        return relevant

    def _sleep(self, seconds: float) -> None:
        ready, _, _ = select.select([self._wake_read], [], [], seconds)
        if ready:
            self._drain_pipe()

    def _drain_pipe(self) -> None:
        try:
            while os.read(self._wake_read, 512):
                pass
        except BlockingIOError:
            pass

    def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except Exception:  # noqa: BLE001 - already broken
                pass

    def wake(self) -> None:
        if self._released:
            return  # the pipe's descriptors are closed (and their numbers may be reused)
        try:
            os.write(self._wake_write, b"x")
        except (BlockingIOError, OSError):
            pass  # the pipe is full (a wake is pending anyway) or closed

    def reset(self) -> None:
        """Nothing to reset: a notification wakes a waiting worker whatever it waited before."""

    def close(self) -> None:
        """From any thread: a wait in progress ends at once, and no other begins."""
        self._closed = True
        self.wake()

    def release(self) -> None:
        """From the waiting thread, once it waits no more: the connection and the pipe go."""
        self._closed = self._released = True
        self._drop_connection()
        for fd in (self._wake_read, self._wake_write):
            try:
                os.close(fd)
            except OSError:
                pass


def waiter_for(database, channel: str, *, fallback_seconds: float = LISTEN_FALLBACK_SECONDS):
    """The waiter for ``database``'s backend: a listener on PostgreSQL, a backoff on SQLite."""
    from flowker.storage.database import is_postgres

    if is_postgres(database):
        return PostgresListener(database, channel, fallback_seconds=fallback_seconds)
    return Backoff()

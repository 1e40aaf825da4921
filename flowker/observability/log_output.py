"""The log stream: lines written in batches, at most :data:`FLUSH_SECONDS` late.

A ``logging.StreamHandler`` writes and flushes every line: one ``write`` system call per
line, each waking whatever reads the stream (journald, a container runtime, a pipe). With
an access line and an execution line per request that was most of what JSON logs cost a
busy server (benchmarks/README.md, observability_cost): the reader's wake-ups take the CPU
from the workers. :class:`BatchingStreamHandler` keeps the formatted lines of a process and
writes them together:

* when :data:`FLUSH_SECONDS` have passed since the first line waiting (a daemon thread per
  process, started with the first line and again in a forked child). While lines keep
  coming the thread writes every :data:`FLUSH_SECONDS` on its own; only when it found
  nothing to write does it wait to be woken by the next line. So a busy server's request
  threads never wake it (each wake-up is a context switch and a hand-over of the GIL);
* at once, with every line before it, for a WARNING or worse, or when
  :data:`MAX_PENDING_BYTES` are waiting;
* on ``flush()`` and ``close()`` - ``logging.shutdown`` at exit, gunicorn's worker and master
  exits included - and before a fork (a child must not write its parent's lines again).

Lines keep their order. A process killed without an exit (SIGKILL, a crash) loses at most
the last :data:`FLUSH_SECONDS` of INFO lines.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref

# One write a second while busy: each flush wakes the thread and hands it the GIL; going from
# 20 a second (and the metrics' 10) to 1 each gained about 1.5 points of throughput (benchmarks/README.md).
FLUSH_SECONDS = 1.0
MAX_PENDING_BYTES = 64 * 1024
_WRITTEN_AT_ONCE = logging.WARNING  # and worse (a module global: read per line)

_handlers: "weakref.WeakSet[BatchingStreamHandler]" = weakref.WeakSet()


class BatchingStreamHandler(logging.StreamHandler):
    def __init__(self, stream=None, flush_seconds: float = FLUSH_SECONDS):
        super().__init__(stream)
        self.flush_seconds = flush_seconds
        self._pending: list[str] = []
        self._pending_bytes = 0
        self._wake = threading.Event()
        self._flusher_pid = 0
        self._parked = True  # the flusher (none yet) waits for a line to wake it
        self._closed = False
        _handlers.add(self)

    def emit(self, record: logging.LogRecord) -> None:
        # Called under the handler's lock (Handler.handle), as flush() writes.
        try:
            line = self.format(record)
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)
            return
        self.write_line(line, record.levelno)  # the lock again: an RLock, taken by this thread

    def write_line(self, line: str, levelno: int) -> None:
        """Queue a formatted line (:meth:`emit`'s, or one made without a record by
        :func:`flowker.observability.logs.log_line`), ended by the terminator."""
        line += self.terminator
        with self.lock:  # type: ignore[union-attr] # made by Handler.__init__; acquire() and release() without their calls
            self._pending.append(line)
            self._pending_bytes += len(line)
            if levelno >= _WRITTEN_AT_ONCE or self._pending_bytes >= MAX_PENDING_BYTES or self._closed:
                self._write_pending()
            elif self._parked:
                if self._flusher_pid != os.getpid():
                    self._start_flusher()
                self._parked = False
                self._wake.set()

    def flush(self) -> None:
        self.acquire()
        try:
            self._write_pending()
        finally:
            self.release()

    def close(self) -> None:
        self.acquire()
        try:
            self._write_pending()
            self._closed = True
        finally:
            self.release()
        self._wake.set()
        super().close()

    def _write_pending(self) -> None:
        """Write the waiting lines (the caller holds the handler's lock)."""
        if self._pending:
            text = "".join(self._pending)
            self._pending, self._pending_bytes = [], 0
            try:
                self.stream.write(text)
                self.stream.flush()
            except Exception:
                self.handleError(logging.makeLogRecord({"msg": "log lines could not be written"}))
        elif self.stream and hasattr(self.stream, "flush"):
            try:
                self.stream.flush()
            except ValueError:  # closed (a test's captured stderr): nothing was waiting to be written
                pass

    def _start_flusher(self) -> None:
        self._flusher_pid = os.getpid()
        self._wake = threading.Event()
        reference = weakref.ref(self)
        threading.Thread(
            target=_flush_loop, args=(reference, self._wake), name="flowker-log-flush", daemon=True
        ).start()

    def _write_or_park(self, wake: threading.Event) -> bool:
        """The flusher's turn: write what is waiting, or, with nothing for a whole interval,
        park it (True) until a line wakes it - decided under the lock lines are added under,
        so the next line sees it parked."""
        with self.lock:  # type: ignore[union-attr] # made by Handler.__init__
            if self._pending:
                self._write_pending()
                return False
            self._parked = True
            wake.clear()
            return True

    def _after_fork_in_child(self) -> None:
        self._pending, self._pending_bytes = [], 0  # the parent wrote them (flushed before the fork)
        self._flusher_pid = 0
        self._parked = True


def _flush_loop(reference: "weakref.ref[BatchingStreamHandler]", wake: threading.Event) -> None:
    while True:
        wake.wait()  # parked: the next line wakes it
        handler = reference()
        if handler is None or handler._closed or handler._wake is not wake:
            return
        seconds = handler.flush_seconds
        del handler
        while True:
            time.sleep(seconds)  # the lines of the next few ms join this write
            handler = reference()
            if handler is None:
                return
            parked, closed = handler._write_or_park(wake), handler._closed
            del handler
            if closed:
                return
            if parked:
                break


def _flush_all_before_fork() -> None:
    for handler in list(_handlers):
        try:
            handler.flush()
        except Exception:  # noqa: BLE001 - a fork must not fail for a log line
            pass


def _reset_in_child() -> None:
    for handler in list(_handlers):
        handler._after_fork_in_child()


os.register_at_fork(before=_flush_all_before_fork, after_in_child=_reset_in_child)

"""Metric recordings at a fraction of prometheus-client's cost, into the same files, in batches.

In multiprocess mode every value of prometheus-client is a ``MmapedValue``: each ``inc`` or
``set`` takes the module's lock, calls ``os.getpid()`` (a system call) to notice a fork,
and writes the new value into this process's memory-mapped file; a histogram observation
is two such writes, a counter's ``labels()`` a lock and a tuple of ``str()`` more. A REST
execution makes about 15 of them on the request thread.

A *recorder* here holds what one (metric, label values) records: the resolved value
objects (a counter's or gauge's value; a histogram's sum and buckets), where they are in
their file and the lock prometheus-client guards that file with. A recording only keeps
what is to be written, in memory: it appends a counter's increment or a histogram's amount
to the recorder's list, or replaces a gauge's latest value and the time it was set (the
"mostrecent" modes compare it across processes) - one operation, atomic under the GIL, no
lock - and, once per flush, marks the recorder dirty under the lock of the process's
:class:`PendingWrites`. A flush writes every pending value under the file's lock, once for
the whole batch: the same values at the same places as prometheus-client would have
written (amounts added one by one, in recording order: even a histogram's float sum is the
library's), so files and expositions do not change, and no increment of any thread is lost.

A flush happens

* from a daemon thread, :data:`FLUSH_SECONDS` after the first recording waiting (started
  with the first recording, and again in a forked child). While recordings keep coming it
  flushes every :data:`FLUSH_SECONDS` on its own; only when it found nothing for a whole
  interval does it park until the next recording wakes it, so a busy server's request
  threads never wake it (as :mod:`flowker.observability.log_output`'s lines);
* before this process reads the files for an exposition (``GET /metrics``, ``--metrics-bind``:
  :func:`flowker.observability.metrics.directory_registry`), so it shows its own recordings
  at once;
* at exit (``atexit``; gunicorn's ``worker_exit`` too) and before a fork.

So another process (a scrape answered by another worker) sees a recording at most
:data:`FLUSH_SECONDS` late, and a process killed without an exit (SIGKILL, a crash) loses at
most its last :data:`FLUSH_SECONDS` of recordings.

The fork check moves out of the write: :func:`os.register_at_fork` drops every recorder and
every pending value in a forked child (a gunicorn worker; the parent writes its own), and a
recorder is only made after prometheus-client ran its own check (``get()``), which, in a
child, reopens the files under the child's pid before the first write. So a child never
writes into its parent's files.

Where the values are not file-backed (one-process mode) or prometheus-client is not the
shape this expects, the recorder is the library's own child object (same ``inc``,
``observe``, ``set``), which records at once.
"""

from __future__ import annotations

import atexit
import logging
import os
import struct
import threading
import time
from bisect import bisect_left
from typing import Any

logger = logging.getLogger(__name__)

# As the log lines' (log_output.FLUSH_SECONDS), for the same reason; scrapes come every 15 s or more.
FLUSH_SECONDS = 1.0

# MmapedDict's own: a value and its timestamp, written in one slice assignment.
_pack_value = struct.Struct(b"dd").pack

# Recorders by (instrument, label values). The label values are bounded (names, route
# templates, statuses), so the cap is only a guard: when full, the cache starts again.
CACHE_LIMIT = 4096
_recorders: dict[tuple, Any] = {}


class PendingWrites:
    """The recordings of this process not yet in its files, and the thread writing them."""

    def __init__(self, flush_seconds: float = FLUSH_SECONDS):
        self.flush_seconds = flush_seconds
        self._start_afresh()

    def _start_afresh(self) -> None:
        # Also in a forked child: new locks (another thread of the parent may have held
        # one at the fork), nothing pending (the parent writes its own), no flusher yet.
        self.lock = threading.Lock()  # the dirty flags and list, the flusher's parking
        # Flushes one at a time: what one took is written before the next takes (a
        # gauge's newest value lands last; an exposition waits for a flush under way).
        self._flush_lock = threading.Lock()
        self._dirty: list = []  # the recorders with something pending, in order
        self._wake = threading.Event()
        self._flusher_started = False
        self._parked = True  # the flusher (none yet) waits for a recording to wake it

    def mark_dirty(self, recorder) -> None:
        """``recorder`` has something pending (a recording found it not dirty)."""
        with self.lock:
            if recorder.dirty:  # marked by another thread meanwhile
                return
            recorder.dirty = True
            self._dirty.append(recorder)
            if self._parked:
                self._parked = False
                if not self._flusher_started:
                    self._start_flusher()
                self._wake.set()

    def flush(self, park: threading.Event | None = None) -> bool:
        """Write everything recorded so far; False if nothing was pending. With ``park``
        (the flusher's event) and nothing pending, the flusher parks - decided under the
        lock recordings mark their recorders dirty under, so the next one wakes it."""
        with self._flush_lock:
            return self._write_locked(park)

    def _write_locked(self, park: threading.Event | None = None) -> bool:
        with self.lock:
            dirty = self._dirty
            if not dirty:
                if park is not None:
                    self._parked = True
                    park.clear()
                return False
            self._dirty = []
            taken = []
            for recorder in dirty:
                recorder.dirty = False  # first: what is recorded after the take marks it again
                taken.append((recorder, recorder.take()))
        # Usually one file lock for all; a test's directories each have their own.
        by_lock: dict[Any, list] = {}
        for recorder, pending in taken:
            by_lock.setdefault(recorder.file_lock, []).append((recorder, pending))
        for file_lock, writes in by_lock.items():
            with file_lock:
                for recorder, pending in writes:
                    recorder.write_locked(pending)
        return True

    def _start_flusher(self) -> None:
        self._flusher_started = True
        threading.Thread(target=_flush_loop, args=(self, self._wake), name="flowker-metrics-flush", daemon=True).start()

    def before_fork(self) -> None:
        # Held across the fork: no flush is half done there (prometheus-client's lock held
        # by a thread the child does not have); released in the parent just after.
        self._flush_lock.acquire()
        try:
            self._write_locked()
        except Exception:  # noqa: BLE001 - a fork must not fail for a metric
            logger.exception("metric values could not be written before a fork")

    def after_fork_in_parent(self) -> None:
        self._flush_lock.release()


def _flush_loop(pending: PendingWrites, wake: threading.Event) -> None:
    while True:
        wake.wait()  # parked: the next recording wakes it
        while True:
            time.sleep(pending.flush_seconds)  # the recordings of the next interval join this flush
            try:
                if not pending.flush(wake):
                    break
            except Exception:  # noqa: BLE001 - the thread must live on for the next ones
                logger.exception("metric values could not be written")


_pending = PendingWrites()


def write_pending() -> None:
    """Write this process's pending recordings into its files now."""
    _pending.flush()


# Looked up at each fork (not bound once): the module's PendingWrites is the one to flush.
def _before_fork() -> None:
    _pending.before_fork()


def _after_fork_in_parent() -> None:
    _pending.after_fork_in_parent()


def _after_fork_in_child() -> None:
    # No lock here: another thread of the parent may have held one at the fork.
    _recorders.clear()
    _pending._start_afresh()


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child)
atexit.register(write_pending)


def recorder(instrument, labels: tuple[str, ...]):
    """What records ``instrument``'s series of ``labels`` (``()`` for an unlabelled one):
    ``inc(amount)`` (counter), ``observe(amount)`` (histogram) or ``set(value)`` (gauge)."""
    key = (instrument, labels)
    found = _recorders.get(key)
    if found is None:
        if len(_recorders) >= CACHE_LIMIT:
            _recorders.clear()  # a dropped recorder still pending is written by the next flush
        found = _recorders[key] = _new_recorder(instrument.labels(*labels) if labels else instrument)
    return found


def counted_and_timed(counter, histogram, labels: tuple[str, ...]) -> CountAndObserve:
    """``counter``'s series of ``labels`` and ``histogram``'s of ``labels[:-1]`` (the same
    labels but the last: an outcome or status), recorded together: ``record(seconds)``."""
    key = (counter, histogram, labels)  # three parts: never one of recorder()'s keys
    found = _recorders.get(key)
    if found is None:
        both = CountAndObserve(recorder(counter, labels), recorder(histogram, labels[:-1]))
        if len(_recorders) >= CACHE_LIMIT:
            _recorders.clear()
        found = _recorders[key] = both
    return found


def cached_recorders() -> int:
    return len(_recorders)


def _file_lock(value) -> Any | None:
    """The lock of ``value``'s MultiProcessValue class (a variable its methods close over),
    if ``value`` is one of prometheus-client's file-backed values as this module knows them."""
    cls = type(value)
    if not getattr(cls, "_multiprocess", False):
        return None
    if not all(hasattr(value, name) for name in ("_file", "_key", "_value", "_timestamp")):
        return None
    if not all(hasattr(value._file, name) for name in ("_m", "_positions", "write_value")):
        return None
    inc = getattr(cls, "inc", None)
    code, closure = getattr(inc, "__code__", None), getattr(inc, "__closure__", None)
    if code is None or closure is None:
        return None
    cell = dict(zip(code.co_freevars, closure)).get("lock")
    lock = cell.cell_contents if cell is not None else None
    return lock if hasattr(lock, "acquire") and hasattr(lock, "release") else None


def _new_recorder(child):
    """A file recorder for ``child`` (a counter, gauge or histogram with its labels), else ``child``."""
    kind = getattr(child, "_type", None)
    first = getattr(child, "_sum", None) if kind == "histogram" else getattr(child, "_value", None)
    lock = _file_lock(first) if first is not None else None
    if lock is None:
        return child
    # prometheus-client's own fork check, before anything is read: in a forked child it
    # reopens every value's file under the child's pid (then the recorder holds those).
    first.get()
    with lock:
        if kind == "counter":
            return CounterRecorder(lock, first)
        if kind == "gauge":
            return GaugeRecorder(lock, first, bool(getattr(child, "_is_most_recent", False)))
        if kind == "histogram":
            buckets = list(child._buckets)
            if buckets and all(_file_lock(bucket) is lock and bucket._file is first._file for bucket in buckets):
                return HistogramRecorder(lock, first, tuple(child._upper_bounds), tuple(buckets))
    return child


def _position(value) -> int:
    """Where ``value``'s value and timestamp are in its file (fixed for that file: entries
    are only appended). Its key is there: the value read it when it was made."""
    file = value._file
    if value._key not in file._positions:
        file.write_value(value._key, value._value, value._timestamp)
    return file._positions[value._key]


def _write(value, file, at: int, number: float, timestamp: float) -> None:
    """MmapedValue's write without its pid check (same value, timestamp, key and file): at
    ``at`` while ``value`` is still in ``file``; the file's lock is held."""
    value._value = number
    value._timestamp = timestamp
    current = value._file
    if current is file:  # MmapedDict.write_value without finding the key again
        current._m[at : at + 16] = _pack_value(number, timestamp)
    else:
        current.write_value(value._key, number, timestamp)


class _FileRecorder:
    """What every file recorder has: the process's pending writes and the lock of its file.

    A recording takes no lock: it appends to the recorder's list of amounts or replaces its
    latest value (one operation each, atomic under the GIL), then, if the recorder is not
    dirty, marks it under the pending writes' lock. A flush clears the flag before it takes
    (the amounts there, ``del`` of just those: one operation each), so a recording it did not
    take finds the flag cleared and marks the recorder again."""

    __slots__ = ("_pending", "file_lock", "dirty")

    def __init__(self, file_lock):
        self._pending = _pending
        self.file_lock = file_lock
        self.dirty = False  # in the pending writes' list (set and cleared under their lock)


def _added(number: float, amounts: list[float]) -> float:
    """``number`` plus ``amounts`` one by one, as the library's writes add them: the same
    float (not sum(), which compensates rounding since Python 3.12)."""
    for amount in amounts:
        number += amount
    return number


class _AmountsRecorder(_FileRecorder):
    """A recorder whose recordings are amounts, all written (a counter's, a histogram's)."""

    __slots__ = ("amounts",)

    def __init__(self, file_lock):
        super().__init__(file_lock)
        self.amounts: list[float] = []

    def observe(self, amount: float) -> None:
        self.amounts.append(amount)
        if not self.dirty:
            self._pending.mark_dirty(self)

    def take(self) -> list[float]:
        amounts = self.amounts
        count = len(amounts)
        taken = amounts[:count]
        del amounts[:count]  # those only: what another thread appended meanwhile stays
        return taken


class CounterRecorder(_AmountsRecorder):
    __slots__ = ("_value", "_file", "_at")

    def __init__(self, file_lock, value):
        super().__init__(file_lock)
        self._value = value
        self._file = value._file
        self._at = _position(value)

    def inc(self, amount: float = 1) -> None:
        if amount < 0:
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        self.amounts.append(amount)  # observe(), inline: a call fewer per recording
        if not self.dirty:
            self._pending.mark_dirty(self)

    def write_locked(self, amounts: list[float]) -> None:
        value = self._value
        _write(value, self._file, self._at, _added(value._value, amounts), 0.0)


class GaugeRecorder(_FileRecorder):
    __slots__ = ("_value", "_most_recent", "_file", "_at", "_latest")

    def __init__(self, file_lock, value, most_recent: bool):
        super().__init__(file_lock)
        self._value = value
        self._most_recent = most_recent
        self._file = value._file
        self._at = _position(value)
        self._latest = (0.0, 0.0)

    def set(self, number: float) -> None:
        # Gauge.set: the "mostrecent" modes keep the time of the setting (the newest wins).
        self._latest = (float(number), time.time() if self._most_recent else 0.0)
        if not self.dirty:
            self._pending.mark_dirty(self)

    def take(self) -> tuple[float, float]:
        return self._latest

    def write_locked(self, latest: tuple[float, float]) -> None:
        _write(self._value, self._file, self._at, *latest)


class HistogramRecorder(_AmountsRecorder):
    """Histogram.observe: the sum, and the one (non-cumulative) bucket the amount falls in."""

    __slots__ = ("_sum", "_bounds", "_buckets", "_file", "_sum_at", "_bucket_at")

    def __init__(self, file_lock, sum_value, bounds: tuple[float, ...], buckets: tuple):
        super().__init__(file_lock)
        self._sum = sum_value
        self._bounds = bounds
        self._buckets = buckets
        self._file = sum_value._file  # the buckets' too (checked by the caller)
        self._sum_at = _position(sum_value)
        self._bucket_at = tuple(_position(bucket) for bucket in buckets)

    def write_locked(self, amounts: list[float]) -> None:
        """The observations' writes: the sum added to amount by amount (the library's float),
        each bucket once with its count."""
        if not amounts:  # marked again while a flush took its amounts
            return
        bounds = self._bounds
        counts = [0] * len(bounds)
        for amount in amounts:
            if amount == amount:  # the first bound >= amount, as the library's loop finds it; NaN in none
                index = bisect_left(bounds, amount)
                if index < len(counts):
                    counts[index] += 1
        total = self._sum
        _write(total, self._file, self._sum_at, _added(total._value, amounts), 0.0)
        for index, count in enumerate(counts):
            if count:
                bucket = self._buckets[index]
                _write(bucket, self._file, self._bucket_at[index], bucket._value + count, 0.0)


class CountAndObserve:
    """An event counted and its duration observed (an execution's end, an executor call, an
    HTTP request): one recording, one call."""

    __slots__ = ("_counter", "_histogram", "_files")

    def __init__(self, counter, histogram):
        self._counter = counter
        self._histogram = histogram
        self._files = isinstance(counter, CounterRecorder) and isinstance(histogram, HistogramRecorder)

    def record(self, seconds: float) -> None:
        if not self._files:  # the library's own children (values in memory)
            self._counter.inc()
            self._histogram.observe(seconds)
            return
        # CounterRecorder.inc's and HistogramRecorder.observe's, without their two calls.
        counter, histogram = self._counter, self._histogram
        counter.amounts.append(1)
        if not counter.dirty:
            counter._pending.mark_dirty(counter)
        histogram.amounts.append(seconds)
        if not histogram.dirty:
            histogram._pending.mark_dirty(histogram)

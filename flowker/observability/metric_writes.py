"""Metric writes at a fraction of prometheus-client's cost, into the same files.

In multiprocess mode every value of prometheus-client is a ``MmapedValue``: each ``inc`` or
``set`` takes the module's lock, calls ``os.getpid()`` (a system call) to notice a fork,
and writes the new value into this process's memory-mapped file; a histogram observation
is two such writes, a counter's ``labels()`` a lock and a tuple of ``str()`` more. A REST
execution makes about 15 of them on the request thread.

A *recorder* here holds what one (metric, label values) writes: the resolved value
objects (a counter's or gauge's value; a histogram's sum and buckets) and the lock
prometheus-client guards their files with. One recording takes that lock once and writes
exactly what prometheus-client would (same value, same timestamp, same key, same file),
so files and expositions do not change, and increments from several threads are not lost
(the same lock as every other write of the process).

The fork check moves out of the write: :func:`os.register_at_fork` drops every recorder
in a forked child (a gunicorn worker), and a recorder is only made after prometheus-client
ran its own check (``get()``), which, in a child, reopens the files under the child's pid
before the first write. So a child never writes into its parent's files.

Where the values are not file-backed (one-process mode) or prometheus-client is not the
shape this expects, the recorder is the library's own child object (same ``inc``,
``observe``, ``set``).
"""

from __future__ import annotations

import math
import os
import struct
import time
from bisect import bisect_left
from typing import Any

# MmapedDict's own: a value and its timestamp, written in one slice assignment.
_pack_value = struct.Struct(b"dd").pack

# Recorders by (instrument, label values). The label values are bounded (names, route
# templates, statuses), so the cap is only a guard: when full, the cache starts again.
CACHE_LIMIT = 4096
_recorders: dict[tuple, Any] = {}


def _drop_recorders_in_child() -> None:
    # No lock here: another thread of the parent may have held one at the fork.
    _recorders.clear()


os.register_at_fork(after_in_child=_drop_recorders_in_child)


def recorder(instrument, labels: tuple[str, ...]):
    """What writes ``instrument``'s series of ``labels`` (``()`` for an unlabelled one):
    ``inc(amount)`` (counter), ``observe(amount)`` (histogram) or ``set(value)`` (gauge)."""
    key = (instrument, labels)
    found = _recorders.get(key)
    if found is None:
        if len(_recorders) >= CACHE_LIMIT:
            _recorders.clear()
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


class CounterRecorder:
    __slots__ = ("_lock", "_value", "_file", "_at")

    def __init__(self, lock, value):
        self._lock = lock
        self._value = value
        self._file = value._file
        self._at = _position(value)

    def inc(self, amount: float = 1) -> None:
        if amount < 0:
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        with self._lock:
            self.add_locked(amount)

    def add_locked(self, amount: float) -> None:
        """MmapedValue.inc without its pid check (same value, timestamp, key and file); the lock is held."""
        value = self._value
        number = value._value + amount
        value._value = number
        value._timestamp = 0.0
        file = value._file
        if file is self._file:  # MmapedDict.write_value without finding the key again
            at = self._at
            file._m[at : at + 16] = _pack_value(number, 0.0)
        else:
            file.write_value(value._key, number, 0.0)


class GaugeRecorder:
    __slots__ = ("_lock", "_value", "_most_recent", "_file", "_at")

    def __init__(self, lock, value, most_recent: bool):
        self._lock = lock
        self._value = value
        self._most_recent = most_recent
        self._file = value._file
        self._at = _position(value)

    def set(self, number: float) -> None:
        number = float(number)
        # Gauge.set: the "mostrecent" modes keep the time of the write (the newest wins).
        timestamp = time.time() if self._most_recent else 0.0
        value = self._value
        with self._lock:
            value._value = number
            value._timestamp = timestamp
            file = value._file
            if file is self._file:
                at = self._at
                file._m[at : at + 16] = _pack_value(number, timestamp)
            else:
                file.write_value(value._key, number, timestamp)


class HistogramRecorder:
    """Histogram.observe: the sum, and the one (non-cumulative) bucket the amount falls in."""

    __slots__ = ("_lock", "_sum", "_bounds", "_buckets", "_file", "_sum_at", "_bucket_at")

    def __init__(self, lock, sum_value, bounds: tuple[float, ...], buckets: tuple):
        self._lock = lock
        self._sum = sum_value
        self._bounds = bounds
        self._buckets = buckets
        self._file = sum_value._file  # the buckets' too (checked by the caller)
        self._sum_at = _position(sum_value)
        self._bucket_at = tuple(_position(bucket) for bucket in buckets)

    def observe(self, amount: float) -> None:
        with self._lock:
            self.add_locked(amount)

    def add_locked(self, amount: float) -> None:
        """Histogram.observe's writes; the lock is held."""
        # The first bound >= amount, as the library's loop finds it; NaN falls in none.
        index = bisect_left(self._bounds, amount) if not math.isnan(amount) else len(self._bounds)
        total = self._sum
        number = total._value + amount
        total._value = number
        total._timestamp = 0.0
        file = total._file
        if file is self._file:
            at = self._sum_at
            file._m[at : at + 16] = _pack_value(number, 0.0)
        else:
            file.write_value(total._key, number, 0.0)
        if index < len(self._buckets):
            bucket = self._buckets[index]
            count = bucket._value + 1
            bucket._value = count
            bucket._timestamp = 0.0
            bucket_file = bucket._file
            if bucket_file is self._file:
                at = self._bucket_at[index]
                bucket_file._m[at : at + 16] = _pack_value(count, 0.0)
            else:
                bucket_file.write_value(bucket._key, count, 0.0)


class CountAndObserve:
    """An event counted and its duration observed (an execution's end, an executor call, an
    HTTP request): one recording, so one lock for both when both are file recorders."""

    __slots__ = ("_counter", "_histogram", "_lock")

    def __init__(self, counter, histogram):
        self._counter = counter
        self._histogram = histogram
        shared = (
            isinstance(counter, CounterRecorder)
            and isinstance(histogram, HistogramRecorder)
            and counter._lock is histogram._lock
        )
        self._lock = counter._lock if shared else None

    def record(self, seconds: float) -> None:
        lock = self._lock
        if lock is None:  # the library's own children (values in memory)
            self._counter.inc()
            self._histogram.observe(seconds)
            return
        with lock:
            self._counter.add_locked(1)
            self._histogram.add_locked(seconds)

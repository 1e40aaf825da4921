"""The span batch: ended spans queued, exported in batches by one background thread.

What the SDK's ``BatchSpanProcessor`` does, with its ``OTEL_BSP_*`` settings (schedule
delay, queue size, batch size), but a sampled span's end costs one deque append and a
length check: the SDK's path is two calls deeper and asks ``os.getpid()`` (a system call)
for every span to notice a fork. Here a fork is noticed by ``os.register_at_fork``: the
child starts with an empty queue and its own thread. ``OTEL_BSP_EXPORT_TIMEOUT`` is read
by the exporter's HTTP timeout alone, as in the SDK.

Exports run with instrumentation suppressed (an instrumented ``requests`` must not trace
the export itself), one at a time; :meth:`SpanBatch.shutdown` exports what is queued,
then shuts the exporter down.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import weakref
from typing import Any, Mapping

from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, Context, attach, detach, set_value
from opentelemetry.sdk.trace import SpanProcessor

_logger = logging.getLogger(__name__)

# The SDK's defaults (OpenTelemetry specification, batching processor).
DEFAULT_SCHEDULE_DELAY_MS = 5000
DEFAULT_MAX_QUEUE_SIZE = 2048
DEFAULT_MAX_EXPORT_BATCH_SIZE = 512


def _setting(environ: Mapping[str, str], name: str, default: int) -> int:
    text = environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        _logger.warning("%s=%r is not a whole number: %d is used", name, text, default)
        return default
    if value <= 0 and name != "OTEL_BSP_SCHEDULE_DELAY":
        _logger.warning("%s must be positive: %d is used", name, default)
        return default
    return value


class SpanBatch(SpanProcessor):
    """Queues sampled spans (:meth:`add`, or :meth:`on_end` for SDK spans) for ``exporter``."""

    def __init__(self, exporter: Any, environ: Mapping[str, str]):
        self._exporter = exporter
        self._schedule_delay = max(0, _setting(environ, "OTEL_BSP_SCHEDULE_DELAY", DEFAULT_SCHEDULE_DELAY_MS)) / 1e3
        self._max_queue_size = _setting(environ, "OTEL_BSP_MAX_QUEUE_SIZE", DEFAULT_MAX_QUEUE_SIZE)
        self._batch_size = min(
            self._max_queue_size, _setting(environ, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", DEFAULT_MAX_EXPORT_BATCH_SIZE)
        )
        self._shutdown = False
        self._dropped = 0
        self._start()
        reinit = weakref.WeakMethod(self._start)

        def after_fork_in_child() -> None:
            start = reinit()
            if start is not None:
                start()

        os.register_at_fork(after_in_child=after_fork_in_child)

    def _start(self) -> None:
        """A fresh queue, lock and thread (at start, and in a forked child: the parent's
        thread does not exist there, and its queued spans are the parent's to export)."""
        # Bounded: appending to a full queue drops the oldest in the same step, so its length
        # never falls under what the export thread counted before it pops.
        self._queue: collections.deque = collections.deque(maxlen=self._max_queue_size)
        self._export_lock = threading.Lock()
        self._awake = threading.Event()
        self._thread = threading.Thread(target=self._work, name="FlowkerSpanBatch", daemon=True)
        self._thread.start()

    # -- the hot path ---------------------------------------------------------------

    def add(self, span: Any) -> None:
        """Queue an ended, sampled span: the newest at the left, the oldest dropped when full."""
        queue = self._queue
        if len(queue) >= self._max_queue_size:
            if self._shutdown:
                return
            self._dropped += 1  # the append below drops the oldest
            if self._dropped == 1 or self._dropped % 1000 == 0:
                _logger.warning("span queue full (%d): %d spans dropped so far", self._max_queue_size, self._dropped)
        queue.appendleft(span)
        if len(queue) >= self._batch_size and not self._awake.is_set():
            self._awake.set()

    def on_start(self, span: Any, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: Any) -> None:
        if not self._shutdown and span.context is not None and span.context.trace_flags.sampled:
            self.add(span)

    # -- the export thread ----------------------------------------------------------

    def _work(self) -> None:
        awake = self._awake
        while not self._shutdown:
            woken = awake.wait(self._schedule_delay)
            awake.clear()  # before the export: a batch filled during it wakes the next wait
            if self._shutdown:
                break
            self._export(everything=False, at_least_one=not woken)

    def _export(self, *, everything: bool, at_least_one: bool = False) -> None:
        """Full batches while there are; one (partial) batch more when ``at_least_one``
        (the timer ran out), all of it when ``everything``."""
        with self._export_lock:
            queue, first = self._queue, True
            while queue and (len(queue) >= self._batch_size or everything or (at_least_one and first)):
                first = False
                batch = [queue.pop() for _ in range(min(self._batch_size, len(queue)))]
                token = attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
                try:
                    self._exporter.export(batch)
                except Exception:  # noqa: BLE001 - a failed export must not stop the thread
                    _logger.exception("exporting %d spans failed", len(batch))
                finally:
                    detach(token)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        if self._shutdown:
            return False
        self._export(everything=True)
        return True

    def shutdown(self) -> None:
        if self._shutdown:
            return
        self._shutdown = True
        self._awake.set()
        self._thread.join(timeout=30)
        self._export(everything=True)
        self._exporter.shutdown()

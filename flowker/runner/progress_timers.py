"""Delayed callbacks of a process's runs on one shared thread, not a thread per call.

The recorder arms a progress commit before each executor call that has steps waiting
(:data:`flowker.runner.records.PROGRESS_AFTER_SECONDS`) and cancels it when the call
ends, almost always long before it is due. A ``threading.Timer`` per call made and ended
an operating-system thread each time: about 0.2 ms of CPU, 5-7 % of a whole synchronous
REST execution (benchmarks/README.md). Here arming is a heap push under a lock and
cancelling sets a flag; one daemon thread wakes every :data:`TICK_SECONDS` while anything
is armed and runs what is due, so a callback runs between its delay and its delay plus
one tick. The thread starts on first use (in the process that uses it: a forked worker
starts its own), ends by itself after :data:`IDLE_TICKS_BEFORE_EXIT` ticks with nothing
armed, and starts again on the next use; :meth:`ProgressTimers.stop` ends it for good.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import threading
import time
import weakref
from typing import Callable

logger = logging.getLogger(__name__)

TICK_SECONDS = 0.25
IDLE_TICKS_BEFORE_EXIT = 40

# Every instance, so a forked child starts with fresh state: its parent's lock may have been
# held by the parent's thread at the fork, and its parent's runs are not the child's.
_instances: "weakref.WeakSet[ProgressTimers]" = weakref.WeakSet()


class ArmedCallback:
    """One armed callback; :meth:`cancel` keeps it from running if it has not started."""

    __slots__ = ("callback", "cancelled")

    def __init__(self, callback: Callable[[], None]):
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ProgressTimers:
    def __init__(self, tick: float = TICK_SECONDS, idle_ticks: int = IDLE_TICKS_BEFORE_EXIT):
        self.tick = tick
        self.idle_ticks = idle_ticks
        self._lock = threading.Lock()
        self._due: list[tuple[float, int, ArmedCallback]] = []
        self._order = itertools.count()  # ties on the deadline keep arming order
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()
        _instances.add(self)

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        self._due = []
        self._thread = None

    def arm(self, delay: float, callback: Callable[[], None]) -> ArmedCallback:
        armed = ArmedCallback(callback)
        with self._lock:
            heapq.heappush(self._due, (time.monotonic() + delay, next(self._order), armed))
            if self._thread is None and not self._stopped.is_set():
                self._thread = threading.Thread(target=self._loop, name="flowker-progress-timers", daemon=True)
                self._thread.start()
        return armed

    def stop(self) -> None:
        """End the thread for good (armed callbacks do not run)."""
        self._stopped.set()
        with self._lock:
            thread, self._thread = self._thread, None
            self._due.clear()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _loop(self) -> None:
        idle = 0
        while not self._stopped.wait(self.tick):
            now = time.monotonic()
            ready: list[ArmedCallback] = []
            with self._lock:
                while self._due and (self._due[0][0] <= now or self._due[0][2].cancelled):
                    armed = heapq.heappop(self._due)[2]
                    if not armed.cancelled:
                        ready.append(armed)
                if self._due or ready:
                    idle = 0
                else:
                    idle += 1
                    if idle >= self.idle_ticks:
                        if self._thread is threading.current_thread():
                            self._thread = None  # the next arm starts a new one
                        return
            for armed in ready:
                if armed.cancelled:
                    continue
                try:
                    armed.callback()
                except Exception:  # noqa: BLE001 - one run's callback must not stop the others'
                    logger.exception("a delayed callback failed")


def _reset_in_child() -> None:
    for timers in list(_instances):
        timers._after_fork_in_child()


os.register_at_fork(after_in_child=_reset_in_child)

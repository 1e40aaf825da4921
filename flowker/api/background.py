"""The bounded pool that runs ``Prefer: respond-async`` executions.

Owned by the app (one per process), created lazily on the first async request, never
at import or before a gunicorn fork. At most ``workers`` runs execute at once and at
most ``max_queue`` more wait; a request that finds no free slot gets 503 *before* an
execution is created, so nothing is left ``running`` without a thread to run it.
:meth:`BackgroundRunner.shutdown` (SIGTERM) stops taking work and waits for in-flight runs.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

logger = logging.getLogger("flowker.api.background")


class BackgroundRunner:
    def __init__(
        self, run: Callable[[str], object], database, *, workers: int = 4, max_queue: int = 64, heartbeat=None
    ):
        if workers < 1 or max_queue < 0:
            raise ValueError("workers must be at least 1 and max_queue not negative")
        self._run = run
        self._database = database
        self.workers = workers
        self.max_queue = max_queue
        self._slots = threading.BoundedSemaphore(workers + max_queue)
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._closed = False
        self._in_flight = 0
        # Renews the leases of accepted runs while they wait for a thread (else another
        # server's start-up recovery would take a queued run for a dead one).
        self._heartbeat = heartbeat

    @property
    def started(self) -> bool:
        return self._pool is not None

    @property
    def in_flight(self) -> int:
        """Runs accepted and not finished (running or queued)."""
        return self._in_flight

    def try_reserve(self) -> bool:
        """Claim a slot for one run; False when the pool and its queue are full or closed."""
        if self._closed:
            return False
        if not self._slots.acquire(blocking=False):
            return False
        with self._lock:
            self._in_flight += 1
        return True

    def release(self) -> None:
        """Give back a reserved slot that was not used (the execution already existed)."""
        with self._lock:
            self._in_flight -= 1
        self._slots.release()

    def submit(self, execution_id: str, **run_options) -> None:
        """Run ``execution_id`` in the pool (``run(execution_id, **run_options)``, e.g. its
        ``trace_parent``); the caller holds a slot from :meth:`try_reserve`."""
        with self._lock:
            if self._closed:
                self._in_flight -= 1
                self._slots.release()
                raise RuntimeError("the background pool is shut down")
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="flowker-run")
            if self._heartbeat is not None:
                self._heartbeat.track(execution_id)
            self._pool.submit(self._execute, execution_id, run_options)

    def _execute(self, execution_id: str, run_options: dict | None = None) -> None:
        opened = False
        try:
            opened = self._database.connect(reuse_if_open=True)
            self._run(execution_id, **(run_options or {}))
        except Exception:  # noqa: BLE001 - the run records its own failure; this is a last resort
            logger.exception("background execution %s failed outside the runner", execution_id)
        finally:
            if self._heartbeat is not None:
                self._heartbeat.untrack(execution_id)
            if opened and not self._database.is_closed():
                self._database.close()
            self.release()

    def shutdown(self, wait: bool = True) -> None:
        """Stop accepting runs; with ``wait``, return when every accepted run has finished."""
        with self._lock:
            self._closed = True
            pool = self._pool
        if pool is not None:
            pool.shutdown(wait=wait)

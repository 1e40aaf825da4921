"""The queue worker: claims queued executions and runs them, ``concurrency`` at a time.

::

    worker = QueueWorker(runtime.execution_service, concurrency=4)
    worker.start()          # a claiming thread and `concurrency` run threads (daemons)
    worker.wake()           # this process just queued a run: look now
    worker.stop(grace=30)   # no more claims; in-flight runs get up to `grace` seconds

One thread claims (:func:`flowker.queue.claim.claim`), as many executions at a time as
run threads are free, and hands them to the run threads; with nothing to claim it waits
(:mod:`flowker.queue.notify`: ``LISTEN`` on PostgreSQL, a backoff on SQLite). A run
that ends frees its thread and wakes the claimer at once (a workflow at its
``concurrency`` limit may now start one more). The worker also sweeps expired leases
(the execution service's :class:`~flowker.runner.recovery.LeaseSweeper`), so the runs of
a worker that died are handled by the ones alive, and samples the queue depth for the
metrics, and fires schedule triggers (a :class:`~flowker.schedules.scheduler.SchedulerThread`).
``flowker worker`` runs one; so does each ``flowker serve`` worker process,
unless ``--no-worker``.
"""

from __future__ import annotations

import logging
import queue as queue_module
import threading
import time
from typing import Any

import peewee

from flowker.queue.claim import claim
from flowker.queue.depth import DEPTH_SAMPLE_SECONDS, QueueDepthSampler
from flowker.queue.notify import waiter_for
from flowker.runner.queue_notice import QUEUE_CHANNEL

logger = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 4
# A claim that skipped a workflow only because another claimer held its lock looks again after this.
CONTENDED_RETRY_SECONDS = 0.02
# A claim that failed (the database briefly down) is tried again after this.
ERROR_RETRY_SECONDS = 0.5
JOIN_SECONDS = 5.0


class QueueWorker:
    def __init__(
        self,
        service,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        waiter=None,
        sweep: bool = True,
        depth_sample_seconds: float | None = DEPTH_SAMPLE_SECONDS,
        name: str = "flowker-queue",
        schedules: bool = True,
    ):
        if concurrency < 1:
            raise ValueError("a queue worker needs a concurrency of at least 1")
        self.service = service
        self.concurrency = concurrency
        self.name = name
        self.sweep = sweep
        # Every worker fires schedule triggers too (flowker.schedules): each tick fires once
        # across every process, so running one per worker is safe and needs no leader.
        self.schedules = schedules
        self._scheduler_thread: Any = None  # a flowker.schedules SchedulerThread, from start()
        # Made on start(): a PostgreSQL listener opens its connection in the claiming thread.
        self._waiter = waiter
        self._lock = threading.Condition()
        self._free = concurrency
        self._in_flight = 0
        self._handoff: queue_module.SimpleQueue = queue_module.SimpleQueue()
        self._claiming = threading.Event()  # set while claims are allowed
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []  # the run threads
        self._claimer: threading.Thread | None = None
        # The metrics' queue depth (None: another part of the process samples it, as a server does).
        self._depth_sampler = QueueDepthSampler(service, depth_sample_seconds) if depth_sample_seconds else None
        # Counters (tests, the benchmark): claim transactions tried, executions claimed, runs ended.
        self.claim_attempts = 0
        self.claimed = 0
        self.finished = 0

    # -- life -------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self._claimer is not None

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def start(self) -> "QueueWorker":
        if self._claimer is not None or self._stopped.is_set():
            return self
        if self._waiter is None:
            self._waiter = waiter_for(self._database(), QUEUE_CHANNEL)
        self._claiming.set()
        for number in range(self.concurrency):
            thread = threading.Thread(target=self._run_loop, name=f"{self.name}-run-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)
        self._claimer = threading.Thread(target=self._claim_loop, name=f"{self.name}-claim", daemon=True)
        self._claimer.start()
        if self.sweep:
            self.service.start_sweeping()
        if self._depth_sampler is not None:
            self._depth_sampler.start()
        if self.schedules:
            from flowker.schedules.scheduler import Scheduler, SchedulerThread

            self._scheduler_thread = SchedulerThread(Scheduler(self.service), on_fired=self.wake)
            self._scheduler_thread.start()
        return self

    def wake(self) -> None:
        """Look for work now (this process queued a run)."""
        if self._waiter is not None:
            self._waiter.wake()

    def stop_claiming(self) -> None:
        """Claim nothing more (a draining server); runs in flight go on."""
        if self._scheduler_thread is not None:
            self._scheduler_thread.stop()
        self._claiming.clear()
        if self._waiter is not None:
            self._waiter.close()
        with self._lock:
            self._lock.notify_all()

    def stop(self, grace: float = 30.0) -> int:
        """Stop claiming, give in-flight runs up to ``grace`` seconds to end, stop the
        threads; returns how many runs were still in flight (their leases expire and the
        workers alive take them over)."""
        deadline = time.monotonic() + max(0.0, grace)
        self.stop_claiming()
        self._stopped.set()
        if self._depth_sampler is not None:
            self._depth_sampler.stop()
        # A claim in progress finishes first: what it took is handed over, and waited for, below.
        if self._claimer is not None and self._claimer is not threading.current_thread():
            self._claimer.join(timeout=JOIN_SECONDS)
        with self._lock:
            while self._in_flight and time.monotonic() < deadline:
                self._lock.wait(min(0.1, max(0.0, deadline - time.monotonic())))
            left = self._in_flight
        for _ in range(self.concurrency):
            self._handoff.put(None)
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=JOIN_SECONDS if not left else 0.1)
        if left:
            logger.warning("%s stopped with %d run(s) still in flight", self.name, left)
        return left

    # -- claiming ---------------------------------------------------------------------

    def _claim_loop(self) -> None:
        waiter = self._waiter
        assert waiter is not None  # made by start()
        try:
            self._keep_connection()
            while self._claiming.is_set():
                with self._lock:
                    while self._free == 0 and self._claiming.is_set():
                        self._lock.wait(1.0)
                    free = self._free
                if not self._claiming.is_set():
                    break
                try:
                    self.claim_attempts += 1
                    result = claim(self.service, free)
                except Exception:  # noqa: BLE001 - e.g. the database is briefly down: wait, then try again
                    logger.warning("claiming queued executions failed; trying again", exc_info=True)
                    self._stopped.wait(ERROR_RETRY_SECONDS)
                    continue
                logger.debug("queue claim: %d of up to %d claimed", len(result.executions), free)
                if result.executions:
                    waiter.reset()
                    self._hand_over(result.executions)
                    continue  # there may be more
                if result.contended:
                    time.sleep(CONTENDED_RETRY_SECONDS)
                    continue
                waiter.wait()
        finally:
            waiter.release()
            self._close_kept_connection()

    def _hand_over(self, executions) -> None:
        with self._lock:
            self._free -= len(executions)
            self._in_flight += len(executions)
        self.claimed += len(executions)
        for execution in executions:
            self._handoff.put(execution)

    # -- running ----------------------------------------------------------------------

    def _run_loop(self) -> None:
        self._keep_connection()
        try:
            self._run_each()
        finally:
            self._close_kept_connection()

    def _run_each(self) -> None:
        while True:
            execution = self._handoff.get()
            if execution is None:
                return
            try:
                self.service.run_claimed(execution)
            except Exception:  # noqa: BLE001 - the run records its own failure; this is a last resort
                logger.exception("queued execution %s failed outside the runner", execution.id)
            finally:
                with self._lock:
                    self._free += 1
                    self._in_flight -= 1
                    self.finished += 1
                    self._lock.notify_all()
                self.wake()  # a freed slot (this worker's, or a workflow's concurrency) may start another

    def _keep_connection(self) -> None:
        """SQLite: this thread keeps one connection open (opening one reads the schema, and
        closing the last one checkpoints the WAL: more than a whole run costs). PostgreSQL:
        each claim and run takes one from the pool and gives it back."""
        database = self._database()
        if isinstance(database, peewee.SqliteDatabase):
            database.connect(reuse_if_open=True)

    def _close_kept_connection(self) -> None:
        database = self._database()
        if isinstance(database, peewee.SqliteDatabase) and not database.is_closed():
            database.close()

    def _database(self):
        return self.service.database or _bound_database()


def _bound_database():
    from flowker.storage.database import database_proxy

    return database_proxy.obj

"""Fires schedule triggers: each tick of each active scheduled workflow, once across every
process and host sharing the database.

::

    scheduler = Scheduler(service)              # service: an ExecutionService (enqueue)
    result = scheduler.tick()                   # one pass now; tick(now) with any aware time
    runner = SchedulerThread(scheduler); runner.start() ... runner.stop()

A pass reads the active workflows (a 3-column query; the schedule of each workflow
version is parsed once and cached), the latest fired tick of the scheduled ones, and
for each computes the ticks due since its *baseline*: the later of its last fired tick
and its activation. A workflow activated for the first time fires nothing from before
its activation; one deactivated and activated again does not catch up the time it was
inactive. ``catchUp`` then decides (flowker.schedules.ticks): ``none`` fires the due tick
only when it is at most ``grace`` old, ``latest`` the most recent due tick, ``all`` each
due tick (the most recent ``catch_up_limit``, with a warning when older ones are
dropped).

Each tick fires in one write transaction: insert the (workflow, tick) row (unique; when
another scheduler inserted it first, nothing is inserted and nothing is enqueued), then
``ExecutionService.enqueue`` the run (input: the trigger's fixed ``input`` plus
``scheduledAt``), whose EXECUTION_QUEUED audit entry names the tick, then link the row to
the execution. A run the workflow's inputSchema refuses records the tick as ``refused``
(logged; it is not tried again).
"""

from __future__ import annotations

import datetime as _dt
import logging
import threading
from dataclasses import dataclass, field
from typing import Callable

from flowker.audit.chain import UNKNOWN_IP, Actor
from flowker.errors import FlowkerError, InputValidationError
from flowker.schedules import store
from flowker.validation.schedule_spec import UTC, ScheduleSpec, iso_utc, schedule_of
from flowker.schedules.ticks import DEFAULT_CATCH_UP_LIMIT, DEFAULT_GRACE, next_tick, ticks_to_fire
from flowker.storage.database import bound_to, connection, write_transaction

logger = logging.getLogger(__name__)

SCHEDULER_ACTOR = Actor(type="system", id="scheduler", ip=UNKNOWN_IP)
# A runner sleeps until the next tick, but at most this long: it sees workflows
# activated (or deactivated) since its last pass within this time.
DEFAULT_REFRESH_SECONDS = 15.0
# Fired ticks older than this are deleted (each workflow's latest is kept).
TICK_HISTORY = _dt.timedelta(days=7)
PRUNE_EVERY = _dt.timedelta(hours=1)


def utc_now() -> _dt.datetime:
    return _dt.datetime.now(UTC)


@dataclass(frozen=True)
class FiredTick:
    workflow_id: str
    tick: _dt.datetime  # aware UTC
    execution_id: str | None  # None: the input was refused


@dataclass
class PassResult:
    fired: list[FiredTick] = field(default_factory=list)
    # The earliest tick after this pass among the scheduled workflows (None: none known).
    next_due: _dt.datetime | None = None


class Scheduler:
    def __init__(
        self,
        service,
        *,
        clock: Callable[[], _dt.datetime] = utc_now,
        grace: _dt.timedelta = DEFAULT_GRACE,
        catch_up_limit: int = DEFAULT_CATCH_UP_LIMIT,
    ):
        self.service = service
        self.clock = clock
        self.grace = grace
        self.catch_up_limit = catch_up_limit
        # (workflow id, version) -> its schedule, or None when its trigger is no schedule.
        self._schedules: dict[tuple[str, int], ScheduleSpec | None] = {}
        self._pruned_at: _dt.datetime | None = None

    def tick(self, now: _dt.datetime | None = None) -> PassResult:
        """One pass at ``now`` (aware; default: the clock): fire every tick due."""
        now = (now or self.clock()).astimezone(UTC)
        result = PassResult()
        with bound_to(self.service.database), connection():
            scheduled = self._scheduled_workflows()
            latest = store.latest_ticks([workflow_id for workflow_id, _, _ in scheduled])
            for workflow_id, schedule, active_since in scheduled:
                last = latest.get(workflow_id)
                baseline = max(active_since, last) if last is not None else active_since
                self._fire_due(workflow_id, schedule, baseline.replace(tzinfo=UTC), now, result)
                upcoming = next_tick(schedule, now)
                if upcoming is not None and (result.next_due is None or upcoming < result.next_due):
                    result.next_due = upcoming
            self._prune(now)
        return result

    def _scheduled_workflows(self) -> list[tuple[str, ScheduleSpec, _dt.datetime]]:
        found = []
        active = store.active_workflows()
        for workflow_id, version, active_since in active:
            key = (workflow_id, version)
            if key not in self._schedules:
                spec = store.workflow_spec(workflow_id, version)
                if spec is None:
                    continue  # moved on since the list was read: the next pass sees it
                self._schedules[key] = schedule_of(spec)
            schedule = self._schedules[key]
            if schedule is not None:
                found.append((workflow_id, schedule, store.as_datetime(active_since)))
        if len(self._schedules) > 4 * len(active) + 64:  # forget versions no longer active
            current = {(workflow_id, version) for workflow_id, version, _ in active}
            self._schedules = {key: value for key, value in self._schedules.items() if key in current}
        return found

    def _fire_due(self, workflow_id, schedule, baseline, now, result: PassResult) -> None:
        due = ticks_to_fire(schedule, baseline, now, grace=self.grace, limit=self.catch_up_limit)
        if due.left_out and schedule.catch_up == "all":
            logger.warning(
                "schedule of workflow %s missed more than %d ticks: firing the latest %d only",
                workflow_id,
                self.catch_up_limit,
                self.catch_up_limit,
            )
        elif due.left_out:
            logger.debug("schedule of workflow %s: missed ticks skipped (catchUp: %s)", workflow_id, schedule.catch_up)
        for tick in due.ticks:
            try:
                fired = self.fire(workflow_id, schedule, tick)
            except FlowkerError as exc:  # e.g. deactivated since the pass read it: nothing fired
                logger.warning(
                    "schedule of workflow %s: tick %s not fired: %s", workflow_id, iso_utc(tick), exc.message
                )
                return
            if fired is not None:
                result.fired.append(fired)

    def fire(self, workflow_id: str, schedule: ScheduleSpec, tick: _dt.datetime) -> FiredTick | None:
        """Fire one tick (aware): None when another scheduler fired it (or the workflow
        stopped being active); the claim and the queued run commit together."""
        stored_tick = tick.astimezone(UTC).replace(tzinfo=None, microsecond=0)
        scheduled_at = iso_utc(tick)
        with bound_to(self.service.database), connection(), write_transaction():
            if not store.claim_tick(workflow_id, stored_tick):
                return None
            try:
                started = self.service.enqueue(
                    workflow_id,
                    schedule.run_input(tick),
                    actor=SCHEDULER_ACTOR,
                    audit_metadata={
                        "scheduledAt": scheduled_at,
                        "cron": schedule.cron,
                        "timezone": schedule.timezone,
                        "catchUp": schedule.catch_up,
                    },
                )
            except InputValidationError as exc:
                # The enqueue's savepoint rolled back; the tick stays claimed, as refused,
                # so no other pass tries it again.
                logger.error(
                    "schedule of workflow %s: the run for %s was refused by the inputSchema (%s)",
                    workflow_id,
                    scheduled_at,
                    exc.message,
                )
                store.settle_tick(workflow_id, stored_tick, None, store.REFUSED)
                return FiredTick(workflow_id, tick.astimezone(UTC), None)
            store.settle_tick(workflow_id, stored_tick, started.execution.id, store.QUEUED)
        return FiredTick(workflow_id, tick.astimezone(UTC), started.execution.id)

    def _prune(self, now: _dt.datetime) -> None:
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY:
            return
        self._pruned_at = now
        with write_transaction():
            store.prune_ticks((now - TICK_HISTORY).replace(tzinfo=None))


class SchedulerThread:
    """Runs :meth:`Scheduler.tick` in a daemon thread: right after each tick is due, and
    at least every ``refresh_seconds``. A failed pass (the database away) is logged and
    tried again at the next wake-up. Each queue worker process runs one::

        thread = SchedulerThread(Scheduler(service), on_fired=worker.wake)
        thread.start()  # with the worker
        thread.stop()   # before the worker stops
    """

    def __init__(
        self,
        scheduler: Scheduler,
        *,
        refresh_seconds: float = DEFAULT_REFRESH_SECONDS,
        on_fired: Callable[[], None] | None = None,
    ):
        self.scheduler = scheduler
        self.refresh_seconds = refresh_seconds
        # Called after a pass that queued runs (a queue worker's wake(): on SQLite no NOTIFY
        # tells this process's claimer that work arrived).
        self.on_fired = on_fired
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.passes = 0

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="flowker-scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            wait = self.refresh_seconds
            try:
                result = self.scheduler.tick()
                self.passes += 1
                if self.on_fired is not None and any(f.execution_id for f in result.fired):
                    self.on_fired()
                if result.next_due is not None:
                    until_due = (result.next_due - self.scheduler.clock()).total_seconds()
                    # A little after the tick, so that the pass finds it due.
                    wait = min(wait, max(0.05, until_due + 0.05))
            except Exception:  # noqa: BLE001 - the loop must outlive a failed pass
                logger.exception("schedule pass failed; trying again in %.0f s", wait)
            self._stop.wait(wait)

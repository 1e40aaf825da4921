"""One circuit breaker per executor for the whole fleet.

``circuitbreaker.CircuitBreaker`` is the state machine: it counts consecutive failures,
opens at the threshold, is half-open once the recovery time has passed, closes on a
success and opens again on a failed trial. Flowker adds, in :class:`ExecutorBreaker`:

* Shared state. With a :class:`~flowker.storage.breaker_store.BreakerStateStore` the
  library's fields are loaded from the executor's ``circuit_breaker_state`` row, and a
  transition (a failure, a success after failures, a trial claimed or ended) runs the
  library on the row inside a transaction that holds it, then stores the result: every
  process and host sees one breaker with one count.
* A local cache. A breaker read less than ``CACHE_SECONDS`` ago and seen closed with no
  failures lets calls through without a query; seen open, it refuses without one. A
  breaker with failures counted, or one that is half-open, reads its row before each
  call. So another process's change is seen within ``CACHE_SECONDS`` at most, and the
  calls that reach a failing service before every process refuses are the threshold
  plus at most one per caller (process or thread) racing on the last count or still
  trusting a view less than ``CACHE_SECONDS`` old.
* A cap on trial calls while half-open (``FLOWKER_CB_HALF_OPEN_CALLS``, fleet-wide when
  shared; the library alone lets every caller through), and a lock for threads.

Without a store the breaker is process-local (unit tests, tools). The library's decorator
is not used: it registers every breaker in a process-wide monitor and lets a
non-failure exception reset the count.

A failure is whatever :func:`is_breaker_failure` says: network errors and 5xx/429
responses (raised as :class:`TransientHTTPError` by the wrapped call). Other 4xx
answers prove the service is up and count as successes.
"""

from __future__ import annotations

import logging
import threading
import math
from collections import OrderedDict
from typing import Callable, TypeVar

import peewee
import requests
from circuitbreaker import STATE_CLOSED, STATE_HALF_OPEN, STATE_OPEN, CircuitBreaker

from flowker.errors import CircuitOpenError
from flowker.runner.clock import SYSTEM_CLOCK, Clock
from flowker.storage.breaker_store import BreakerRow, BreakerStateStore

T = TypeVar("T")
logger = logging.getLogger(__name__)

HALF_OPEN_MAX_CALLS = 1
MAX_BREAKERS = 10_000
# How long a process trusts what it last read of a shared breaker (see the module docstring).
CACHE_SECONDS = 1.0
# A trial slot not given back within this time (its process died mid-call) is free again.
TRIAL_LEASE_SECONDS = 60.0


class TransientHTTPError(Exception):
    """A response that should be retried and counts against the breaker (5xx, 429)."""

    def __init__(self, response: requests.Response, body: bytes = b""):
        super().__init__(f"HTTP {response.status_code}")
        self.response = response
        self.body = body


class NetworkError(Exception):
    """The request did not get an answer (connection refused or reset, timeout, DNS)."""

    def __init__(self, message: str, *, timeout: bool = False):
        super().__init__(message)
        self.timeout = timeout


def is_breaker_failure(exc_type, exc) -> bool:
    return issubclass(exc_type, (TransientHTTPError, NetworkError))


class ExecutorBreaker(CircuitBreaker):
    def __init__(
        self,
        name: str,
        failure_threshold: int,
        recovery_seconds: float,
        half_open_max_calls: int = HALF_OPEN_MAX_CALLS,
        *,
        executor_id: str | None = None,
        shared: BreakerStateStore | None = None,
        cache_seconds: float = CACHE_SECONDS,
        clock: Clock = SYSTEM_CLOCK,
        on_state: Callable[[str, str], None] | None = None,
    ):
        self._clock = clock
        # The library treats 0 as "use the default" (30 s): keep tiny values tiny.
        super().__init__(
            failure_threshold=max(1, int(failure_threshold)),
            recovery_timeout=max(float(recovery_seconds), 1e-6),
            expected_exception=is_breaker_failure,
            name=name,
        )
        self.executor_id = executor_id or name
        self._lock = threading.Lock()
        self._half_open_max_calls = max(1, int(half_open_max_calls))
        self._trial_calls = 0  # trial calls in flight (the row's count, when shared)
        self._shared = shared
        self._cache_seconds = cache_seconds
        self._synced_at: float | None = None  # monotonic time the row was last read or written
        self._opened = clock.monotonic()
        self._loaded_opened = self._opened
        # Told (name, state) after every call or refusal: the metrics' breaker gauge.
        self._on_state = on_state

    # The library reads time.monotonic itself in these two; they use the clock instead
    # (virtual under `flowker test`), with the library's exact rules.
    def _CircuitBreaker__call_failed(self) -> None:
        count: int = self._failure_count + 1  # type: ignore[has-type]  # set by the untyped library
        self._failure_count = count
        if count >= self._failure_threshold:
            self._state = STATE_OPEN
            self._opened = self._clock.monotonic()

    @property
    def open_remaining(self) -> int:
        remain = (self._opened + self._recovery_timeout) - self._clock.monotonic()
        return math.ceil(remain) if remain > 0 else math.floor(remain)

    def rename(self, name: str) -> None:
        """Refusals name the executor as it is called now."""
        self._name = name

    def call_guarded(self, function: Callable[..., T], *args, **kwargs) -> T:
        """Run ``function`` through the breaker; CircuitOpenError when it may not run."""
        if self._on_state is None:
            return self._call_guarded(function, *args, **kwargs)
        try:
            return self._call_guarded(function, *args, **kwargs)
        finally:
            self._on_state(self.name, self.state)

    def _call_guarded(self, function: Callable[..., T], *args, **kwargs) -> T:
        trial = self._admit_shared() if self._shared is not None else self._admit_local()
        try:
            result = function(*args, **kwargs)
        except BaseException as exc:
            failure = exc if self.is_failure(type(exc), exc) else None
            self._finish(trial, failure, succeeded=False)
            raise
        self._finish(trial, None, succeeded=True)
        return result

    # -- admitting a call -------------------------------------------------------------

    def _admit_local(self) -> bool:
        """True for a half-open trial call; raises when the call may not run."""
        with self._lock:
            state = self.state
            if state == STATE_CLOSED:
                return False
            if state == STATE_HALF_OPEN and self._trial_calls < self._half_open_max_calls:
                self._trial_calls += 1
                return True
            raise self._open_error(state)

    def _admit_shared(self) -> bool:
        with self._lock:
            if self._fresh():
                state = self.state
                if state == STATE_CLOSED and self._failure_count == 0:
                    return False  # the fast path: no query
                if state == STATE_OPEN:
                    raise self._open_error(state)
        try:
            return self._admit_by_row()
        except peewee.PeeweeException as exc:
            # The database did not answer: decide on this process's view rather than fail
            # the call for a reason that is not the executor's.
            self._log_unshared("read", exc)
            return self._admit_local()

    def _admit_by_row(self) -> bool:
        assert self._shared is not None
        row = self._shared.read(self.executor_id)
        with self._lock:
            self._load(row)
            state = self.state
            if state == STATE_CLOSED:
                return False
            if state == STATE_OPEN:
                raise self._open_error(state)
        granted = False

        def claim(row: BreakerRow) -> BreakerRow:
            nonlocal granted
            with self._lock:
                self._load(row)
                if self.state != STATE_HALF_OPEN:
                    return row
                fresh = self._clock.time() - row.updated_at < TRIAL_LEASE_SECONDS
                in_flight = row.half_open_in_flight if fresh else 0
                if in_flight >= self._half_open_max_calls:
                    return row
                granted = True
                return row.changed(half_open_in_flight=in_flight + 1)

        row = self._shared.change(self.executor_id, claim)
        with self._lock:
            self._load(row)
            if granted:
                return True
            state = self.state
            if state == STATE_CLOSED:  # a trial elsewhere succeeded meanwhile
                return False
            raise self._open_error(state)

    # -- recording the outcome --------------------------------------------------------

    def _finish(self, trial: bool, failure: BaseException | None, *, succeeded: bool) -> None:
        if self._shared is None:
            with self._lock:
                if trial:
                    self._trial_calls -= 1
                self._apply_locally(failure, succeeded)
            return
        if failure is None and not trial:
            with self._lock:
                if not succeeded or (self._state == STATE_CLOSED and self._failure_count == 0):
                    return  # nothing to record: a success on a breaker with no failures writes nothing

        applied = False

        def record(row: BreakerRow) -> BreakerRow:
            nonlocal applied
            with self._lock:
                self._load(row)
                applied = True
                in_flight = max(0, row.half_open_in_flight - (1 if trial else 0))
                if failure is not None:
                    self.__exit__(type(failure), failure, None)  # the library counts it, opens at the threshold
                    if self._state == STATE_OPEN:
                        in_flight = 0  # a new open period: no trial holds a slot in it
                elif succeeded:
                    self.reset()
                    in_flight = 0
                return self._to_row(row, in_flight)

        try:
            row = self._shared.change(self.executor_id, record)
        except peewee.PeeweeException as exc:
            self._log_unshared("record", exc)
            if not applied:  # at least this process's view counts the outcome
                with self._lock:
                    self._apply_locally(failure, succeeded)
            return
        with self._lock:
            self._load(row)

    def _apply_locally(self, failure: BaseException | None, succeeded: bool) -> None:
        if failure is not None:
            self.__exit__(type(failure), failure, None)  # counts the failure, opens at the threshold
        elif succeeded:
            self.reset()

    def _log_unshared(self, what: str, exc: Exception) -> None:
        logger.warning(
            "circuit breaker for executor %r: could not %s the shared state (%s); using this process's view",
            self.name,
            what,
            type(exc).__name__,
        )

    # -- the shared row ---------------------------------------------------------------

    def _fresh(self) -> bool:
        return self._synced_at is not None and self._clock.monotonic() - self._synced_at < self._cache_seconds

    def _load(self, row: BreakerRow) -> None:
        """The library's fields from the row (its Unix times become the library's monotonic ones)."""
        self._state = STATE_OPEN if row.state == STATE_OPEN else STATE_CLOSED
        self._failure_count = row.consecutive_failures
        if self._state == STATE_OPEN:
            self._opened = self._clock.monotonic() + (row.opened_until - self._clock.time()) - self._recovery_timeout
        self._loaded_opened = self._opened
        self._trial_calls = row.half_open_in_flight
        self._synced_at = self._clock.monotonic()

    def _to_row(self, row: BreakerRow, in_flight: int) -> BreakerRow:
        opened_until = 0.0
        if self._state == STATE_OPEN:
            if self._opened == self._loaded_opened:
                opened_until = row.opened_until  # not reopened: keep the stored time exactly
            else:
                opened_until = self._clock.time() + (self._opened + self._recovery_timeout - self._clock.monotonic())
        return row.changed(
            state=self._state,
            consecutive_failures=self._failure_count,
            opened_until=opened_until,
            half_open_in_flight=in_flight,
        )

    # -- reporting --------------------------------------------------------------------

    def _open_error(self, state: str) -> CircuitOpenError:
        if state == STATE_HALF_OPEN:
            plural = "s are" if self._half_open_max_calls > 1 else " is"
            return CircuitOpenError(
                f"circuit breaker for executor {self.name!r} is half-open and its trial call{plural} in flight; "
                "calls resume when a trial succeeds"
            )
        return CircuitOpenError(
            f"circuit breaker for executor {self.name!r} is open after {self.failure_count} consecutive "
            f"failures; calls resume in about {max(0, self.open_remaining)} s"
        )

    def snapshot(self) -> dict:
        return {"name": self.name, "state": self.state, "failureCount": self.failure_count}


class BreakerBoard:
    """The breakers of one process, by executor id, with the settings' threshold, recovery
    and trial calls; shared with every other process through ``shared`` when given."""

    def __init__(
        self,
        failure_threshold: int,
        recovery_seconds: float,
        half_open_calls: int = HALF_OPEN_MAX_CALLS,
        *,
        shared: BreakerStateStore | None = None,
        cache_seconds: float = CACHE_SECONDS,
        max_breakers: int = MAX_BREAKERS,
        clock: Clock = SYSTEM_CLOCK,
        on_state: Callable[[str, str], None] | None = None,
    ):
        self.clock = clock
        self.failure_threshold = failure_threshold
        self.recovery_seconds = recovery_seconds
        self.half_open_calls = half_open_calls
        self.shared = shared
        self.cache_seconds = cache_seconds
        self._max = max_breakers
        self.on_state = on_state  # given to every breaker (the metrics' state gauge)
        self._lock = threading.Lock()
        self._breakers: OrderedDict[str, ExecutorBreaker] = OrderedDict()

    @classmethod
    def from_settings(cls, settings, on_state: Callable[[str, str], None] | None = None) -> "BreakerBoard":
        return cls(
            settings.cb_failure_threshold,
            settings.cb_recovery_seconds,
            settings.cb_half_open_calls,
            shared=BreakerStateStore(),
            on_state=on_state,
        )

    def get(self, executor_id: str, name: str | None = None) -> ExecutorBreaker:
        with self._lock:
            breaker = self._breakers.get(executor_id)
            if breaker is None:
                breaker = ExecutorBreaker(
                    name or executor_id,
                    self.failure_threshold,
                    self.recovery_seconds,
                    self.half_open_calls,
                    executor_id=executor_id,
                    shared=self.shared,
                    cache_seconds=self.cache_seconds,
                    clock=self.clock,
                    on_state=self.on_state,
                )
                self._breakers[executor_id] = breaker
                # Forget closed breakers of executors not called for a long time.
                while len(self._breakers) > self._max:
                    oldest_id, oldest = next(iter(self._breakers.items()))
                    if oldest.state != STATE_CLOSED:
                        break
                    del self._breakers[oldest_id]
            else:
                self._breakers.move_to_end(executor_id)
                if name and breaker.name != name:
                    breaker.rename(name)
            return breaker

    def states(self) -> dict[str, str]:
        """This process's last view of each breaker."""
        with self._lock:
            return {executor_id: breaker.state for executor_id, breaker in self._breakers.items()}

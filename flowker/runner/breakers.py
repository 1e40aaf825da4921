"""One circuit breaker per executor, owned by the execution service (per process).

Built on ``circuitbreaker.CircuitBreaker`` with two things the library lacks: a lock
(the API runs executions on several threads) and a cap on trial calls while half-open
(the library lets every caller through once the recovery time has passed). The
library's decorator is not used: it registers every breaker in a process-wide monitor
and lets a non-failure exception reset the count.

A failure is whatever :func:`is_breaker_failure` says: network errors and 5xx/429
responses (raised as :class:`TransientHTTPError` by the wrapped call). Other 4xx
answers prove the service is up and count as successes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, TypeVar

import requests
from circuitbreaker import STATE_CLOSED, STATE_HALF_OPEN, STATE_OPEN, CircuitBreaker

from flowker.errors import CircuitOpenError

T = TypeVar("T")

# A trial call in half-open state: one at a time, like the original Flowker.
HALF_OPEN_MAX_CALLS = 1
MAX_BREAKERS = 10_000


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
    def __init__(self, name: str, failure_threshold: int, recovery_seconds: float,
                 half_open_max_calls: int = HALF_OPEN_MAX_CALLS):
        # The library treats 0 as "use the default" (30 s): keep tiny values tiny.
        super().__init__(
            failure_threshold=max(1, int(failure_threshold)),
            recovery_timeout=max(float(recovery_seconds), 1e-6),
            expected_exception=is_breaker_failure,
            name=name,
        )
        self._lock = threading.Lock()
        self._half_open_max_calls = half_open_max_calls
        self._trial_calls = 0

    def call_guarded(self, function: Callable[..., T], *args, **kwargs) -> T:
        """Run ``function`` through the breaker; CircuitOpenError when it may not run."""
        with self._lock:
            state = self.state
            if state == STATE_OPEN:
                raise self._open_error()
            trial = state == STATE_HALF_OPEN
            if trial:
                if self._trial_calls >= self._half_open_max_calls:
                    raise self._open_error()
                self._trial_calls += 1
        try:
            result = function(*args, **kwargs)
        except BaseException as exc:
            with self._lock:
                if trial:
                    self._trial_calls -= 1
                if self.is_failure(type(exc), exc):
                    self.__exit__(type(exc), exc, None)  # counts the failure, opens at the threshold
            raise
        with self._lock:
            if trial:
                self._trial_calls -= 1
            self.reset()
        return result

    def _open_error(self) -> CircuitOpenError:
        return CircuitOpenError(
            f"circuit breaker for executor {self.name} is open after {self.failure_count} consecutive "
            f"failures; calls resume in about {max(0, self.open_remaining)} s"
        )

    def snapshot(self) -> dict:
        return {"name": self.name, "state": self.state, "failureCount": self.failure_count}


class BreakerBoard:
    """The breakers of one process, by executor id, with the settings' threshold and recovery."""

    def __init__(self, failure_threshold: int, recovery_seconds: float, max_breakers: int = MAX_BREAKERS):
        self.failure_threshold = failure_threshold
        self.recovery_seconds = recovery_seconds
        self._max = max_breakers
        self._lock = threading.Lock()
        self._breakers: OrderedDict[str, ExecutorBreaker] = OrderedDict()

    @classmethod
    def from_settings(cls, settings) -> "BreakerBoard":
        return cls(settings.cb_failure_threshold, settings.cb_recovery_seconds)

    def get(self, executor_id: str) -> ExecutorBreaker:
        with self._lock:
            breaker = self._breakers.get(executor_id)
            if breaker is None:
                breaker = ExecutorBreaker(executor_id, self.failure_threshold, self.recovery_seconds)
                self._breakers[executor_id] = breaker
                # Forget closed breakers of executors not called for a long time.
                while len(self._breakers) > self._max:
                    oldest_id, oldest = next(iter(self._breakers.items()))
                    if oldest.state != STATE_CLOSED:
                        break
                    del self._breakers[oldest_id]
            else:
                self._breakers.move_to_end(executor_id)
            return breaker

    def states(self) -> dict[str, str]:
        with self._lock:
            return {name: breaker.state for name, breaker in self._breakers.items()}

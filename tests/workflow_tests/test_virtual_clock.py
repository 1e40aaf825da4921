"""The runner's clock seam: the breaker and the retry waits read the clock they are
given, so virtual time makes the same decisions as real time, without sleeping."""

from __future__ import annotations

import time

import pytest
import requests

from flowker.errors import CircuitOpenError
from flowker.runner.breakers import ExecutorBreaker, TransientHTTPError
from flowker.runner.clock import SYSTEM_CLOCK, VirtualClock


def _fail():
    response = requests.Response()
    response.status_code = 503
    raise TransientHTTPError(response)


def test_a_breaker_on_virtual_time_opens_half_opens_and_closes():
    clock = VirtualClock()
    breaker = ExecutorBreaker("svc", failure_threshold=2, recovery_seconds=30, clock=clock)
    for _ in range(2):
        with pytest.raises(TransientHTTPError):
            breaker.call_guarded(_fail)
    assert breaker.state == "open"
    with pytest.raises(CircuitOpenError, match="calls resume in about 30 s"):
        breaker.call_guarded(lambda: "never")
    clock.sleep(29.5)
    assert breaker.state == "open"  # half a second left
    clock.sleep(1.0)
    assert breaker.state == "half_open"
    assert breaker.call_guarded(lambda: "trial") == "trial"
    assert breaker.state == "closed"
    assert clock.slept == [29.5, 1.0]


def test_the_virtual_clock_moves_only_by_its_waits():
    clock = VirtualClock()
    real, wall = time.monotonic(), time.time()
    clock.sleep(3600)
    clock.sleep(0)  # nothing to wait
    assert clock.monotonic() - real == pytest.approx(3600, abs=1)
    assert clock.time() - wall == pytest.approx(3600, abs=1)
    assert clock.slept == [3600]


def test_the_system_clock_sleeps_for_real():
    started = time.monotonic()
    SYSTEM_CLOCK.sleep(0.05)
    assert time.monotonic() - started >= 0.05

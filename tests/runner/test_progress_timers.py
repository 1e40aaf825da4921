"""The shared timer thread of progress commits (flowker.runner.progress_timers)."""

from __future__ import annotations

import os
import threading
import time

import pytest

from flowker.runner.progress_timers import ProgressTimers


def _timer_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "flowker-progress-timers"]


@pytest.fixture
def timers():
    made = ProgressTimers(tick=0.02, idle_ticks=5)
    yield made
    made.stop()


def test_a_callback_runs_after_its_delay_on_the_shared_thread(timers):
    ran = threading.Event()
    where: list[str] = []
    armed_at = time.monotonic()
    timers.arm(0.1, lambda: (where.append(threading.current_thread().name), ran.set()))
    assert ran.wait(5)
    waited = time.monotonic() - armed_at
    assert 0.1 <= waited < 2.0
    assert where == ["flowker-progress-timers"]


def test_a_cancelled_callback_does_not_run(timers):
    ran: list[int] = []
    armed = timers.arm(0.05, lambda: ran.append(1))
    later = threading.Event()
    timers.arm(0.15, later.set)
    armed.cancel()
    assert later.wait(5)
    assert ran == []


def test_many_armed_calls_share_one_thread_and_run_in_deadline_order(timers):
    order: list[int] = []
    done = threading.Event()
    for number in range(100):
        armed = timers.arm(0.05 + (number % 10) * 0.001, lambda number=number: order.append(number))
        if number % 2:
            armed.cancel()
    timers.arm(0.2, done.set)
    assert len(_timer_threads()) == 1
    assert done.wait(5)
    assert sorted(order) == list(range(0, 100, 2))
    deadlines = [(number % 10, number) for number in order]
    assert deadlines == sorted(deadlines)


def test_a_failing_callback_does_not_stop_the_others(timers):
    ran = threading.Event()

    def failing() -> None:
        raise RuntimeError("boom")

    timers.arm(0.01, failing)
    timers.arm(0.05, ran.set)
    assert ran.wait(5)


def test_the_thread_ends_when_idle_and_starts_again_on_use(timers):
    first = threading.Event()
    timers.arm(0.0, first.set)
    assert first.wait(5)
    deadline = time.monotonic() + 5
    while _timer_threads() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _timer_threads() == []
    again = threading.Event()
    timers.arm(0.0, again.set)
    assert again.wait(5)


def test_stop_ends_the_thread_and_drops_what_is_armed():
    timers = ProgressTimers(tick=0.02)
    ran: list[int] = []
    timers.arm(0.1, lambda: ran.append(1))
    timers.stop()
    assert _timer_threads() == []
    time.sleep(0.2)
    assert ran == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_runs_its_own_callbacks_not_its_parents(timers):
    parent_ran: list[int] = []
    timers.arm(0.3, lambda: parent_ran.append(os.getpid()))
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its own thread, only its own callback
        try:
            child_ran = threading.Event()
            seen: list[int] = []
            timers.arm(0.0, lambda: (seen.append(1), child_ran.set()))
            ok = child_ran.wait(5)
            time.sleep(0.5)  # the parent's callback (due at 0.3 s) must not run here
            os.write(write_end, b"ok" if ok and seen == [1] and not parent_ran else b"no")
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        answer = os.read(read_end, 2)
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
    assert answer == b"ok"
    deadline = time.monotonic() + 5
    while not parent_ran and time.monotonic() < deadline:
        time.sleep(0.02)
    assert parent_ran == [os.getpid()]

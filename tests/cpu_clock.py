"""The CPU a call costs, as a server process would spend it, for the tests that bound it."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import TypeVar

Result = TypeVar("Result")


def cpu_seconds(call: Callable[[], Result]) -> tuple[Result, float]:
    """(result, CPU seconds of this thread) for one call.

    A simulated request runs on the calling thread, so that thread's clock is the request's
    cost; the process's clock would also count whatever other threads the test run still
    has going. The heap the test run has piled up is frozen first: otherwise every full
    collection the call triggers walks earlier tests' objects, and the figure grows with
    the test's place in the run (1.83 s for a request that costs 0.45 s alone, seen in CI).
    """
    gc.collect()
    gc.freeze()
    try:
        started = time.thread_time()
        result = call()
        return result, time.thread_time() - started
    finally:
        gc.unfreeze()

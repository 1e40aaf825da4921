"""Time for the runner's retries, breakers and deadlines, as one injectable object.

The runner asks a :class:`Clock` instead of the ``time`` module, so ``flowker test`` can
run retry waits and breaker recovery on virtual time (:class:`VirtualClock`): a
``[503, 503, 200]`` fixture with the default 1 s base wait takes no real second, and
the decisions (when to stop retrying, when a breaker half-opens) are the ones real time
would give.
"""

from __future__ import annotations

import time


class Clock:
    """Real time: what every server and ``flowker run`` use (it holds no state)."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        """Seconds since the epoch (for HTTP dates and stored breaker times)."""
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


SYSTEM_CLOCK = Clock()


class VirtualClock(Clock):
    """Real time plus every wait asked for, without waiting: ``sleep`` moves the clock on.

    One per offline run (never shared between threads); ``slept`` lists the waits, in
    order, for reports and tests.
    """

    def __init__(self) -> None:
        self.offset = 0.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    def time(self) -> float:
        return time.time() + self.offset

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.offset += seconds
            self.slept.append(seconds)

"""gunicorn's gthread worker, with new connections spread over the workers.

Every worker polls the one listening socket, and whichever wakes first accepts. With
keep-alive clients that is for good: a burst of connections (a load balancer's pool, a
load generator) often lands on one worker, which then serves all of them on one core
while its siblings idle. Measured with 8 keep-alive connections and 2 workers x 4
threads: every connection on one worker, the other at 1 % CPU, 304 executions/s on a
2-core machine with 42 % of it idle.

:class:`BalancedThreadWorker` changes one thing: a worker that already holds as many
connections as it has threads leaves a new connection to its siblings for
:data:`DEFER_SECONDS`. If none of them takes it by then (they are as full), it accepts
the connection itself, so no client waits longer than that and no connection limit is
added. Everything else is gthread's own code.
"""

from __future__ import annotations

import time

from gunicorn.workers.gthread import ThreadWorker

# How long a worker holding a connection per thread leaves a new one to its siblings:
# long enough for a sibling to be scheduled on a busy 2-core host (20 ms was not).
DEFER_SECONDS = 0.1


class BalancedThreadWorker(ThreadWorker):
    """gthread, deferring new connections to less loaded sibling workers (see module)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._deferred_until = 0.0  # accepting is paused until then (monotonic)
        self._accept_until = 0.0  # after a pause: connections still waiting are ours until then

    def accept(self, listener):
        now = time.monotonic()
        if self.nr_conns >= self.cfg.threads and now >= self._accept_until:
            # Full: stop polling the listener for a moment so a sibling accepts instead.
            self._deferred_until = now + DEFER_SECONDS
            self.set_accept_enabled(False)
            return
        super().accept(listener)

    def set_accept_enabled(self, enabled):
        if enabled and self._deferred_until:
            now = time.monotonic()
            if now < self._deferred_until:
                return  # still leaving new connections to the siblings
            self._deferred_until = 0.0
            self._accept_until = now + DEFER_SECONDS  # no sibling took them: take them now
        super().set_accept_enabled(enabled)

    def wait_for_and_dispatch_events(self, timeout):
        if self._deferred_until:
            # Wake when the pause ends, not after gthread's usual 1 s.
            timeout = min(timeout, max(self._deferred_until - time.monotonic(), 0.0) + 0.001)
        super().wait_for_and_dispatch_events(timeout)

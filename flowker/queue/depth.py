"""The queue's depth and the age of its oldest execution, for the metrics.

Every process that serves or works the queue reads them from the database every few
seconds (:class:`QueueDepthSampler`) into ``flowker_queue_depth`` and
``flowker_queue_oldest_age_seconds``; across processes the most recent reading is the
one exported (prometheus-client's multiprocess mode ``mostrecent``), and every process
reads the same database, so any reading is the queue's.
"""

from __future__ import annotations

import datetime as dt

from flowker.runner.recovery import PeriodicTask
from flowker.storage.database import bound_to, connection
from flowker.storage.models import Execution, utcnow

DEPTH_SAMPLE_SECONDS = 5.0


def queue_depth(database=None, *, scope=None) -> tuple[int, float | None]:
    """(queued executions, age in seconds of the oldest one or None) on ``database``
    (default: the bound one). ``scope``: narrows the query (the dashboard counts only the
    workflows its principal sees)."""
    from peewee import fn

    with bound_to(database), connection():
        query = Execution.select(fn.COUNT(Execution.id), fn.MIN(Execution.queued_at))
        if scope is not None:
            query = scope(query)
        row = query.where(Execution.status == "queued").tuples().first()
    count, oldest = row if row else (0, None)
    if oldest is not None and isinstance(oldest, str):  # SQLite aggregates come back as text
        oldest = dt.datetime.fromisoformat(oldest)
    age = (utcnow() - oldest).total_seconds() if oldest is not None else None
    return int(count or 0), (max(0.0, age) if age is not None else None)


class QueueDepthSampler:
    """Reads :func:`queue_depth` into ``service.metrics`` every ``interval`` seconds (a
    daemon thread, from :meth:`start` to :meth:`stop`; nothing when metrics are off)."""

    def __init__(self, service, interval: float = DEPTH_SAMPLE_SECONDS):
        self.service = service
        self._task = PeriodicTask("flowker-queue-depth", interval, self.sample)

    def start(self) -> "QueueDepthSampler":
        if self.service.metrics.enabled:
            self._task.start()
        return self

    def stop(self) -> None:
        self._task.stop()

    def sample(self) -> tuple[int, float | None]:
        depth, oldest = queue_depth(self.service.database)
        self.service.metrics.queue_depth(depth, oldest)
        return depth, oldest

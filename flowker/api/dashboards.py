"""``/v1/dashboards``: workflow counts by status; execution counts in a time window, and
the queue now (depth, age of the oldest queued execution)."""

from __future__ import annotations


import peewee

from flowker.api.errors import bad_query
from flowker.api.scope import scoped_executions, scoped_workflows
from flowker.api.views import parse_time
from flowker.storage.models import Execution, Workflow
from flowker.catalog.workflows import STATUSES as WORKFLOW_STATUSES
from flowker.error_codes import ErrorCode

EXECUTION_STATUSES = ("queued", "running", "completed", "failed")


class WorkflowSummary:
    def __init__(self, state):
        self.state = state

    def on_get(self, req, resp) -> None:
        counts = dict.fromkeys(WORKFLOW_STATUSES, 0)
        rows = scoped_workflows(
            req, Workflow.select(Workflow.status, peewee.fn.COUNT(Workflow.id).alias("n"))
        ).group_by(Workflow.status)
        for row in rows:
            counts[row.status] = counts.get(row.status, 0) + row.n  # type: ignore[attr-defined]  # the COUNT alias
        resp.media = {
            "total": sum(counts.values()),
            "active": counts.get("active", 0),
            "byStatus": [{"status": status, "count": count} for status, count in counts.items()],
        }


class Executions:
    """``?startTime&endTime`` (RFC 3339, inclusive, on startedAt) and ``?status``."""

    def __init__(self, state):
        self.state = state

    def on_get(self, req, resp) -> None:
        start = parse_time("startTime", req.get_param("startTime"), ErrorCode.INVALID_DASHBOARD_FILTER)
        end = parse_time("endTime", req.get_param("endTime"), ErrorCode.INVALID_DASHBOARD_FILTER)
        if start is not None and end is not None and start > end:
            raise bad_query("startTime must not be after endTime", ErrorCode.INVALID_DASHBOARD_FILTER)
        status = req.get_param("status")
        if status is not None and status not in EXECUTION_STATUSES:
            raise bad_query(
                f"status must be one of {', '.join(EXECUTION_STATUSES)}", ErrorCode.INVALID_DASHBOARD_FILTER
            )
        query = scoped_executions(req, Execution.select(Execution.status, peewee.fn.COUNT(Execution.id).alias("n")))
        if start is not None:
            query = query.where(Execution.started_at >= start)
        if end is not None:
            query = query.where(Execution.started_at <= end)
        if status:
            query = query.where(Execution.status == status)
        counts = dict.fromkeys(EXECUTION_STATUSES, 0)
        for row in query.group_by(Execution.status):
            counts[row.status] = counts.get(row.status, 0) + row.n  # type: ignore[attr-defined]  # the COUNT alias
        resp.media = {
            "total": sum(counts.values()),
            **{status: counts[status] for status in EXECUTION_STATUSES},
            "queue": queue_figures(req),
        }


def queue_figures(req) -> dict:
    """The queue now, whatever the time window: how many executions wait, and how long the
    oldest has waited (seconds; null when none waits). Counted over the workflows the
    principal sees."""
    from flowker.queue.depth import queue_depth

    depth, oldest_age = queue_depth(scope=lambda query: scoped_executions(req, query))
    age = None if oldest_age is None else round(oldest_age, 3)
    return {"depth": depth, "oldestAgeSeconds": age}

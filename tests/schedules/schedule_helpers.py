"""Scheduled workflows stored straight in the database, and a service to fire them with."""

from __future__ import annotations

import datetime as dt

from flowker.storage.models import Workflow, WorkflowVersion

UTC = dt.timezone.utc


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def schedule_spec(name: str, cron: str, catch_up: str = "latest", timezone: str = "UTC", **trigger) -> dict:
    return {
        "name": name,
        "nodes": [
            {
                "id": "start",
                "type": "trigger",
                "data": {"triggerType": "schedule", "cron": cron, "timezone": timezone, "catchUp": catch_up, **trigger},
            },
            {
                "id": "out",
                "type": "action",
                "data": {"actionType": "set_output", "output": {"at": "${{ workflow.scheduledAt }}"}},
            },
        ],
        "edges": [{"source": "start", "target": "out"}],
    }


def store_workflow(spec: dict, active_since: dt.datetime, status: str = "active") -> Workflow:
    """An active workflow whose activation (``updated_at``) was at ``active_since``."""
    since = active_since.astimezone(UTC).replace(tzinfo=None)
    workflow = Workflow.create(
        name=spec["name"], status=status, version=1, spec=spec, spec_hash="x", created_at=since, updated_at=since
    )
    WorkflowVersion.create(workflow_id=workflow.id, version=1, spec=spec)
    return workflow

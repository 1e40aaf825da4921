"""Request bodies and small helpers shared by the API tests."""

from __future__ import annotations

import time

from app_factory import app_settings

API_KEY = "test-key-0123456789abcdef01234567"
OTHER_KEY = "rotated-key-9876543210fedcba9876543"
SECRET_KEY = "0X1AhXLHhy4-ODGdvyI_-Uu7T_V2kJVxNDW3hSKIT2A="  # a test-only Fernet key


def make_settings(database_url: str, **overrides):
    keys = f"ci-bot:{API_KEY},rotation:{OTHER_KEY}"
    return app_settings(database_url, **{"secret_key": SECRET_KEY, "api_keys": keys, **overrides})


def executor_body(base_url: str, name: str = "scorer", **extra) -> dict:
    body = {
        "name": name,
        "baseUrl": base_url,
        "endpoints": [
            {"name": "analyze", "path": "/analyze", "method": "POST"},
            {"name": "status", "path": "/status", "method": "GET"},
        ],
        "authentication": {"type": "bearer", "config": {"token": "stub-token-1234567"}},
    }
    body.update(extra)
    return body


def workflow_body(name: str = "payments", executor: str = "scorer", path: str = "/payments", **trigger) -> dict:
    return {
        "name": name,
        "description": "score a payment",
        "nodes": [
            {
                "id": "start",
                "type": "trigger",
                "data": {"triggerType": "webhook", "path": path, "method": "POST", **trigger},
            },
            {
                "id": "score",
                "type": "executor",
                "data": {"executor": executor, "endpoint": "analyze", "body": {"amount": "${{ workflow.amount }}"}},
            },
            {
                "id": "out",
                "type": "action",
                "data": {"actionType": "set_output", "output": {"score": "${{ nodes.score.body.score }}"}},
            },
        ],
        "edges": [{"source": "start", "target": "score"}, {"source": "score", "target": "out"}],
    }


def create_executor(client, base_url: str, **extra) -> str:
    response = client.simulate_post("/v1/executors", json=executor_body(base_url, **extra))
    assert response.status_code == 201, response.text
    return response.json["id"]


def create_workflow(client, body: dict | None = None, activate: bool = False) -> str:
    response = client.simulate_post("/v1/workflows", json=body or workflow_body())
    assert response.status_code == 201, response.text
    workflow_id = response.json["workflowId"]
    if activate:
        response = client.simulate_post(f"/v1/workflows/{workflow_id}/activate")
        assert response.status_code == 200, response.text
    return workflow_id


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.02):
    """Poll ``predicate`` until it returns a truthy value (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def audit_count(client, **filters) -> int:
    """How many audit entries match (walks every page)."""
    total, cursor = 0, None
    for _ in range(1000):
        params = {"limit": 100, **filters}
        if cursor:
            params["cursor"] = cursor
        page = client.simulate_get("/v1/audit-events", params=params).json
        total += len(page["items"])
        if not page["hasMore"]:
            return total
        cursor = page["nextCursor"]
    raise AssertionError("too many audit pages")

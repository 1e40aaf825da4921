"""Signed webhooks against real ``flowker serve`` processes sharing one database (SQLite
file or PostgreSQL): a Standard Webhooks delivery runs without a key on one server; the
same message replayed on the other server is refused; a skewed timestamp and a bad
signature are refused with {code, title, message}; nothing runs for a refused call."""

from __future__ import annotations

import json
import time

import requests

from e2e_helpers import API_KEY
from flowker.security.webhook_signatures import sign_standard_webhooks

SECRET = "whsec_" + "c2lnbmVkLXdlYmhvb2tzLWUyZS1zZWNyZXQ="  # base64, as Standard Webhooks secrets are
WORKFLOW = {
    "name": "signed-orders",
    "nodes": [
        {
            "id": "start",
            "type": "trigger",
            "data": {
                "triggerType": "webhook",
                "path": "/signed-orders",
                "method": "POST",
                "auth": {
                    "type": "signature",
                    "scheme": "standard-webhooks",
                    "secret": {"$env": "ORDERS_SIGNING_SECRET"},
                },
            },
        },
        {
            "id": "out",
            "type": "action",
            "data": {"actionType": "set_output", "output": {"order": "${{ workflow.order }}"}},
        },
    ],
    "edges": [{"source": "start", "target": "out"}],
}


def _signed(body: bytes, message_id: str, timestamp: int | None = None, secret: str = SECRET) -> dict:
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {
        "Content-Type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign_standard_webhooks(secret, message_id, timestamp, body),
    }


def _executions(server, workflow_id: str) -> int:
    response = requests.get(
        server.url + "/v1/executions",
        params={"workflowId": workflow_id, "limit": 100},
        headers={"X-API-Key": API_KEY},
        timeout=10,
    )
    return len(response.json()["items"])


def test_signed_delivery_runs_once_across_servers(start_server):
    env = {"ORDERS_SIGNING_SECRET": SECRET}
    first = start_server(env=env, workers=1)
    second = start_server(env=env, workers=1)
    key = {"X-API-Key": API_KEY}
    created = requests.post(first.url + "/v1/workflows", json=WORKFLOW, headers=key, timeout=10)
    assert created.status_code == 201, created.text
    workflow_id = created.json()["workflowId"]
    activated = requests.post(f"{first.url}/v1/workflows/{workflow_id}/activate", headers=key, timeout=10)
    assert activated.status_code == 200, activated.text

    body = json.dumps({"order": "A-1"}).encode()
    headers = _signed(body, "msg_e2e_1")
    accepted = requests.post(first.url + "/v1/webhooks/signed-orders", data=body, headers=headers, timeout=30)
    assert accepted.status_code == 201, accepted.text
    results = requests.get(
        f"{first.url}/v1/executions/{accepted.json()['executionId']}/results", headers=key, timeout=10
    ).json()
    assert results["finalOutput"] == {"order": "A-1"}

    replayed = requests.post(second.url + "/v1/webhooks/signed-orders", data=body, headers=headers, timeout=30)
    assert replayed.status_code == 409, replayed.text
    assert replayed.json()["code"] == "FLK-0366" and replayed.json()["title"] and replayed.json()["message"]

    skewed = _signed(body, "msg_e2e_2", timestamp=int(time.time()) - 600)
    late = requests.post(second.url + "/v1/webhooks/signed-orders", data=body, headers=skewed, timeout=30)
    assert late.status_code == 401 and late.json()["code"] == "FLK-0365", late.text

    forged = _signed(body, "msg_e2e_3", secret="whsec_" + "Zm9yZ2VkLXNlY3JldC1ieS1hLXN0cmFuZ2Vy")
    bad = requests.post(second.url + "/v1/webhooks/signed-orders", data=body, headers=forged, timeout=30)
    assert bad.status_code == 401 and bad.json()["code"] == "FLK-0364", bad.text
    unsigned = requests.post(second.url + "/v1/webhooks/signed-orders", data=body, timeout=30)
    assert unsigned.status_code == 401 and unsigned.json()["code"] == "FLK-0364", unsigned.text

    assert _executions(second, workflow_id) == 1
    assert SECRET not in first.output + second.output
    # A new message is a new delivery, on either server.
    again = requests.post(
        second.url + "/v1/webhooks/signed-orders", data=body, headers=_signed(body, "msg_e2e_4"), timeout=30
    )
    assert again.status_code == 201, again.text

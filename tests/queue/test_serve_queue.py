"""``flowker serve`` and the queue, as real processes on each backend: ``Prefer:
respond-async`` answers 202 ``queued`` and the server's own worker runs it; with
``--no-worker`` the run stays queued until a ``flowker worker`` takes it."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from queue_helpers import child_env, store_stub_executor, store_workflow, wait_for, workflow_spec

E2E_FOLDER = Path(__file__).resolve().parents[1] / "e2e"
if str(E2E_FOLDER) not in sys.path:
    sys.path.append(str(E2E_FOLDER))

from e2e_helpers import API_KEY, FlowkerServer, api_session  # noqa: E402  (the e2e folder is on the path only from here)


@pytest.fixture
def start_server(database_url):
    started: list[FlowkerServer] = []

    def start(*args: str) -> FlowkerServer:
        server = FlowkerServer(child_env(database_url, FLOWKER_API_KEYS=f"queue:{API_KEY}"), *args, workers=1)
        started.append(server)
        return server.start()

    try:
        yield start
    finally:
        for server in started:
            server.stop()


def _queue_async(api, url: str, workflow_id: str) -> str:
    response = api.post(
        f"{url}/v1/workflows/{workflow_id}/executions", json={"inputData": {}}, headers={"Prefer": "respond-async"}
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "queued" and response.headers["Location"] == f"/v1/executions/{body['executionId']}"
    return body["executionId"]


def test_rest_respond_async_is_queued_and_run_by_the_servers_own_worker(database, stub, start_server):
    store_stub_executor(stub.url, ["work"])
    workflow_id = store_workflow(workflow_spec("served", "work"))
    server = start_server()
    api = api_session()
    execution_id = _queue_async(api, server.url, workflow_id)
    finished = wait_for(
        lambda: (
            (body := api.get(f"{server.url}/v1/executions/{execution_id}").json())["status"] == "completed" and body
        ),
        "the server's worker to run it",
        30,
    )
    assert finished["queuedAt"] <= finished["startedAt"]
    assert stub.stub.calls[execution_id] == 1


def test_no_worker_leaves_the_run_queued_until_a_flowker_worker_takes_it(database, stub, start_server, start_worker):
    store_stub_executor(stub.url, ["work"])
    workflow_id = store_workflow(workflow_spec("left", "work"))
    server = start_server("--no-worker")
    api = api_session()
    execution_id = _queue_async(api, server.url, workflow_id)
    time.sleep(2.0)  # longer than any claim would take
    assert api.get(f"{server.url}/v1/executions/{execution_id}").json()["status"] == "queued"
    assert stub.stub.calls[execution_id] == 0
    queue = api.get(f"{server.url}/v1/dashboards/executions").json()["queue"]
    assert queue["depth"] == 1 and queue["oldestAgeSeconds"] >= 2.0
    metrics = _samples(api.get(f"{server.url}/metrics").text)
    assert metrics["flowker_queue_depth"] == 1 and metrics["flowker_queue_oldest_age_seconds"] >= 2.0

    worker = start_worker("--concurrency", "1")
    wait_for(
        lambda: api.get(f"{server.url}/v1/executions/{execution_id}").json()["status"] == "completed",
        "the flowker worker to run it",
        30,
    )
    assert stub.stub.calls[execution_id] == 1
    assert worker.terminate() == 0
    metrics = _samples(api.get(f"{server.url}/metrics").text)
    assert metrics["flowker_queue_depth"] == 0 and metrics["flowker_queue_oldest_age_seconds"] == 0


def _samples(text: str) -> dict[str, float]:
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return found

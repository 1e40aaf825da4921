"""Running executions refresh by themselves: the list and an execution's page change from
running to completed without a reload, while the executor holds its answer back; during
the held call the page shows the recorded steps and the call's node as running."""

from __future__ import annotations

import threading

import pytest
from console_helpers import axe_violations, screenshot, sign_in
from e2e_helpers import executor_yaml, workflow_yaml

from flowker.local_server import LocalHTTPServer

YAML = {"Content-Type": "application/yaml"}
GATE_TIMEOUT = 30.0
REFRESHED_MS = 15_000


def node_statuses(page) -> dict[str, str]:
    return page.eval_on_selector_all(
        "svg.graph .node", "els => Object.fromEntries(els.map(e => [e.dataset.nodeId, e.dataset.status]))"
    )


class HeldAnswer:
    """``/slow`` answers once the test opens the gate (or after GATE_TIMEOUT)."""

    def __init__(self):
        self.gate = threading.Event()

    def __call__(self, request):
        if request.path == "/slow":
            self.gate.wait(GATE_TIMEOUT)
        return 200, {}, {"score": 7}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_running_executions_refresh_to_their_end_without_a_reload(start_site, open_page, database_url):
    site = start_site(database_url, apply=False)
    held = HeldAnswer()
    with LocalHTTPServer(held) as stub:
        api = site.api()
        assert api.post(f"{site.url}/v1/executors", data=executor_yaml(stub.url), headers=YAML, timeout=10).ok
        created = api.post(f"{site.url}/v1/workflows", data=workflow_yaml(endpoint="slow"), headers=YAML, timeout=10)
        workflow_id = created.json()["workflowId"]
        assert api.post(f"{site.url}/v1/workflows/{workflow_id}/activate", timeout=10).ok

        def start_run() -> str:
            started = api.post(
                f"{site.url}/v1/workflows/{workflow_id}/executions",
                json={"inputData": {"amount": 3}},
                headers={"Prefer": "respond-async"},
                timeout=10,
            )
            assert started.status_code == 202, started.text
            return started.json()["executionId"]

        first = start_run()
        page = open_page(site)
        sign_in(page, site, path="/ui/executions")
        page.wait_for_selector(f"tr[data-execution-id='{first}'][data-status='running']")
        assert "Refreshing" in page.inner_text("#view")
        navigations = []
        page.on("framenavigated", lambda frame: navigations.append(frame.url))
        held.gate.set()
        page.wait_for_selector(f"tr[data-execution-id='{first}'][data-status='completed']", timeout=REFRESHED_MS)
        assert navigations == []  # refreshed in place, not reloaded

        held.gate.clear()
        second = start_run()
        page.goto(f"{site.url}/ui/executions/{second}")
        page.wait_for_selector("#execution-status [data-status='running']")
        # While the call is held: the trigger is on record, the call in flight shows running.
        page.wait_for_selector("svg.graph .node[data-node-id='score'][data-status='running']", timeout=REFRESHED_MS)
        assert node_statuses(page) == {"start": "completed", "score": "running", "done": "pending"}
        assert page.locator(".step[data-node-id='start']").count() == 1
        assert axe_violations(page) == []
        screenshot(page, "execution-running")
        held.gate.set()
        page.wait_for_selector("#execution-status [data-status='completed']", timeout=REFRESHED_MS)
        assert node_statuses(page) == {"start": "completed", "score": "completed", "done": "completed"}

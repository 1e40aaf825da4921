"""Retry in the browser: an execution fails because the service answers 400; the service
is fixed; Retry opens the new execution, which a worker runs to its end reusing the steps
before the failed one. The retry and its original link to each other, a viewer is offered
no Retry, and a second Retry of the same original shows the API's 409 (FLK-0531)."""

from __future__ import annotations

import threading

from console_helpers import VIEWER_KEY, axe_violations, screenshot, sign_in

from flowker.local_server import LocalHTTPServer

YAML = {"Content-Type": "application/yaml"}
RUN_TIMEOUT_MS = 30_000
EXECUTOR = """\
kind: Executor
name: ledger
description: A ledger stub that refuses bookings until the test fixes it
baseUrl: {url}
endpoints:
  - {{name: lookup, path: /lookup, method: POST, timeout: 10}}
  - {{name: book, path: /book, method: POST, timeout: 10}}
authentication: {{type: none}}
"""
WORKFLOW = """\
kind: Workflow
name: console-retry
nodes:
  - id: start
    type: trigger
    data: {triggerType: manual}
  - id: lookup
    type: executor
    name: Look up the account
    data: {executor: ledger, endpoint: lookup, body: {account: acct-1}}
  - id: book
    type: executor
    name: Book the amount
    data: {executor: ledger, endpoint: book, body: {account: acct-1, amount: 5}}
  - id: done
    type: action
    data: {actionType: set_output, output: {booked: "${{ nodes.book.body.booked }}"}}
edges:
  - {source: start, target: lookup}
  - {source: lookup, target: book}
  - {source: book, target: done}
"""


class Ledger:
    """``/lookup`` answers; ``/book`` answers 400 until ``fix()``; every call is counted."""

    def __init__(self):
        self.broken = True
        self.calls: dict[str, int] = {}
        self.lock = threading.Lock()

    def fix(self) -> None:
        self.broken = False

    def __call__(self, request):
        with self.lock:
            self.calls[request.path] = self.calls.get(request.path, 0) + 1
        if request.path == "/book" and self.broken:
            return 400, {}, {"error": "amount refused"}
        return 200, {}, {"account": "acct-1", "booked": True}


def node_statuses(page) -> dict[str, str]:
    return page.eval_on_selector_all(
        "svg.graph .node", "els => Object.fromEntries(els.map(e => [e.dataset.nodeId, e.dataset.status]))"
    )


def test_retry_from_the_console_reuses_steps_links_both_ways_and_refuses_a_second(start_site, open_page, database_url):
    site = start_site(database_url, apply=False)
    ledger = Ledger()
    with LocalHTTPServer(ledger) as stub:
        api = site.api()
        assert api.post(f"{site.url}/v1/executors", data=EXECUTOR.format(url=stub.url), headers=YAML, timeout=10).ok
        created = api.post(f"{site.url}/v1/workflows", data=WORKFLOW, headers=YAML, timeout=10)
        assert created.status_code == 201, created.text
        workflow_id = created.json()["workflowId"]
        assert api.post(f"{site.url}/v1/workflows/{workflow_id}/activate", timeout=10).ok
        started = api.post(f"{site.url}/v1/workflows/{workflow_id}/executions", json={"inputData": {}}, timeout=30)
        assert started.status_code == 201, started.text
        original = started.json()["executionId"]
        assert started.json()["status"] == "failed"

        # A viewer sees the failure but no Retry.
        viewer = open_page(site)
        sign_in(viewer, site, key=VIEWER_KEY, path=f"/ui/executions/{original}")
        viewer.wait_for_selector("#execution-status [data-status='failed']")
        assert viewer.locator(".step[data-node-id='book'] .step-error").count() == 1
        assert viewer.locator("#retry-button").count() == 0

        page = open_page(site)
        sign_in(page, site, path=f"/ui/executions/{original}")
        page.wait_for_selector("#retry-button")
        assert node_statuses(page) == {"start": "completed", "lookup": "completed", "book": "failed", "done": "skipped"}
        # A second tab on the same original, still offering Retry (it was opened before the retry).
        late = open_page(site)
        sign_in(late, site, path=f"/ui/executions/{original}")
        late.wait_for_selector("#retry-button")

        ledger.fix()
        page.click("#retry-button")
        page.wait_for_url(lambda url: url.rstrip("/").rsplit("/", 1)[1] != original and "/ui/executions/" in url)
        retry = page.url.rsplit("/", 1)[1]
        page.wait_for_selector("#execution-status [data-status='completed']", timeout=RUN_TIMEOUT_MS)
        assert page.get_attribute("#retry-of-link", "href") == f"/ui/executions/{original}"
        assert node_statuses(page) == {
            "start": "completed",
            "lookup": "completed",
            "book": "completed",
            "done": "completed",
        }
        reused = page.eval_on_selector_all(".step[data-reused='true']", "els => els.map(e => e.dataset.nodeId)")
        assert reused == ["start", "lookup"]
        assert "reused from the original" in page.inner_text(".step[data-node-id='lookup'] summary")
        assert ledger.calls == {"/lookup": 1, "/book": 2}  # the reused call was not made again
        results = site.api().get(f"{site.url}/v1/executions/{retry}/results", timeout=10).json()
        assert results["status"] == "completed" and results["retryOf"] == original
        assert results["finalOutput"] == {"booked": True}
        assert axe_violations(page) == []
        screenshot(page, "execution-retry")

        # The original links to its retry and offers no second Retry.
        page.click("#retry-of-link")
        page.wait_for_selector("#retried-by-link")
        assert page.get_attribute("#retried-by-link", "href") == f"/ui/executions/{retry}"
        assert page.locator("#retry-button").count() == 0
        assert axe_violations(page) == []
        screenshot(page, "execution-retried")

        # The tab opened earlier still shows the button: the API refuses a second retry.
        late.click("#retry-button")
        late.wait_for_selector("#view [role='alert']:has-text('FLK-0531')")
        assert retry in late.inner_text("#view [role='alert']")
        assert late.url.endswith(f"/ui/executions/{original}")
        assert (
            len(site.api().get(f"{site.url}/v1/executions?workflowId={workflow_id}", timeout=10).json()["items"]) == 2
        )

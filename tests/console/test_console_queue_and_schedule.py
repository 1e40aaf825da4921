"""The queue and schedules in the console: with no worker serving, a run started with
``Prefer: respond-async`` shows as queued (badge, filter option, count) and its page
refreshes by itself until a ``flowker worker`` started later has run it; a scheduled
workflow's page shows its cron, time zone and catch-up."""

from __future__ import annotations

import subprocess
import sys

import pytest
from console_helpers import axe_violations, screenshot, sign_in

REFRESHED_MS = 30_000
WORKER_STOP_SECONDS = 30


@pytest.fixture
def start_worker():
    """``start_worker(site)``: a ``flowker worker`` on the site's database; stopped at teardown."""
    workers: list[subprocess.Popen] = []

    def start(site) -> subprocess.Popen:
        worker = subprocess.Popen(
            [sys.executable, "-m", "flowker", "worker", "--concurrency", "1", "--grace-seconds", "5"],
            env={**site.env, "FLOWKER_DATABASE_URL": site.database_url},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        workers.append(worker)
        return worker

    try:
        yield start
    finally:
        for worker in workers:
            worker.terminate()
            try:
                worker.wait(timeout=WORKER_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(timeout=WORKER_STOP_SECONDS)


def test_a_queued_run_shows_queued_and_refreshes_until_a_worker_ran_it(
    start_site, open_page, start_worker, database_url
):
    site = start_site(database_url, worker=False)
    workflow_id = site.workflow_id("payment-approval")
    queued = site.api().post(
        f"{site.url}/v1/workflows/{workflow_id}/executions",
        json={"inputData": {"transactionId": "tx-queued", "amount": 12, "currency": "EUR", "payer": "bob"}},
        headers={"Prefer": "respond-async"},
        timeout=10,
    )
    assert queued.status_code == 202, queued.text
    execution_id = queued.json()["executionId"]
    assert queued.json()["status"] == "queued"

    page = open_page(site)
    sign_in(page, site, path="/ui/executions")
    page.wait_for_selector(f"tr[data-execution-id='{execution_id}'][data-status='queued'] .badge.status-queued")
    assert page.get_attribute("#status-counts li[data-status='queued']", "data-count") == "1"
    assert "queued" in page.eval_on_selector_all("#filter-status option", "els => els.map(e => e.value)")
    page.select_option("#filter-status", "queued")
    page.click("form.filters button[type=submit]")
    page.wait_for_selector("#execution-list caption:has-text('1 execution(s)')")
    assert page.locator("#execution-list tbody tr").count() == 1
    assert axe_violations(page) == []
    screenshot(page, "executions-queued")
    # The day filter asks the API for the browser's local day: today lists it, another day not.
    today = page.evaluate(
        "() => { const d = new Date(); const p = (n) => String(n).padStart(2, '0');"
        " return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`; }"
    )
    day_queries: list[str] = []
    page.on("request", lambda request: day_queries.append(request.url) if "dateFrom" in request.url else None)
    page.fill("#filter-day", "2001-02-03")
    page.click("form.filters button[type=submit]")
    page.wait_for_selector("#execution-list:has-text('No executions match.')")
    page.fill("#filter-day", today)
    page.click("form.filters button[type=submit]")
    page.wait_for_selector(f"tr[data-execution-id='{execution_id}']")
    assert any("dateTo" in url for url in day_queries), day_queries

    page.click(f"tr[data-execution-id='{execution_id}'] a")
    page.wait_for_selector("#execution-status [data-status='queued']")
    assert "Queued" in page.inner_text("#view")
    assert axe_violations(page) == []
    screenshot(page, "execution-queued")
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    start_worker(site)
    page.wait_for_selector("#execution-status [data-status='completed']", timeout=REFRESHED_MS)
    assert navigations == []  # refreshed in place
    statuses = page.eval_on_selector_all("svg.graph .node", "els => els.map(e => e.dataset.status)")
    assert "pending" not in statuses and "completed" in statuses


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_scheduled_workflow_shows_its_schedule(start_site, open_page, database_url):
    site = start_site(database_url, worker=False)  # no scheduler either: nothing fires meanwhile
    workflow_id = site.workflow_id("nightly-settlement")
    page = open_page(site)
    sign_in(page, site, path=f"/ui/workflows/{workflow_id}")
    page.wait_for_selector("#schedule")
    shown = page.eval_on_selector_all(
        "#schedule [data-schedule]", "els => Object.fromEntries(els.map(e => [e.dataset.schedule, e.textContent]))"
    )
    assert shown == {"cron": "30 2 * * *", "timezone": "Europe/Berlin", "catchUp": "latest"}
    assert '"region": "EU"' in page.inner_text("#schedule")
    # The API also runs a scheduled workflow on request: the form stays, with the schedule's input.
    assert page.locator("#trigger-form [data-field='scheduledAt']").count() == 1
    assert axe_violations(page) == []
    screenshot(page, "workflow-scheduled")
    # A workflow without a schedule shows none.
    page.goto(f"{site.url}/ui/workflows/{site.workflow_id('payment-approval')}")
    page.wait_for_selector("#trigger-form")
    assert page.locator("#schedule").count() == 0

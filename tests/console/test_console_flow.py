"""The console in a real browser: sign in, the examples' workflows, a run triggered from
the form and watched to its end, every node's colour against the API, a failed step's
error on its node, what a viewer is offered."""

from __future__ import annotations

import pytest
from console_helpers import ADMIN_KEY, VIEWER_KEY, screenshot, sign_in

EXAMPLES = {"payment-approval", "customer-onboarding", "order-fulfilment"}
RUN_TIMEOUT_MS = 20_000


def node_statuses(page) -> dict[str, str]:
    return page.eval_on_selector_all(
        "svg.graph .node", "els => Object.fromEntries(els.map(e => [e.dataset.nodeId, e.dataset.status]))"
    )


def test_sign_in_trigger_from_the_form_and_watch_it_complete(start_site, open_page, database_url):
    site = start_site(database_url)
    page = open_page(site)
    page.goto(site.url + "/ui/")
    assert page.is_visible("#sign-in") and not page.is_visible("#view table")
    sign_in(page, site)
    page.wait_for_selector("tr[data-workflow]")
    shown = set(page.eval_on_selector_all("tr[data-workflow]", "rows => rows.map(r => r.dataset.workflow)"))
    assert EXAMPLES <= shown
    assert page.inner_text("tr[data-workflow='payment-approval']").count("active") == 1
    screenshot(page, "workflows")

    page.click("tr[data-workflow='payment-approval'] a")
    page.wait_for_selector("#trigger-form")
    # The form is the trigger's inputSchema: one labelled control per property.
    for name in ("transactionId", "amount", "currency", "payer"):
        control = page.locator(f"[data-field='{name}']")
        assert control.get_attribute("required") is not None
        assert page.locator(f"label[for='{control.get_attribute('id')}']").count() == 1
    assert page.locator("svg.graph .node").count() == 7
    assert set(page.eval_on_selector_all("svg.graph .edge-label", "els => els.map(e => e.textContent)")) == {
        "true: approve",
        "false: hold",
    }
    page.fill("[data-field='transactionId']", "tx-console-1")
    page.fill("[data-field='amount']", "42.5")
    page.fill("[data-field='currency']", "EUR")
    page.fill("[data-field='payer']", "alice")
    screenshot(page, "workflow")
    page.click("#trigger-button")

    page.wait_for_url("**/ui/executions/*")
    page.wait_for_selector("#execution-status [data-status='completed']", timeout=RUN_TIMEOUT_MS)
    execution_id = page.url.rsplit("/", 1)[1]
    results = site.api().get(f"{site.url}/v1/executions/{execution_id}/results", timeout=10).json()
    assert results["status"] == "completed"
    expected = {step["nodeId"]: step["status"] for step in results["stepResults"]}
    assert node_statuses(page) == expected
    assert expected["review"] == "skipped" and expected["book"] == "completed"
    # The timeline has a row per step; the steps list shows the API's input and output.
    assert page.locator("svg.gantt .gantt-row").count() == len(results["stepResults"])
    page.click(".step[data-node-id='score'] summary")
    page.wait_for_selector(".step[data-node-id='score'] .step-body .call")  # built when opened
    assert "fraud-check" in page.inner_text(".step[data-node-id='score'] .step-body")
    assert "/fraud/v1/transactions/analyze" in page.inner_text(".step[data-node-id='score'] .call")
    assert page.get_attribute("#audit-link", "href") == f"/ui/audit?resourceId={execution_id}"
    screenshot(page, "execution")

    page.click("nav a[data-section='executions']")
    page.wait_for_selector(f"tr[data-execution-id='{execution_id}'][data-status='completed']")
    screenshot(page, "executions")
    page.goto(site.url + f"/ui/audit?resourceId={execution_id}")  # a reload: the key stays in this tab
    page.wait_for_selector(".audit-entry")
    types = page.eval_on_selector_all(".audit-entry summary", "els => els.map(e => e.textContent)")
    assert any("EXECUTION_COMPLETED" in text for text in types)
    # The key is in sessionStorage only: not in the URL, a cookie or localStorage.
    assert page.evaluate("sessionStorage.getItem('flowker.apiKey')") == ADMIN_KEY
    assert page.evaluate("localStorage.length") == 0 and page.context.cookies() == []
    assert all(ADMIN_KEY not in url for url in page.watched.requested)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_failed_execution_shows_the_error_on_its_node_and_a_retry_button(start_site, open_page, database_url):
    site = start_site(database_url)
    started = site.api().post(
        f"{site.url}/v1/workflows/{site.workflow_id('console-failing')}/executions", json={"inputData": {}}, timeout=30
    )
    assert started.status_code == 201, started.text
    execution_id = started.json()["executionId"]
    results = site.api().get(f"{site.url}/v1/executions/{execution_id}/results", timeout=10).json()
    assert results["status"] == "failed"
    failed = next(step for step in results["stepResults"] if step["status"] == "failed")
    assert failed["nodeId"] == "score"

    page = open_page(site)
    sign_in(page, site, path=f"/ui/executions/{execution_id}")
    page.wait_for_selector("#execution-status [data-status='failed']")
    statuses = node_statuses(page)
    assert statuses == {step["nodeId"]: step["status"] for step in results["stepResults"]}
    assert statuses["score"] == "failed"
    # The error is shown open on the failed step, exactly as the API words it.
    assert page.inner_text(".step[data-node-id='score'] .step-error p") == failed["errorMessage"]
    assert failed["errorMessage"] in page.text_content("svg.graph .node[data-node-id='score'] title")
    assert page.locator(".step-error").count() == 1
    # The server offers POST /v1/executions/{id}/retry and an admin may run: the button shows.
    assert page.locator("#retry-button").count() == 1
    screenshot(page, "execution-failed")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_viewer_is_offered_no_action(start_site, open_page, database_url):
    site = start_site(database_url)
    page = open_page(site)
    sign_in(page, site, key=VIEWER_KEY)
    assert "viewer" in page.inner_text("#who")
    assert page.is_hidden("nav a[data-section='audit']")
    page.click("tr[data-workflow='payment-approval'] a")
    page.wait_for_selector("svg.graph")
    assert page.locator("#trigger-form, #trigger-button, [data-action]").count() == 0
    page.click("nav a[data-section='executors']")
    page.wait_for_selector("section.executor")
    assert page.locator("[data-test]").count() == 0
    assert page.locator("section.executor").count() >= 5
    # The configuration shows references, never a resolved secret.
    page.click("section.executor[data-executor='fraud-check'] details summary")
    assert "FRAUD_API_TOKEN" in page.inner_text("section.executor[data-executor='fraud-check']")
    assert "console-test-value" not in page.content()

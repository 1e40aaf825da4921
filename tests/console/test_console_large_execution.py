"""A large execution (100 nodes, 5 attempts per call) is drawn whole: every node with its
status, every attempt on the timeline. How fast is benchmarks/console_render.py's figure
(benchmarks/README.md), not an assertion here."""

from __future__ import annotations

import pytest
from console_helpers import sign_in

from benchmarks.console_render import EXECUTION_ID, big_execution, serve_api_answers


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_100_node_execution_with_5_attempts_per_call_is_drawn_whole(start_site, open_page, database_url):
    site = start_site(database_url, apply=False)
    summary, workflow, results = big_execution(nodes=100, attempts=5)
    page = open_page(site)
    sign_in(page, site)
    serve_api_answers(page, summary, workflow, results)
    page.goto(f"{site.url}/ui/executions/{EXECUTION_ID}")
    page.wait_for_selector("#view [data-render-ms]")
    statuses = page.eval_on_selector_all(
        "svg.graph .node", "els => Object.fromEntries(els.map(e => [e.dataset.nodeId, e.dataset.status]))"
    )
    assert statuses == {step["nodeId"]: step["status"] for step in results["stepResults"]}
    assert len(statuses) == 100
    calls = [step for step in results["stepResults"] if step.get("callDetails")]
    assert page.locator("svg.gantt .gantt-attempt").count() == 5 * len(calls)
    assert page.locator(".step").count() == 100
    assert page.locator(".step[open] .step-error").count() == 1
    print(f"rendered in {page.get_attribute('#view [data-render-ms]', 'data-render-ms')} ms")

"""A workflow's page lists its saved versions (newest first, the current one marked), and
choosing the older one draws that version's graph, read-only, beside the current graph."""

from __future__ import annotations

from console_helpers import VIEWER_KEY, axe_violations, screenshot, sign_in


def spec(node_ids: list[str]) -> dict:
    """A webhook trigger followed by a chain of set_output actions named ``node_ids``."""
    nodes = [
        {"id": "start", "type": "trigger", "data": {"triggerType": "webhook", "path": "/versions", "method": "POST"}}
    ]
    nodes += [
        {"id": node, "type": "action", "data": {"actionType": "set_output", "output": {"at": node}}}
        for node in node_ids
    ]
    chain = ["start", *node_ids]
    edges = [{"source": source, "target": target} for source, target in zip(chain, chain[1:])]
    return {"name": "versioned", "nodes": nodes, "edges": edges}


def test_the_versions_list_and_an_older_versions_graph(start_site, open_page, database_url):
    site = start_site(database_url, worker=False)
    api = site.api()
    created = api.post(site.url + "/v1/workflows", json=spec(["first", "second", "third"]), timeout=10)
    assert created.status_code == 201, created.text
    workflow_id = created.json()["workflowId"]
    replaced = api.put(f"{site.url}/v1/workflows/{workflow_id}", json=spec(["only"]), timeout=10)
    assert replaced.status_code == 200 and replaced.json()["version"] == 2, replaced.text

    page = open_page(site)
    sign_in(page, site, key=VIEWER_KEY, path=f"/ui/workflows/{workflow_id}")
    page.wait_for_selector("#versions tr[data-version]")
    rows = page.eval_on_selector_all(
        "#versions tr[data-version]", "rows => rows.map(r => [r.dataset.version, r.dataset.current])"
    )
    assert rows == [["2", "true"], ["1", "false"]]
    assert page.locator("#versions tr[data-version='2'] [data-status='current']").count() == 1
    assert page.locator("#versions tr[data-version='1'] [data-status='current']").count() == 0
    assert page.locator("#version-graph").count() == 0
    assert page.locator("svg.graph .node").count() == 2  # the current graph only

    page.click("#versions button[data-version='1']")
    page.wait_for_selector("#version-graph[data-version='1'] svg.graph")
    older = page.eval_on_selector_all("#version-graph svg.graph .node", "els => els.map(e => e.dataset.nodeId)")
    assert older == ["start", "first", "second", "third"]
    assert page.get_attribute("#versions button[data-version='1']", "aria-pressed") == "true"
    assert page.locator("#version-graph button, #version-graph input").count() == 0  # read-only
    assert axe_violations(page) == []
    screenshot(page, "workflow-versions")

    page.click("#versions button[data-version='2']")
    page.wait_for_selector("#version-graph[data-version='2'] svg.graph")
    assert page.locator("#version-graph svg.graph .node").count() == 2
    assert page.get_attribute("#versions button[data-version='1']", "aria-pressed") == "false"

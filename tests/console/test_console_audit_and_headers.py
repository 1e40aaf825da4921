"""The console's audit page against a sound and a tampered chain, its headers, and
accessibility (axe-core, from tests/servers/node_modules) on every page at two widths."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
import requests
from console_helpers import ADMIN_KEY, REPO, axe_violations, screenshot, sign_in

PAGES = ("/ui/", "/ui/executions", "/ui/audit", "/ui/executors")
SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def verify(page) -> dict:
    page.click("#verify-button")
    page.wait_for_selector("#verify-result [data-valid]")
    return {
        "valid": page.get_attribute("#verify-result [data-valid]", "data-valid"),
        "text": page.inner_text("#verify-result"),
        "first_invalid": page.get_attribute("#first-invalid", "data-event-id")
        if page.locator("#first-invalid").count()
        else None,
    }


def tampered_copy(database_url: str, target: Path) -> tuple[str, str]:
    """A copy of the SQLite database with one audit entry's content changed (the copy's
    append-only triggers dropped first); answers (copy's URL, the changed entry's event id)."""
    source = sqlite3.connect(database_url.removeprefix("sqlite:///"))
    copy = sqlite3.connect(target)
    with copy:
        source.backup(copy)
    source.close()
    sequence, event_id = copy.execute(
        "SELECT sequence, event_id FROM audit_entry WHERE event_type = 'WORKFLOW_ACTIVATED' ORDER BY sequence LIMIT 1"
    ).fetchone()
    with copy:
        copy.execute("DROP TRIGGER audit_entry_no_update")
        changed = copy.execute(
            "UPDATE audit_entry SET canonical = replace(canonical, '\"SUCCESS\"', '\"FAILED\"'), result = 'FAILED' "
            "WHERE sequence = ?",
            (sequence,),
        ).rowcount
    copy.close()
    assert changed == 1
    return f"sqlite:///{target}", event_id


@SQLITE
def test_audit_verify_is_valid_then_names_the_entry_changed_in_a_tampered_copy(
    start_site, open_page, database_url, tmp_path
):
    site = start_site(database_url)
    page = open_page(site)
    sign_in(page, site, path="/ui/audit")
    page.wait_for_selector(".audit-entry")
    first = page.locator(".audit-entry").first
    first.locator("summary").click()
    event_id = first.get_attribute("data-event-id")
    api_entry = site.api().get(f"{site.url}/v1/audit-events/{event_id}", timeout=10).json()
    assert api_entry["hash"] in first.inner_text()
    assert f'"eventId":"{event_id}"' in first.locator("pre").inner_text()
    verdict = verify(page)
    assert verdict["valid"] == "true" and verdict["first_invalid"] is None
    checked = int(re.search(r"(\d+) entries checked", verdict["text"]).group(1))
    assert checked >= 10
    screenshot(page, "audit")

    copy_url, changed_id = tampered_copy(database_url, tmp_path / "tampered.db")
    tampered = start_site(copy_url, apply=False)
    page = open_page(tampered)
    sign_in(page, tampered, path="/ui/audit")
    page.wait_for_selector(".audit-entry")
    verdict = verify(page)
    assert verdict["valid"] == "false"
    assert verdict["first_invalid"] == changed_id
    assert changed_id in page.inner_text("#first-invalid") and "WORKFLOW_ACTIVATED" in page.inner_text("#first-invalid")
    screenshot(page, "audit-tampered")


@SQLITE
def test_console_answers_carry_a_strict_policy_and_no_inline_code(start_site, database_url):
    site = start_site(database_url, apply=False)
    session = requests.Session()
    session.trust_env = False
    for path in (*PAGES, "/ui/workflows/x", "/ui/executions/x", "/ui/static/app.js", "/ui/static/console.css"):
        answer = session.get(site.url + path, timeout=10)
        assert answer.status_code == 200, path  # public: no key needed to load the console
        policy = answer.headers["Content-Security-Policy"]
        directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
        assert directives["default-src"] == "'self'" and directives["script-src"] == "'self'"
        assert directives["style-src"] == "'self'" and directives["connect-src"] == "'self'"
        assert directives["frame-ancestors"] == "'none'" and directives["base-uri"] == "'none'"
        assert "unsafe" not in policy
        assert answer.headers["Referrer-Policy"] == "no-referrer"
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        if answer.headers["Content-Type"].startswith("text/html"):
            assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", answer.text) == []
            assert " style=" not in answer.text and "<style" not in answer.text
    # The data is not public: the API still wants a key, and unknown files are 404.
    assert session.get(site.url + "/v1/workflows", timeout=10).status_code == 401
    assert session.get(site.url + "/ui/static/../app.py", timeout=10).status_code == 404
    assert session.get(site.url + "/ui/static/nothing.js", timeout=10).status_code == 404
    # No shipped script or sheet uses what the policy forbids.
    for asset in (REPO / "flowker" / "console" / "static").iterdir():
        text = asset.read_text()
        assert "innerHTML" not in text and "eval(" not in text and "new Function" not in text, asset.name
        assert ".style." not in text and 'setAttribute("style"' not in text, asset.name


@SQLITE
@pytest.mark.parametrize("width,height", [(1280, 800), (390, 844)], ids=["desktop", "phone"])
def test_every_page_passes_axe_at_desktop_and_phone_width(start_site, open_page, database_url, width, height):
    site = start_site(database_url)
    executed = (
        site.api()
        .post(
            f"{site.url}/v1/workflows/{site.workflow_id('console-failing')}/executions",
            json={"inputData": {}},
            timeout=30,
        )
        .json()
    )
    workflow_id = site.workflow_id("payment-approval")
    page = open_page(site, width=width, height=height)
    page.goto(site.url + "/ui/")
    page.wait_for_selector("#api-key")
    problems = {"sign-in": axe_violations(page)}
    sign_in(page, site)
    pages = {
        "workflows": ("/ui/", "tr[data-workflow]"),
        "workflow": (f"/ui/workflows/{workflow_id}", "#trigger-form"),
        "executions": ("/ui/executions", "#execution-list table"),
        "execution": (f"/ui/executions/{executed['executionId']}", ".step-error"),
        "audit": ("/ui/audit", ".audit-entry"),
        "executors": ("/ui/executors", "section.executor"),
    }
    for name, (path, ready) in pages.items():
        page.goto(site.url + path)
        page.wait_for_selector(ready)
        problems[name] = axe_violations(page)
        # Nothing wider than the screen but the graph, timeline and tables (which scroll).
        assert page.evaluate("document.documentElement.scrollWidth") <= width + 1, name
        if width < 600:
            screenshot(page, f"{name}-phone")
    assert {name: found for name, found in problems.items() if found} == {}
    assert page.evaluate("sessionStorage.getItem('flowker.apiKey')") == ADMIN_KEY

"""Helpers for the web console's browser tests: a real ``flowker serve`` with the
examples applied (their executors pointed at the sample service on a free port), and
Playwright driving Debian's Chromium (``/usr/bin/chromium``; no browser is downloaded).

Every page a test opens has every request checked: one to another origin is aborted and
fails the test, as does a Content-Security-Policy violation in the browser's console.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

E2E_FOLDER = Path(__file__).resolve().parents[1] / "e2e"
if str(E2E_FOLDER) not in sys.path:
    sys.path.append(str(E2E_FOLDER))

from e2e_helpers import FlowkerServer, api_session, executor_yaml  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = REPO / "tests" / "artifacts" / "console"
AXE = REPO / "tests" / "servers" / "node_modules" / "axe-core" / "axe.min.js"
ADMIN_KEY = "console-admin-key-0123456789abcdef"
VIEWER_KEY = "console-viewer-key-0123456789abcdef"
API_KEYS = f"admin:{ADMIN_KEY}:admin,viewer:{VIEWER_KEY}:viewer"
# The examples' {$env} references (any value works against the sample service).
EXAMPLE_SECRETS = {
    name: "console-test-value"
    for name in (
        "FRAUD_API_TOKEN",
        "LEDGER_API_KEY",
        "PAYMENTS_WEBHOOK_TOKEN",
        "KYC_CLIENT_SECRET",
        "CORE_BANKING_PASSWORD",
        "ONBOARDING_WEBHOOK_TOKEN",
        "WAREHOUSE_API_KEY",
        "PAYMENTS_API_TOKEN",
        "CARRIER_API_KEY",
    )
}
FAILING_WORKFLOW = """\
kind: Workflow
name: console-failing
description: Calls an endpoint the sample service does not have (404), so it fails
nodes:
  - id: start
    type: trigger
    data: {triggerType: manual}
  - id: score
    type: executor
    name: Score
    data: {executor: scorer, endpoint: score, body: {amount: 1}}
  - id: done
    type: action
    data: {actionType: set_output, output: {never: reached}}
edges:
  - {source: start, target: score}
  - {source: score, target: done}
"""


@dataclass
class ConsoleSite:
    """A started server with the examples applied, and the database it runs on."""

    server: FlowkerServer
    database_url: str
    env: dict = field(repr=False, default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.url

    def api(self, key: str = ADMIN_KEY):
        session = api_session(key)
        session.headers["Accept"] = "application/json"
        return session

    def workflow_id(self, name: str) -> str:
        items = self.api().get(self.url + "/v1/workflows?limit=100", timeout=10).json()["items"]
        return next(item["id"] for item in items if item["name"] == name)


def prepare_specs(folder: Path, sample_url: str) -> Path:
    """A copy of examples/ calling the sample service at ``sample_url``, plus a workflow that fails."""
    shutil.copytree(REPO / "examples", folder, ignore=shutil.ignore_patterns("*.py", "README.md", "__pycache__"))
    for spec in folder.glob("*/executors/*.yaml"):
        spec.write_text(spec.read_text().replace("http://127.0.0.1:8700", sample_url))
    failing = folder / "console-failing"
    (failing / "executors").mkdir(parents=True)
    (failing / "workflows").mkdir()
    (failing / "executors" / "scorer.yaml").write_text(executor_yaml(sample_url))
    (failing / "workflows" / "console-failing.yaml").write_text(FAILING_WORKFLOW)
    return folder


@dataclass
class Watched:
    """What the browser did on one page: every URL asked for, foreign ones, console errors."""

    requested: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)  # to another origin
    refused: list[str] = field(default_factory=list)  # ... and not one the test allowed
    errors: list[str] = field(default_factory=list)


def sign_in(page, site: ConsoleSite, key: str = ADMIN_KEY, path: str = "/ui/") -> None:
    page.goto(site.url + path)
    page.fill("#api-key", key)
    page.click("#key-form button[type=submit]")
    page.wait_for_selector("#sign-out:not([hidden])")


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def axe_violations(page) -> list[dict]:
    """axe-core's serious and critical findings on the page as it is now."""
    page.evaluate(AXE.read_text())  # through the DevTools protocol: the page's CSP stays as it is
    found = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}))"
    )
    return [v for v in found if v["impact"] in ("serious", "critical")]

"""Fixtures for the web console's browser tests: a real ``flowker serve`` with the
examples applied (their executors pointed at the sample service on a free port), and
Playwright driving Debian's Chromium (``/usr/bin/chromium``; no browser is downloaded).

Every page a test opens has every request checked: one to another origin is aborted and
fails the test, as does a Content-Security-Policy violation in the browser's console.
"""

from __future__ import annotations

import shutil
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

E2E_FOLDER = Path(__file__).resolve().parents[1] / "e2e"
if str(E2E_FOLDER) not in sys.path:
    sys.path.append(str(E2E_FOLDER))

from e2e_helpers import FlowkerServer, api_session, executor_yaml, flowker_env, run_flowker  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = REPO / "tests" / "artifacts" / "console"
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


@pytest.fixture(scope="session")
def sample_service():
    """examples/sample_service.py on a free port, in this process."""
    sys.path.insert(0, str(REPO / "examples"))
    try:
        from sample_service import make_sample_server
    finally:
        sys.path.remove(str(REPO / "examples"))
    server = make_sample_server("127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


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


@pytest.fixture
def start_site(tmp_path, sample_service):
    """``start_site(database_url, apply=True)``: the examples applied to that database and a
    server started on it; every server is stopped at teardown."""
    started: list[FlowkerServer] = []

    def start(database_url: str, apply: bool = True) -> ConsoleSite:
        env = flowker_env(database_url, FLOWKER_API_KEYS=API_KEYS, **EXAMPLE_SECRETS)
        if apply:
            specs = prepare_specs(tmp_path / f"specs-{len(started)}", sample_service)
            upgraded = run_flowker(["db", "upgrade"], env)
            assert upgraded.returncode == 0, upgraded.stderr
            applied = run_flowker(["apply", str(specs), "--activate", "--db", database_url], env)
            assert applied.returncode == 0, applied.stdout + applied.stderr
        server = FlowkerServer(env, workers=1, threads=4)
        started.append(server)
        server.start()
        return ConsoleSite(server, database_url, env)

    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/test.sh installs Debian's chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Watched:
    """What the browser did on one page: every URL asked for, foreign ones, console errors."""

    requested: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@pytest.fixture
def open_page(browser):
    """``open_page(site, width=1280, height=800)``: a fresh tab (its own sessionStorage) whose
    requests must all stay on the site's origin and whose console shows no CSP violation."""
    contexts = []
    watches: list[Watched] = []

    def open_(site: ConsoleSite, width: int = 1280, height: int = 800):
        context = browser.new_context(viewport={"width": width, "height": height}, service_workers="block")
        contexts.append(context)
        page = context.new_page()
        origin = "{0.scheme}://{0.netloc}".format(urlsplit(site.url))
        watched = Watched()
        watches.append(watched)

        def guard(route):
            url = route.request.url
            watched.requested.append(url)
            parts = urlsplit(url)
            if f"{parts.scheme}://{parts.netloc}" != origin:
                watched.foreign.append(url)
                route.abort()
            else:
                route.continue_()

        page.route("**/*", guard)
        page.on("console", lambda msg: watched.errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda error: watched.errors.append(f"page error: {error}"))
        page.watched = watched
        return page

    try:
        yield open_
    finally:
        for context in contexts:
            context.close()
    for watched in watches:
        assert watched.foreign == [], f"requests left the origin: {watched.foreign}"
        violations = [e for e in watched.errors if "Content Security Policy" in e or "Refused to" in e]
        assert violations == [], violations
        assert [e for e in watched.errors if e.startswith("page error")] == []


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

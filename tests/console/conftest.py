"""Fixtures for the web console's browser tests (helpers and constants: console_helpers)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from console_helpers import (
    API_KEYS,
    CHROMIUM,
    EXAMPLE_SECRETS,
    REPO,
    ConsoleSite,
    Watched,
    prepare_specs,
)
from e2e_helpers import FlowkerServer, flowker_env, run_flowker


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


@pytest.fixture
def start_site(tmp_path, sample_service):
    """``start_site(database_url, apply=True, worker=True)``: the examples applied to that
    database and a server started on it (``worker=False``: ``--no-worker``, so queued runs
    wait); every server is stopped at teardown."""
    started: list[FlowkerServer] = []

    def start(database_url: str, apply: bool = True, worker: bool = True) -> ConsoleSite:
        env = flowker_env(database_url, FLOWKER_API_KEYS=API_KEYS, **EXAMPLE_SECRETS)
        if apply:
            specs = prepare_specs(tmp_path / f"specs-{len(started)}", sample_service)
            upgraded = run_flowker(["db", "upgrade"], env)
            assert upgraded.returncode == 0, upgraded.stderr
            applied = run_flowker(["apply", str(specs), "--activate", "--db", database_url], env)
            assert applied.returncode == 0, applied.stdout + applied.stderr
        server = FlowkerServer(env, *(() if worker else ("--no-worker",)), workers=1, threads=4)
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


@pytest.fixture
def open_page(browser):
    """``open_page(site, width=1280, height=800)``: a fresh tab (its own sessionStorage) whose
    requests must all stay on the site's origin and whose console shows no CSP violation."""
    contexts = []
    watches: list[Watched] = []

    def open_(site: ConsoleSite, width: int = 1280, height: int = 800, allowed_origins: tuple[str, ...] = ()):
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
            if (
                route.request.frame.url
                and not route.request.frame.url.startswith(origin)
                and not route.request.is_navigation_request()
            ):
                return route.abort()  # a provider's own page fetching its own extras (fonts): not the console's
            if f"{parts.scheme}://{parts.netloc}" != origin:
                watched.foreign.append(url)
                if f"{parts.scheme}://{parts.netloc}" not in allowed_origins:
                    watched.refused.append(url)
                    return route.abort()
                route.continue_()
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
        assert watched.refused == [], f"requests left the origin: {watched.refused}"
        violations = [e for e in watched.errors if "Content Security Policy" in e or "Refused to" in e]
        assert violations == [], violations
        assert [e for e in watched.errors if e.startswith("page error")] == []

"""Signing in to the console with an OpenID provider (tests/servers/console_provider.mjs,
a real ``oidc-provider``): authorization code + PKCE in the browser, the token kept in
memory only, the person's role deciding what the pages offer."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from urllib.parse import urlsplit

import pytest
from console_helpers import API_KEYS, EXAMPLE_SECRETS, REPO, ConsoleSite, prepare_specs, screenshot
from e2e_helpers import FlowkerServer, flowker_env, run_flowker

SERVERS = REPO / "tests" / "servers"
AUDIENCE = "https://flowker.console.test"
START_TIMEOUT = 30


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def provider(tmp_path):
    """``provider(redirect_uri)``: the provider started for that redirect; stopped at teardown."""
    if shutil.which("node") is None or not (SERVERS / "node_modules" / "oidc-provider").is_dir():
        pytest.fail("Node.js and tests/servers/node_modules are needed (scripts/test.sh installs them)")
    started: list[subprocess.Popen] = []

    def start(redirect_uri: str) -> str:
        config = tmp_path / "provider.json"
        config.write_text(
            json.dumps(
                {
                    "audience": AUDIENCE,
                    "clientId": "flowker-console",
                    "redirectUri": redirect_uri,
                    "users": {"olivia": ["ops"], "nobody": ["strangers"]},
                }
            )
        )
        process = subprocess.Popen(
            ["node", str(SERVERS / "console_provider.mjs"), str(config)],
            cwd=SERVERS,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        line = process.stdout.readline()
        assert line, f"the provider did not start: {process.stderr.read()[-2000:]}"
        return json.loads(line)["issuer"]

    try:
        yield start
    finally:
        for process in started:
            process.stdin.close()
            try:
                process.wait(timeout=START_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=START_TIMEOUT)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_person_signs_in_with_the_provider_and_is_offered_what_the_role_allows(
    provider, open_page, database_url, sample_service, tmp_path
):
    port = free_port()
    issuer = provider(f"http://127.0.0.1:{port}/ui/signin-callback")
    env = flowker_env(
        database_url,
        FLOWKER_API_KEYS=API_KEYS,
        FLOWKER_OIDC_ISSUER=issuer,
        FLOWKER_OIDC_AUDIENCE=AUDIENCE,
        FLOWKER_OIDC_ROLE_MAP="ops=operator",
        FLOWKER_UI_OIDC_CLIENT_ID="flowker-console",
        OAUTHLIB_INSECURE_TRANSPORT="1",  # the provider is plain http on loopback (development)
        **EXAMPLE_SECRETS,
    )
    assert run_flowker(["db", "upgrade"], env).returncode == 0
    specs = prepare_specs(tmp_path / "specs", sample_service)
    applied = run_flowker(["apply", str(specs), "--activate", "--db", database_url], env)
    assert applied.returncode == 0, applied.stderr
    server = FlowkerServer(env, "--bind", f"127.0.0.1:{port}", workers=1)
    try:
        server.start()
        site = ConsoleSite(server, database_url, env)
        issuer_origin = "{0.scheme}://{0.netloc}".format(urlsplit(issuer))
        page = open_page(site, allowed_origins=(issuer_origin,))
        page.goto(site.url + "/ui/")
        policy = page.context.request.get(site.url + "/ui/").headers["content-security-policy"]
        assert f"connect-src 'self' {issuer_origin};" in policy
        page.click("#oidc-button")
        # The provider's own login and consent pages (oidc-provider's development ones).
        page.wait_for_url(f"{issuer_origin}/interaction/**")
        page.fill("input[name=login]", "olivia")
        page.fill("input[name=password]", "any")
        page.click("button[type=submit]")
        page.wait_for_selector("button[type=submit]")
        page.click("button[type=submit]")
        page.wait_for_selector("tr[data-workflow], #sign-in-error:not(:empty)")
        assert page.inner_text("#sign-in-error") == "", page.watched.errors
        assert page.url == site.url + "/ui/"
        assert "olivia" in page.inner_text("#who") and "operator" in page.inner_text("#who")
        # The token is in memory only: nothing in the tab's storage, no cookie for Flowker.
        assert page.evaluate("sessionStorage.length") == 0 and page.evaluate("localStorage.length") == 0
        # (Cookies ignore ports: the provider's own session cookies on 127.0.0.1 show here too.)
        names = {cookie["name"] for cookie in page.context.cookies(site.url)}
        assert {name for name in names if not name.startswith(("_session", "_interaction"))} == set()
        # An operator may run but not change workflows; moving between pages keeps the sign-in.
        page.click("tr[data-workflow='payment-approval'] a")
        page.wait_for_selector("#trigger-form")
        assert page.locator("[data-action]").count() == 0
        page.fill("[data-field='transactionId']", "tx-person-1")
        page.fill("[data-field='amount']", "10")
        page.fill("[data-field='currency']", "EUR")
        page.fill("[data-field='payer']", "olivia")
        page.click("#trigger-button")
        page.wait_for_selector("#execution-status [data-status='completed']", timeout=20_000)
        screenshot(page, "oidc-execution")
        # The audit entries name the person, not a key (the form queues the run: the person
        # queued it, EXECUTION_QUEUED; the worker that started it is the system).
        audit = site.api().get(site.url + "/v1/audit-events?eventType=EXECUTION_QUEUED&limit=1", timeout=10).json()
        assert audit["items"][0]["actor"] == {"type": "person", "id": f"{issuer} olivia", "ipAddress": "127.0.0.1"}
        assert set(page.watched.foreign) and all(url.startswith(issuer_origin) for url in page.watched.foreign)
        # A reload forgets the token: the sign-in form again.
        page.reload()
        page.wait_for_selector("#sign-in:not([hidden])")
    finally:
        server.stop()

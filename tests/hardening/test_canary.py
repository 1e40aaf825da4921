"""The canary test: no secret ever leaves Flowker, in any encoding, anywhere.

Distinct random secrets sit in every secret field of every built-in auth type, of the
``hmac`` plugin (plugins/flowker-auth-hmac) and of the plugin guide's ``acme`` example
(literal, so encrypted at rest, and as ``{$env}`` references), and the tokens the providers
hand out join them. Executors and workflows are created over the REST API, probed
(``POST /v1/executors/{id}/test``) and run through success, a 307 to another origin, a 401
from the executor (OIDC: a token refresh and one resend), 5xx with retries, an open
breaker, failing or hostile token endpoints and a reference whose value breaks the type's
schema, while a resource server checks every credential for real. Nothing an auth added
may reach the other origin, and no canary may appear - raw, base64 (also inside
``base64(user:pass)``), URL- or form-encoded, JSON-escaped - in any response body or
header of the API, in the logs captured at DEBUG (root, urllib3, requests-oauthlib,
oauthlib), plain and as the JSON lines ``FLOWKER_LOG_FORMAT=json`` writes, in the
database (the SQLite file, its -wal and -shm read as bytes; every PostgreSQL row as
text), in what the other origin received, or in the text of any Flowker error raised on
the way.
"""

from __future__ import annotations

import json
import os
import threading
import time

import falcon.testing
import pytest
import requests.adapters

from flowker.local_server import LocalHTTPServer

from canary_world import (
    CanaryWorld,
    JwtChecker,
    build_kinds,
    credentials_sent_elsewhere,
    elsewhere_handler,
    hostile_issuer_handler,
    provider_configs,
    resource_handler,
)
from hardening_helpers import API_KEY, SECRET_KEY, Canaries, find_leaks, leak_report
from plugin_guide import acme_example

WORKFLOW_TIMEOUT = 20.0


@pytest.fixture(scope="module")
def hardening_registry():
    """Every installed plugin (flowker-auth-hmac among them) plus the guide's acme example."""
    from flowker.plugins import load_registry

    registry = load_registry()
    assert "hmac" in registry.auth_types, "plugins/flowker-auth-hmac is not installed"
    registry.register_auth_type(acme_example().AcmeAuth())
    return registry


@pytest.fixture(scope="session")
def canary_providers(auth_launchers, hardening_tls, tmp_path_factory):
    """The two identity providers, started with canary client secrets and passwords."""
    auth_launchers_ready(auth_launchers)
    canaries = Canaries()
    oidc_config, user_config = provider_configs(canaries, hardening_tls)
    oidc = auth_launchers.NodeProvider(
        "oidc_provider.mjs", oidc_config, tmp_path_factory.mktemp("canary-oidc"), hardening_tls.ca
    )
    users = auth_launchers.NodeProvider(
        "user_provider.mjs", user_config, tmp_path_factory.mktemp("canary-users"), hardening_tls.ca
    )
    oidc.start()
    try:
        users.start()
    except BaseException:
        oidc.stop()
        raise
    try:
        yield canaries, oidc, users
    finally:
        users.stop()
        oidc.stop()


def auth_launchers_ready(module) -> None:
    """``npm ci`` in tests/servers when its packages are missing (as the auth tests do)."""
    import shutil
    import subprocess

    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("Node.js and npm are needed for the canary test's identity providers")
    modules = module.SERVERS_DIR / "node_modules"
    if not (modules / "oidc-provider").is_dir() or not (modules / "oauth2-mock-server").is_dir():
        result = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=module.SERVERS_DIR,
            capture_output=True,
            text=True,
            timeout=module.NPM_TIMEOUT_SECONDS,
        )
        if result.returncode != 0:
            pytest.fail(f"npm ci failed:\n{result.stderr[-2000:]}")


class RecordingClient:
    """A TestClient that keeps every response (status line, headers, body) it got."""

    def __init__(self, app):
        self.client = falcon.testing.TestClient(app, headers={"X-API-Key": API_KEY})
        self.responses: list[str] = []

    def __call__(self, method: str, path: str, **kwargs):
        result = self.client.simulate_request(method, path, **kwargs)
        headers = "\n".join(f"{name}: {value}" for name, value in result.headers.items())
        self.responses.append(f"{method} {path} -> {result.status}\n{headers}\n{result.text}")
        return result

    def get(self, path, **kwargs):
        return self("GET", path, **kwargs)

    def post(self, path, **kwargs):
        return self("POST", path, **kwargs)

    def all_pages(self, path: str, **params) -> list:
        items, cursor = [], None
        for _ in range(200):
            query = {"limit": 100, **params, **({"cursor": cursor} if cursor else {})}
            page = self.get(path, params=query).json
            items += page["items"]
            if not page["hasMore"]:
                return items
            cursor = page["nextCursor"]
        raise AssertionError(f"too many pages of {path}")


def executor_body(kind, base_url: str) -> dict:
    return {
        "name": kind.name,
        "description": f"canary executor {kind.name}",
        "baseUrl": f"{base_url}/svc/{kind.name}",
        "endpoints": [
            {"name": "call", "path": "/r/{mode}", "method": "POST", "timeout": 10},
            {"name": "health", "path": "/health", "method": "GET", "timeout": 10},
        ],
        "authentication": kind.authentication,
    }


def workflow_body(kind) -> dict:
    return {
        "name": f"wf-{kind.name}",
        "nodes": [
            {"id": "start", "type": "trigger", "data": {"triggerType": "manual"}},
            {
                "id": "call",
                "type": "executor",
                "data": {
                    "executor": kind.name,
                    "endpoint": "call",
                    "pathParams": {"mode": "${{ workflow.mode }}"},
                    "body": {"mode": "${{ workflow.mode }}"},
                    "headers": {"X-Trace": "canary-run"},
                },
            },
            {
                "id": "note",
                "type": "action",
                "data": {"actionType": "log", "level": "warning", "message": "executor said ${{ nodes.call.body }}"},
            },
            {
                "id": "out",
                "type": "action",
                "data": {
                    "actionType": "set_output",
                    "output": {"echo": "${{ nodes.call.body }}", "headers": "${{ nodes.call.headers }}"},
                },
            },
        ],
        "edges": [
            {"source": "start", "target": "call"},
            {"source": "call", "target": "note"},
            {"source": "note", "target": "out"},
        ],
    }


def webhook_workflow(verify_token: str, executor: str) -> dict:
    body = workflow_body(type("K", (), {"name": executor})())
    body["name"] = "wf-webhook"
    body["nodes"][0]["data"] = {
        "triggerType": "webhook",
        "path": "/canary",
        "method": "POST",
        "verify_token": verify_token,
    }
    return body


def hostile_bodies(canaries: Canaries, base_url: str) -> list[tuple[str, dict, str]]:
    """Requests that carry a secret and must be refused without echoing it."""
    long_key = canaries.new("rejected-long-key") + "x" * 5000
    misnamed = canaries.new("rejected-misnamed")
    wrong_type = canaries.new("rejected-in-list")
    yaml_secret = canaries.new("rejected-yaml")
    bad_url_secret = canaries.new("rejected-userinfo")
    base = {"name": "rejected", "baseUrl": base_url, "endpoints": [{"name": "x", "path": "/x", "method": "GET"}]}
    return [
        ("json", {**base, "authentication": {"type": "api_key", "config": {"key": long_key}}}, ""),
        ("json", {**base, "authentication": {"type": "bearer", "config": {"tokne": misnamed}}}, ""),
        (
            "json",
            {**base, "authentication": {"type": "basic", "config": {"username": "u", "password": [wrong_type]}}},
            "",
        ),
        ("json", {**base, "baseUrl": f"http://user:{bad_url_secret}@127.0.0.1:1/"}, ""),
        (
            "yaml",
            None,
            (
                f"kind: Executor\nname: rejected\nbaseUrl: {base_url}\nendpoints: []\n"
                f"authentication:\n  type: bearer\n  config:\n    token: {yaml_secret}: oops\n"
            ),
        ),
    ]


def settle(client: RecordingClient, execution_id: str) -> dict:
    deadline = time.monotonic() + WORKFLOW_TIMEOUT
    while time.monotonic() < deadline:
        summary = client.get(f"/v1/executions/{execution_id}").json
        if summary["status"] not in ("queued", "running"):
            return summary
        time.sleep(0.05)
    raise AssertionError(f"execution {execution_id} did not finish")


def sqlite_files(database_url: str) -> dict:
    path = database_url[len("sqlite:///") :]
    found = {}
    for suffix in ("", "-wal", "-shm", "-journal"):
        if os.path.exists(path + suffix):
            with open(path + suffix, "rb") as handle:
                found[f"database file {os.path.basename(path + suffix)}"] = handle.read()
    assert found, "the SQLite file was not found"
    return found


def postgres_rows(database) -> dict:
    tables = [
        row[0]
        for row in database.execute_sql(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        ).fetchall()
    ]
    assert "executor" in tables or any("executor" in t for t in tables), tables
    dump = {}
    for table in tables:
        rows = database.execute_sql(f'SELECT row_to_json(t)::text FROM "{table}" t').fetchall()
        dump[f"postgresql table {table}"] = "\n".join(row[0] for row in rows)
    return dump


@pytest.fixture
def flowker_errors(monkeypatch):
    """The message of every FlowkerError created during the test (exception text)."""
    from flowker.errors import FlowkerError

    messages: list[str] = []
    original = FlowkerError.__init__

    def spy(self, message, *args, **kwargs):
        messages.append(f"{type(self).__name__}: {message}")
        original(self, message, *args, **kwargs)

    monkeypatch.setattr(FlowkerError, "__init__", spy)
    return messages


@pytest.fixture
def thread_exceptions(monkeypatch):
    found: list[str] = []

    def hook(args):
        import traceback

        found.append("".join(traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback)))

    monkeypatch.setattr(threading, "excepthook", hook)
    return found


@pytest.fixture
def issued_tokens(monkeypatch):
    """Every token response Flowker accepted (access, refresh and ID tokens): canaries too."""
    from flowker.auth import token_client

    tokens: list[str] = []
    original = token_client.TokenClient._cached

    def spy(self, token, *args, **kwargs):
        for name in ("access_token", "refresh_token", "id_token"):
            if isinstance(token.get(name), str):
                tokens.append(token[name])
        return original(self, token, *args, **kwargs)

    monkeypatch.setattr(token_client.TokenClient, "_cached", spy)
    return tokens


def test_no_canary_leaks_anywhere(
    make_app,
    database,
    database_url,
    canary_providers,
    hardening_tls,
    debug_logs,
    debug_json_logs,
    flowker_errors,
    thread_exceptions,
    issued_tokens,
    monkeypatch,
):
    base_canaries, oidc, users = canary_providers
    canaries = Canaries(values=dict(base_canaries.values), pairs=dict(base_canaries.pairs))
    # Flowker's sessions verify TLS with requests' default bundle: make it the test CA.
    monkeypatch.setattr(requests.adapters, "DEFAULT_CA_BUNDLE_PATH", hardening_tls.ca)
    # The hostile issuers speak plain HTTP on 127.0.0.1 (oauthlib's own development switch).
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    users.reset()

    world_ref: dict = {}
    with (
        LocalHTTPServer(resource_handler(world_ref)) as resource,
        LocalHTTPServer(hostile_issuer_handler(world_ref)) as hostile,
        LocalHTTPServer(elsewhere_handler) as elsewhere,
    ):
        minted: list = []
        kinds, env = build_kinds(
            canaries,
            oidc.issuer,
            users.issuer,
            hostile.url,
            JwtChecker(oidc.issuer, hardening_tls.ca),
            JwtChecker(users.issuer, hardening_tls.ca),
            minted,
        )
        world = CanaryWorld(canaries, env, kinds, resource, hostile, elsewhere, minted=minted)
        world_ref["world"] = world
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        # A queue worker runs the asynchronous run, with the secrets in this process.
        app = make_app(retry_max_attempts="3", cb_failure_threshold="3", cb_recovery_seconds="600", queue_concurrency=1)
        client = RecordingClient(app)
        outcomes = drive(client, world, resource.url)

    # The run really used the secrets: right credentials passed, wrong ones failed.
    check_outcomes(outcomes, world)
    assert users.stats()["byGrant"].get("refresh_token", 0) >= 1, users.stats()
    assert world.seen_tokens and issued_tokens

    # Tokens obtained along the way are secrets too.
    for index, token in enumerate(sorted(set(world.seen_tokens + issued_tokens + world.minted + world.minted_refresh))):
        canaries.values[f"obtained-token-{index}"] = token

    # Flowker's own secrets: the API key and the Fernet key.
    canaries.values["flowker-api-key"] = API_KEY
    canaries.values["flowker-secret-key"] = SECRET_KEY

    # Every kind that authenticates was redirected to the other origin twice (the probe's
    # end-to-end stage and a run), and nothing its auth added went along.
    landed = [request.path for request in world.elsewhere.requests]
    for kind in world.kinds:
        if not kind.fails_to_authenticate:
            assert f"/landed/{kind.name}/health" in landed and f"/landed/{kind.name}/redirect" in landed, (
                kind.name,
                landed,
            )
    assert not credentials_sent_elsewhere(world), credentials_sent_elsewhere(world)

    haystacks = {f"API response #{i}": text for i, text in enumerate(client.responses)}
    haystacks.update(
        {
            f"request to the other origin #{i}": json.dumps(
                {"path": r.path, "query": r.query_string, "headers": r.headers, "body": r.body.decode("latin-1")}
            )
            for i, r in enumerate(world.elsewhere.requests)
        }
    )
    haystacks["DEBUG logs"] = debug_logs.text
    haystacks["DEBUG logs as JSON lines"] = debug_json_logs.text
    haystacks.update({f"Flowker error #{i}": text for i, text in enumerate(flowker_errors)})
    haystacks.update({f"thread exception #{i}": text for i, text in enumerate(thread_exceptions)})
    if database_url.startswith("sqlite"):
        database.close()  # the WAL stays (no checkpoint on close with other connections) - read all of it
        stored = sqlite_files(database_url)
    else:
        stored = postgres_rows(database)
    haystacks.update(stored)
    # Literal secrets are there, encrypted: one token per literal secret field at least.
    literal_fields = sum(
        1
        for kind in world.kinds
        for value in kind.authentication.get("config", {}).values()
        if isinstance(value, str) and value in canaries.values.values()
    )
    encrypted = sum(
        str(text if isinstance(text, str) else text.decode("latin-1")).count("$encrypted") for text in stored.values()
    )
    assert literal_fields >= 8 and encrypted >= literal_fields, (literal_fields, encrypted)
    assert debug_logs.records > 100, "the DEBUG capture saw almost nothing"
    assert "urllib3" in debug_logs.text and "requests_oauthlib" in debug_logs.text
    assert "flowker.workflow" in debug_logs.text  # the log action wrote the echoed bodies
    assert "partner=" in debug_logs.text  # urllib3 wrote the request line with the query-string key
    assert "auth=" in debug_logs.text  # ... for the literal key too (the probe's and the runs')
    # The JSON lines: one access line per request, with execution and failed-step lines.
    documents = [json.loads(line) for line in debug_json_logs.lines]
    access = [doc for doc in documents if doc["logger"] == "flowker.access"]
    assert len(access) == len(client.responses), (len(access), len(client.responses))
    assert {doc["principal"] for doc in access} == {"ci-bot"}
    ended = [doc for doc in documents if doc["logger"] == "flowker.executions" and "node" not in doc]
    failed_steps = [doc for doc in documents if doc["logger"] == "flowker.executions" and "node" in doc]
    assert len(ended) >= len(world.kinds) and failed_steps

    leaks = find_leaks(canaries.needles(), haystacks)
    assert not leaks, leak_report(leaks)


def drive(client: RecordingClient, world: CanaryWorld, base_url: str) -> dict:
    """Everything the API offers around secrets; returns {kind: [(mode, execution results)]}."""
    canaries = world.canaries
    for media, body, text in hostile_bodies(canaries, base_url):
        if media == "json":
            response = client.post("/v1/executors", json=body)
        else:
            response = client.post("/v1/executors", body=text, headers={"Content-Type": "application/yaml"})
        assert response.status_code in (400, 422), (response.status_code, response.text[:300])

    executors, workflows = {}, {}
    for kind in world.kinds:
        body = executor_body(kind, base_url)
        if kind.name == "bearer":  # one of them as YAML, the way `flowker apply` may send it
            import yaml

            response = client.post(
                "/v1/executors",
                body=yaml.safe_dump({"kind": "Executor", **body}),
                headers={"Content-Type": "application/yaml"},
            )
        else:
            response = client.post("/v1/executors", json=body)
        assert response.status_code == 201, (kind.name, response.text)
        executors[kind.name] = response.json["id"]
        response = client.post("/v1/workflows", json=workflow_body(kind))
        assert response.status_code == 201, (kind.name, response.text)
        workflows[kind.name] = response.json["workflowId"]
        response = client.post(f"/v1/workflows/{workflows[kind.name]}/activate")
        assert response.status_code == 200, (kind.name, response.text)

    # Reads, a PATCH (secrets decrypted and encrypted again) and a PUT of the body as read.
    client.all_pages("/v1/executors")
    for name, executor_id in executors.items():
        view = client.get(f"/v1/executors/{executor_id}").json
        if name in ("basic", "occ-basic"):
            patched = client("PATCH", f"/v1/executors/{executor_id}", json={"description": "patched"})
            assert patched.status_code == 200, patched.text
            as_read = {key: view[key] for key in ("name", "baseUrl", "endpoints", "authentication")}
            replaced = client("PUT", f"/v1/executors/{executor_id}", json=as_read)
            assert replaced.status_code == 200, replaced.text

    # The connectivity probe of every executor.
    for name, executor_id in executors.items():
        response = client.post(f"/v1/executors/{executor_id}/test")
        assert response.status_code == 200, (name, response.text)
        if not world.kind(name).fails_to_authenticate:
            assert response.json["overallStatus"] == "passed", (name, response.json)

    outcomes: dict = {}
    for kind in world.kinds:
        for index, mode in enumerate(kind.modes):
            headers = {"Prefer": "respond-async"} if kind.name == "bearer-env" and index == 0 else {}
            response = client.post(
                f"/v1/workflows/{workflows[kind.name]}/executions", json={"inputData": {"mode": mode}}, headers=headers
            )
            assert response.status_code in (201, 202), (kind.name, mode, response.text)
            execution_id = response.json["executionId"]
            if response.status_code == 202:
                settle(client, execution_id)
            results = client.get(f"/v1/executions/{execution_id}/results").json
            outcomes.setdefault(kind.name, []).append((mode, results))

    # A webhook whose verify_token is a literal secret; one call with it, one with a wrong one.
    verify_token = canaries.new("webhook-verify-token")
    response = client.post("/v1/workflows", json=webhook_workflow(verify_token, "bearer"))
    assert response.status_code == 201, response.text
    webhook_id = response.json["workflowId"]
    assert client.post(f"/v1/workflows/{webhook_id}/activate").status_code == 200
    client.get(f"/v1/workflows/{webhook_id}")
    good = client.post("/v1/webhooks/canary", json={"mode": "ok"}, headers={"X-Webhook-Token": verify_token})
    assert good.status_code == 201, good.text
    bad = client.post(
        "/v1/webhooks/canary", json={"mode": "ok"}, headers={"X-Webhook-Token": canaries.new("webhook-wrong-token")}
    )
    assert bad.status_code == 401, bad.text

    # Every list and record the API keeps.
    client.all_pages("/v1/workflows")
    for execution in client.all_pages("/v1/executions"):
        client.get(f"/v1/executions/{execution['executionId']}/results")
    events = client.all_pages("/v1/audit-events")
    assert len(events) > 100
    assert client.get(f"/v1/audit-events/{events[0]['eventId']}/verify").json["isValid"] is True
    client.get("/v1/dashboards/executions")
    return outcomes


def step(results: dict, node_id: str) -> dict:
    return next(s for s in results["stepResults"] if s["nodeId"] == node_id)


def check_outcomes(outcomes: dict, world: CanaryWorld) -> None:
    for kind in world.kinds:
        runs = outcomes[kind.name]
        if kind.fails_to_authenticate:
            for mode, results in runs:
                call = step(results, "call")
                assert results["status"] == "failed", (kind.name, mode)
                if kind.error_code == "FLK-0521":  # refused before any call: the message says why
                    assert "authentication.config.secret must be at least 16 characters long" in str(call), call
                else:
                    assert call["callDetails"].get("errorCode") == kind.error_code, (kind.name, call)
            continue
        by_mode = [(mode, results["status"], step(results, "call")) for mode, results in runs]
        (
            (ok, _, ok_call),
            (_, moved, moved_call),
            (_, denied, denied_call),
            (_, recover, recover_call),
            (_, flaky, flaky_call),
            (_, last, last_call),
        ) = by_mode
        assert runs[0][1]["status"] == "completed", (kind.name, ok_call)
        assert moved == "completed" and moved_call["output"]["body"] == {"landed": True}, (kind.name, moved_call)
        assert denied == "failed" and denied_call["callDetails"]["statusCode"] == 401, (kind.name, denied_call)
        assert recover == "completed" and recover_call["attempts"] == 3, (kind.name, recover_call)
        assert flaky == "failed" and flaky_call["attempts"] == 3, (kind.name, flaky_call)
        assert last == "failed" and last_call["callDetails"]["errorCode"] == "FLK-0507", (kind.name, last_call)
        echo = runs[0][1]["finalOutput"]["echo"]
        assert echo["ok"] is True and json.dumps(echo)  # the echo was stored, scrubbed

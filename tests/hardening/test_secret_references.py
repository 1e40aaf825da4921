"""Secret references are confined (DESIGN §6), through the REST API and the real runner,
on both backends: an executor whose ``api_key`` (sent in the query string to a URL of the
caller's choice) is a ``{$file}``/``{$env}`` reference to anything but an allowed secret
is refused when it is saved (422 FLK-0007 naming the field and the rule), and, when the
reference reaches the database anyway (planted there, or the file changed after the
save), the step fails at call time with FLK-0007 and the recording stub receives nothing.
"""

from __future__ import annotations

import os
import secrets as random_secrets
from dataclasses import dataclass
from pathlib import Path

import pytest

from flowker.local_server import LocalHTTPServer
from flowker.storage.models import Executor

CANARY_MARK = "cnsecretref"


@dataclass
class World:
    """The files and environment one test's cases point at."""

    secrets_dir: Path
    allowed_file: Path
    outside_file: Path
    config_file: Path
    tls_key: Path
    tls_cert: Path
    canaries: list


@pytest.fixture
def world(tmp_path, monkeypatch) -> World:
    """An allowed secrets folder holding one good secret and, to prove the deny list wins
    over the allow list, Flowker's own config file and TLS pair (and a hard link to the
    key); a canary file outside it; canaries in the host environment."""
    canaries = []

    def canary_text(label: str) -> str:
        value = f"{CANARY_MARK}-{label}-{random_secrets.token_urlsafe(12)}"
        canaries.append(value)
        return value

    secrets_dir = tmp_path / "run-secrets"
    secrets_dir.mkdir()
    allowed = secrets_dir / "partner-key"
    allowed.write_text("allowed-partner-key-123456\n")
    outside_dir = tmp_path / "elsewhere"
    outside_dir.mkdir()
    outside = outside_dir / "shadow"
    outside.write_text(canary_text("shadow") + "\n")
    config_file = secrets_dir / "flowker.yaml"
    config_file.write_text(f"api_keys: ci-bot:{canary_text('config')}\n")
    tls_key = secrets_dir / "server.key"
    tls_key.write_text(f"-----BEGIN PRIVATE KEY-----\n{canary_text('tlskey')}\n-----END PRIVATE KEY-----\n")
    tls_cert = secrets_dir / "server.crt"
    tls_cert.write_text(f"-----BEGIN CERTIFICATE-----\n{canary_text('tlscert')}\n-----END CERTIFICATE-----\n")
    os.link(tls_key, secrets_dir / "innocent-looking")
    (secrets_dir / "escape").symlink_to(outside)
    os.mkfifo(secrets_dir / "fifo")
    (secrets_dir / "folder").mkdir()
    monkeypatch.setenv("SCORER_TOKEN", "allowed-env-token-123456")
    monkeypatch.setenv("HOME", canary_text("home"))
    monkeypatch.setenv("PATH", os.environ.get("PATH", "") + ":" + canary_text("path"))
    monkeypatch.setenv("FLOWKER_API_KEYS", canary_text("apikeys"))
    return World(secrets_dir, allowed, outside, config_file, tls_key, tls_cert, canaries)


# case name -> (reference builder, the rule the refusal states)
REFUSED = {
    "config-file": (lambda w: {"$file": str(w.config_file)}, "one of Flowker's own files"),
    "tls-key": (lambda w: {"$file": str(w.tls_key)}, "one of Flowker's own files"),
    "tls-cert": (lambda w: {"$file": str(w.tls_cert)}, "one of Flowker's own files"),
    "tls-key-hard-link": (lambda w: {"$file": str(w.secrets_dir / "innocent-looking")}, "one of Flowker's own files"),
    "file-outside-the-dirs": (lambda w: {"$file": str(w.outside_file)}, "must lie under FLOWKER_SECRET_FILE_DIRS"),
    "etc-passwd": (lambda w: {"$file": "/etc/passwd"}, "must lie under FLOWKER_SECRET_FILE_DIRS"),
    "dot-dot-traversal": (
        lambda w: {"$file": str(w.secrets_dir) + "/../../../../../../etc/passwd"},
        "must lie under FLOWKER_SECRET_FILE_DIRS",
    ),
    "symlink-out": (lambda w: {"$file": str(w.secrets_dir / "escape")}, "must lie under FLOWKER_SECRET_FILE_DIRS"),
    "dev-fd-2": (lambda w: {"$file": "/dev/fd/2"}, "must lie under FLOWKER_SECRET_FILE_DIRS"),
    "proc-self-environ": (lambda w: {"$file": "/proc/self/environ"}, "must lie under FLOWKER_SECRET_FILE_DIRS"),
    "fifo": (lambda w: {"$file": str(w.secrets_dir / "fifo")}, "is not a regular file"),
    "directory": (lambda w: {"$file": str(w.secrets_dir / "folder")}, "is not a regular file"),
    "env-PATH": (lambda w: {"$env": "PATH"}, "is not allowed by FLOWKER_SECRET_ENV_ALLOW (SCORER_*)"),
    "env-HOME": (lambda w: {"$env": "HOME"}, "is not allowed by FLOWKER_SECRET_ENV_ALLOW (SCORER_*)"),
    "env-FLOWKER_API_KEYS": (lambda w: {"$env": "FLOWKER_API_KEYS"}, "Flowker's own setting"),
}


@pytest.fixture
def stub():
    """The caller's chosen target: records every request, answers 200."""
    server = LocalHTTPServer(lambda request: (200, {}, {"ok": True}))
    with server:
        yield server


def client_for(make_app, world: World, **overrides):
    values = {"secret_file_dirs": str(world.secrets_dir), "secret_env_allow": "SCORER_*", **overrides}
    settings = make_app.settings(**values)
    settings = settings.replace(
        config_file=str(world.config_file), tls_keyfile=str(world.tls_key), tls_certfile=str(world.tls_cert)
    )
    return make_app.client(make_app(settings))


def executor_body(base_url: str, key_reference: dict) -> dict:
    return {
        "name": "exfil",
        "baseUrl": base_url,
        "endpoints": [{"name": "grab", "path": "/grab", "method": "GET", "timeout": 5}],
        "authentication": {"type": "api_key", "config": {"key": key_reference, "location": "query"}},
    }


def setup_run(client, base_url: str, key_reference: dict) -> tuple[str, str]:
    created = client.simulate_post("/v1/executors", json=executor_body(base_url, key_reference))
    assert created.status_code == 201, created.text
    workflow = {
        "name": "grab",
        "nodes": [
            {"id": "start", "type": "trigger", "data": {"triggerType": "manual"}},
            {"id": "grab", "type": "executor", "data": {"executor": "exfil", "endpoint": "grab"}},
        ],
        "edges": [{"source": "start", "target": "grab"}],
    }
    workflow_id = client.simulate_post("/v1/workflows", json=workflow).json["workflowId"]
    assert client.simulate_post(f"/v1/workflows/{workflow_id}/activate").status_code == 200
    return created.json["id"], workflow_id


def run_step(client, workflow_id: str) -> tuple[dict, str]:
    started = client.simulate_post(f"/v1/workflows/{workflow_id}/executions", json={"inputData": {}})
    assert started.status_code == 201, started.text
    assert started.json["status"] == "failed", started.text
    results = client.simulate_get(f"/v1/executions/{started.json['executionId']}/results")
    step = next(step for step in results.json["stepResults"] if step["nodeId"] == "grab")
    # The step's code is in its audit entry (no call was made, so there are no call details).
    audit = client.simulate_get(
        "/v1/audit-events", params={"eventType": "STEP_FAILED", "limit": 100, "resourceId": started.json["executionId"]}
    )
    entry = next(item for item in audit.json["items"] if item["context"].get("nodeId") == "grab")
    step["errorCode"] = entry["metadata"].get("errorCode")
    return step, started.text + results.text + audit.text


def plant(executor_id: str, key_reference: dict) -> None:
    """Write a reference straight into the database, past the save-time check (a new
    version, as any change makes, so the runner does not reuse an older client)."""
    row = Executor.get_by_id(executor_id)
    spec = dict(row.spec)
    spec["authentication"] = {"type": "api_key", "config": {"key": key_reference, "location": "query"}}
    Executor.update(spec=spec, version=row.version + 1).where(Executor.id == executor_id).execute()


def assert_nothing_leaked(world: World, *texts: str) -> None:
    for text in texts:
        for canary in world.canaries:
            assert canary not in text


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_refused_reference_is_refused_when_saved(make_app, world, stub, case):
    client = client_for(make_app, world)
    make_reference, rule = REFUSED[case]
    response = client.simulate_post("/v1/executors", json=executor_body(stub.url, make_reference(world)))
    assert response.status_code == 422, response.text
    assert response.json["code"] == "FLK-0007" and response.json["title"] == "Secret Reference Refused"
    assert response.json["message"].startswith("authentication.config.key: "), response.json["message"]
    assert rule in response.json["message"], response.json["message"]
    assert response.json["details"][0]["path"] == "$.authentication.config.key." + next(iter(make_reference(world)))
    assert client.simulate_get("/v1/executors").json["items"] == []  # nothing was stored
    assert_nothing_leaked(world, response.text)
    assert stub.requests == []


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_refused_reference_in_the_database_fails_the_step_and_sends_nothing(make_app, world, stub, case):
    client = client_for(make_app, world)
    executor_id, workflow_id = setup_run(client, stub.url, {"$file": str(world.allowed_file)})
    step, _ = run_step_ok(client, workflow_id, stub)
    make_reference, rule = REFUSED[case]
    plant(executor_id, make_reference(world))
    step, text = run_step(client, workflow_id)
    assert step["errorCode"] == "FLK-0007", step
    assert rule in step["errorMessage"] and "authentication.config.key" in step["errorMessage"], step
    assert stub.requests == [], [request.path for request in stub.requests]
    probe = client.simulate_post(f"/v1/executors/{executor_id}/test")
    stages = {stage["name"]: stage for stage in probe.json["stages"]}
    assert stages["authentication"]["status"] == "failed" and rule in stages["authentication"]["error"], probe.text
    # The connectivity stage reaches the base URL without credentials; nothing else is sent.
    assert [(request.path, request.query_string) for request in stub.requests] in ([], [("/", "")]), probe.text
    audit = client.simulate_get("/v1/audit-events", params={"limit": 100}).text
    assert_nothing_leaked(world, text, probe.text, audit)


def run_step_ok(client, workflow_id: str, stub) -> tuple[dict, str]:
    """The allowed reference works: the stub gets the allowed secret, then is cleared."""
    started = client.simulate_post(f"/v1/workflows/{workflow_id}/executions", json={"inputData": {}})
    assert started.status_code == 201 and started.json["status"] == "completed", started.text
    assert "api_key=allowed-partner-key-123456" in stub.requests[-1].query_string
    stub.requests.clear()
    return started.json, started.text


def test_a_file_changed_after_the_save_is_checked_again_at_call_time(make_app, world, stub):
    """A secret not mounted yet is accepted at save time; what is there when the call
    is made decides: a symlink out, then a FIFO, are refused; a regular file is read."""
    client = client_for(make_app, world)
    later = world.secrets_dir / "mounted-later"
    _, workflow_id = setup_run(client, stub.url, {"$file": str(later)})
    step, _ = run_step(client, workflow_id)
    assert step["errorCode"] == "FLK-0005" and "cannot be read" in step["errorMessage"], step  # unavailable
    later.symlink_to(world.outside_file)
    step, text = run_step(client, workflow_id)
    assert step["errorCode"] == "FLK-0007", step
    assert "must lie under FLOWKER_SECRET_FILE_DIRS" in step["errorMessage"]
    later.unlink()
    os.mkfifo(later)
    step, text2 = run_step(client, workflow_id)
    assert "is not a regular file" in step["errorMessage"], step
    assert stub.requests == []
    later.unlink()
    later.write_text("mounted-partner-key-654321\n")
    started = client.simulate_post(f"/v1/workflows/{workflow_id}/executions", json={"inputData": {}})
    assert started.json["status"] == "completed", started.text
    assert [request.query_string for request in stub.requests] == ["api_key=mounted-partner-key-654321"]
    assert_nothing_leaked(world, text, text2)


def test_an_env_allow_list_change_after_the_save_is_checked_again_at_call_time(make_app, world, stub):
    """Saved under one allow-list, run under a narrower one (a restart with new settings)."""
    client = client_for(make_app, world, secret_env_allow="SCORER_*,PARTNER_*")
    os.environ["PARTNER_TOKEN"] = "partner-env-token-123456"
    try:
        _, workflow_id = setup_run(client, stub.url, {"$env": "PARTNER_TOKEN"})
        narrower = client_for(make_app, world)
        step, _ = run_step(narrower, workflow_id)
    finally:
        del os.environ["PARTNER_TOKEN"]
    assert step["errorCode"] == "FLK-0007", step
    assert "$env PARTNER_TOKEN is not allowed by FLOWKER_SECRET_ENV_ALLOW (SCORER_*)" in step["errorMessage"]
    assert stub.requests == []


def test_allowed_references_still_work(make_app, world, stub):
    client = client_for(make_app, world)
    _, workflow_id = setup_run(client, stub.url, {"$env": "SCORER_TOKEN"})
    started = client.simulate_post(f"/v1/workflows/{workflow_id}/executions", json={"inputData": {}})
    assert started.json["status"] == "completed", started.text
    assert stub.requests[-1].query_string == "api_key=allowed-env-token-123456"


def test_production_resolves_no_env_reference_until_allowed(make_app, world):
    """Production's default allow-list is empty; setting one opens exactly those names."""
    production = {"env": "production", "secret_file_dirs": str(world.secrets_dir)}
    client = make_app.client(make_app(make_app.settings(**production)))
    body = executor_body("https://api.example.com", {"$env": "SCORER_TOKEN"})
    refused = client.simulate_post("/v1/executors", json=body, protocol="https")
    assert refused.status_code == 422 and refused.json["code"] == "FLK-0007", refused.text
    assert "$env SCORER_TOKEN is not allowed by FLOWKER_SECRET_ENV_ALLOW (none set)" in refused.json["message"]
    opened = make_app.client(make_app(make_app.settings(**production, secret_env_allow="SCORER_*")))
    assert opened.simulate_post("/v1/executors", json=body, protocol="https").status_code == 201
    path_body = executor_body("https://api.example.com", {"$env": "PATH"}) | {"name": "other"}
    assert opened.simulate_post("/v1/executors", json=path_body, protocol="https").json["code"] == "FLK-0007"


def test_a_webhook_verify_token_is_held_to_the_same_rules(make_app, world):
    client = client_for(make_app, world)
    workflow = {
        "name": "hook",
        "nodes": [
            {
                "id": "start",
                "type": "trigger",
                "data": {
                    "triggerType": "webhook",
                    "path": "/hook",
                    "method": "POST",
                    "verify_token": {"$file": "/etc/passwd"},
                },
            },
            {"id": "out", "type": "action", "data": {"actionType": "set_output", "output": {"ok": True}}},
        ],
        "edges": [{"source": "start", "target": "out"}],
    }
    response = client.simulate_post("/v1/workflows", json=workflow)
    assert response.status_code == 422 and response.json["code"] == "FLK-0007", response.text
    assert response.json["message"].startswith("nodes[0].data.verify_token: $file /etc/passwd must lie under")

"""``flowker serve`` as a real process (gunicorn, 2 gthread workers) on SQLite and PostgreSQL:
specs from YAML over REST, runs (sync, async, webhook, idempotent replay), results, the
audit chain, start-up options, and the SIGTERM drain."""

from __future__ import annotations

import json
import signal
import threading

import pytest

from e2e_helpers import (
    API_KEY,
    GENERATED_KEY,
    SCORER_TOKEN,
    api_session,
    executor_yaml,
    flowker_env,
    poll,
    run_flowker,
    workflow_yaml,
    write_specs,
)

YAML = {"Content-Type": "application/yaml"}


def create_from_yaml(api, url: str, executor: str, workflow: str) -> str:
    """Create an executor and a workflow from YAML, activate the workflow; its id."""
    response = api.post(f"{url}/v1/executors", data=executor, headers=YAML)
    assert response.status_code == 201, response.text
    assert set(response.json()) >= {"id", "name", "status", "createdAt"}
    response = api.post(f"{url}/v1/workflows", data=workflow, headers=YAML)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["status"] == "draft" and created["version"] == 1
    response = api.post(f"{url}/v1/workflows/{created['workflowId']}/activate")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "active"
    return created["workflowId"]


def all_audit_events(api, url: str) -> list[dict]:
    items, cursor = [], None
    for _ in range(1000):
        params = {"limit": 100, "sortOrder": "ASC", **({"cursor": cursor} if cursor else {})}
        response = api.get(f"{url}/v1/audit-events", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        items.extend(page["items"])
        cursor = page.get("nextCursor")
        if not page["hasMore"]:
            return items
    raise AssertionError("audit event pages never ended")


def verify_chain(api, url: str) -> dict:
    """Verify the chain up to its newest entry; the verification and the entry count."""
    events = all_audit_events(api, url)
    newest = events[-1]
    response = api.get(f"{url}/v1/audit-events/{newest['eventId']}/verify")
    assert response.status_code == 200, response.text
    verification = response.json()
    assert verification["isValid"] is True, verification
    assert verification["totalChecked"] == len(events)
    return verification


def test_yaml_specs_runs_results_and_audit_chain(start_server, scorer):
    server = start_server()
    api, url = api_session(), server.url
    workflow_id = create_from_yaml(api, url, executor_yaml(scorer.url), workflow_yaml())

    # Synchronous (the default): 201 once the run has finished.
    response = api.post(f"{url}/v1/workflows/{workflow_id}/executions", json={"inputData": {"amount": 42}})
    assert response.status_code == 201, response.text
    execution = response.json()
    assert execution["status"] == "completed" and execution["workflowId"] == workflow_id
    results = api.get(f"{url}/v1/executions/{execution['executionId']}/results")
    assert results.status_code == 200, results.text
    assert results.json()["finalOutput"] == {"label": "scored", "score": 42, "amount": 42}
    steps = {step["nodeId"]: step for step in results.json()["stepResults"]}
    assert steps["score"]["status"] == "completed" and steps["done"]["status"] == "completed"
    call = scorer.requests[-1]
    assert call.path == "/score" and call.json() == {"amount": 42}
    assert call.header("Authorization") == f"Bearer {SCORER_TOKEN}"

    # Asynchronous: 202 at once, then poll.
    response = api.post(
        f"{url}/v1/workflows/{workflow_id}/executions",
        json={"inputData": {"amount": 7}},
        headers={"Prefer": "respond-async"},
    )
    assert response.status_code == 202, response.text
    execution_id = response.json()["executionId"]
    finished = poll(
        lambda: api.get(f"{url}/v1/executions/{execution_id}").json(),
        lambda body: body["status"] in ("completed", "failed"),
        "the async execution",
    )
    assert finished["status"] == "completed", finished
    output = api.get(f"{url}/v1/executions/{execution_id}/results").json()["finalOutput"]
    assert output["score"] == 7

    # Webhook: the active workflow owning POST /e2e/score runs with the JSON body as input.
    response = api.post(f"{url}/v1/webhooks/e2e/score", json={"amount": 55})
    assert response.status_code == 201, response.text
    webhook_run = response.json()["executionId"]
    assert api.get(f"{url}/v1/executions/{webhook_run}/results").json()["finalOutput"]["score"] == 55

    # Idempotent replay: the same key returns the first execution and never runs again.
    keyed = {"Idempotency-Key": "e2e-order-1"}
    first = api.post(f"{url}/v1/workflows/{workflow_id}/executions", json={"inputData": {"amount": 3}}, headers=keyed)
    assert first.status_code == 201, first.text
    calls = len(scorer.requests)
    replay = api.post(f"{url}/v1/workflows/{workflow_id}/executions", json={"inputData": {"amount": 3}}, headers=keyed)
    assert replay.status_code == 200, replay.text
    assert replay.json()["executionId"] == first.json()["executionId"]
    other_body = api.post(
        f"{url}/v1/workflows/{workflow_id}/executions", json={"inputData": {"amount": 4}}, headers=keyed
    )
    assert other_body.status_code == 422, other_body.text
    assert len(scorer.requests) == calls

    # Every execution is listed; the chain verifies and holds no secret.
    listed = api.get(f"{url}/v1/executions", params={"workflowId": workflow_id, "limit": 100}).json()["items"]
    assert len(listed) == 4
    verify_chain(api, url)
    events = all_audit_events(api, url)
    types = {event["eventType"] for event in events}
    assert {
        "EXECUTOR_CREATED",
        "WORKFLOW_CREATED",
        "WORKFLOW_ACTIVATED",
        "EXECUTION_STARTED",
        "EXECUTION_COMPLETED",
        "STEP_COMPLETED",
    } <= types
    dump = json.dumps(events)
    assert SCORER_TOKEN not in dump and API_KEY not in dump
    assert all(event["actor"]["id"] != API_KEY for event in events)


def test_sigterm_turns_readiness_503_while_the_run_in_flight_finishes(start_server, scorer):
    server = start_server(drain_seconds=3.0)
    api, url = api_session(), server.url
    workflow_id = create_from_yaml(api, url, executor_yaml(scorer.url), workflow_yaml(endpoint="slow"))
    assert api.get(f"{url}/health/ready").status_code == 200
    scorer.stub.slow_seconds = 3.0

    outcome = {}

    def run_slowly():
        try:
            outcome["response"] = api_session().post(
                f"{url}/v1/workflows/{workflow_id}/executions", json={"inputData": {"amount": 9}}, timeout=60
            )
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            outcome["error"] = exc

    client = threading.Thread(target=run_slowly)
    client.start()
    try:
        assert scorer.stub.slow_started.wait(timeout=20), "the run never reached the executor"
        server.send(signal.SIGTERM)
        poll(
            lambda: api.get(f"{url}/health/ready", timeout=5).status_code,
            lambda status: status == 503,
            "readiness to answer 503",
            timeout=2.5,
        )
        refused = api.post(
            f"{url}/v1/workflows/{workflow_id}/executions", json={"inputData": {"amount": 1}}, timeout=10
        )
        assert refused.status_code == 503, refused.text
        assert refused.json()["code"] == "FLK-0801"
    finally:
        client.join(timeout=60)
    assert "error" not in outcome, outcome.get("error")
    response = outcome["response"]
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "completed"
    assert server.wait_exit() == 0
    assert "draining" in server.output


def test_generated_key_is_printed_and_specs_are_applied_at_start(start_server, scorer, tmp_path):
    folder = write_specs(tmp_path / "specs", scorer.url)
    server = start_server("--specs", str(folder), api_keys=None)
    match = GENERATED_KEY.search(server.output)
    assert match, server.output
    key, url = match.group(1), server.url
    assert f"Try: curl -H 'X-API-Key: {key}' {url}/v1/workflows" in server.output
    assert "workflow  e2e-score" in server.output and "create -> activate" in server.output

    assert api_session("wrong-key").get(f"{url}/v1/workflows").status_code == 401
    workflows = api_session(key).get(f"{url}/v1/workflows").json()["items"]
    assert [(w["name"], w["status"]) for w in workflows] == [("e2e-score", "active")]
    response = api_session(key).post(f"{url}/v1/webhooks/e2e/score", json={"amount": 12})
    assert response.status_code == 201 and response.json()["status"] == "completed", response.text


def test_invalid_specs_at_start_stop_the_server(start_server, scorer, tmp_path):
    folder = write_specs(tmp_path / "specs", scorer.url, executor="no-such-executor")
    with pytest.raises(AssertionError, match="exited with 1"):
        start_server("--specs", str(folder))


def test_production_refuses_to_start_without_api_keys(tmp_path):
    from cryptography.fernet import Fernet

    env = flowker_env(
        f"sqlite:///{tmp_path}/flowker.db", FLOWKER_ENV="production", FLOWKER_SECRET_KEY=Fernet.generate_key().decode()
    )
    result = run_flowker(["serve", "--bind", "127.0.0.1:0"], env, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "FLOWKER_API_KEYS" in result.stderr
    assert not (tmp_path / "flowker.db").exists()


def test_certfile_without_keyfile_is_a_usage_error(tmp_path):
    certificate = tmp_path / "cert.pem"
    certificate.write_text("not used")
    result = run_flowker(["serve", "--certfile", str(certificate)], flowker_env(f"sqlite:///{tmp_path}/f.db"))
    assert result.returncode == 2
    assert "--certfile and --keyfile go together" in result.stderr


def self_signed_certificate(folder) -> tuple[str, str]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_path), str(key_path)


def test_tls_in_production_mode(start_server, tmp_path):
    from cryptography.fernet import Fernet

    cert, key = self_signed_certificate(tmp_path)
    server = start_server(
        "--certfile",
        cert,
        "--keyfile",
        key,
        env={"FLOWKER_ENV": "production", "FLOWKER_SECRET_KEY": Fernet.generate_key().decode()},
    )
    assert server.url.startswith("https://127.0.0.1:")
    api = api_session()
    api.verify = cert
    response = api.get(f"{server.url}/v1/workflows")
    assert response.status_code == 200, response.text
    assert "max-age=" in response.headers.get("Strict-Transport-Security", "")
    assert "API key (generated" not in server.output


@pytest.mark.parametrize(
    "variable,value,named",
    [
        ("FLOWKER_SECRET_KEY", "not-a-fernet-key", "FLOWKER_SECRET_KEY"),
        ("FLOWKER_SECRET_KEY", "{fernet},also-not-a-key", "key #2"),
        ("FLOWKER_TRUSTED_PROXIES", "10.0.0.0/33", "FLOWKER_TRUSTED_PROXIES"),
    ],
)
def test_a_malformed_setting_stops_serve_before_it_listens(tmp_path, variable, value, named):
    from cryptography.fernet import Fernet

    value = value.replace("{fernet}", Fernet.generate_key().decode())
    env = flowker_env(f"sqlite:///{tmp_path}/flowker.db", FLOWKER_API_KEYS=f"e2e:{API_KEY}", **{variable: value})
    result = run_flowker(["serve", "--bind", "127.0.0.1:0"], env, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert named in result.stderr and "listening" not in result.stdout
    assert value not in result.stderr or variable == "FLOWKER_TRUSTED_PROXIES"  # keys are never echoed
    assert not (tmp_path / "flowker.db").exists()  # nothing was touched


def test_production_refuses_a_short_api_key_naming_it_without_printing_it(tmp_path):
    from cryptography.fernet import Fernet

    short = "s3cr3t-but-short-0123456789"  # 27 characters
    env = flowker_env(
        f"sqlite:///{tmp_path}/flowker.db",
        FLOWKER_ENV="production",
        FLOWKER_SECRET_KEY=Fernet.generate_key().decode(),
        FLOWKER_API_KEYS=f"deploy:{short},ci:{API_KEY}",
    )
    result = run_flowker(["serve", "--bind", "127.0.0.1:0"], env, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "deploy" in result.stderr and "32 characters" in result.stderr
    assert short not in result.stdout + result.stderr and API_KEY not in result.stdout + result.stderr
    assert not (tmp_path / "flowker.db").exists()

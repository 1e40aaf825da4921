"""``flowker run`` end to end (a real subprocess) against examples/sample_service.py.

Every workflow under examples/ runs: the examples are copied to a temporary folder with
their ``http://127.0.0.1:8700`` base URLs pointed at the sample service, which a fixture
starts on a free port.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
EXAMPLE_URL = "http://127.0.0.1:8700"

SECRETS = {
    "FRAUD_API_TOKEN": "fraud-token-123456",
    "LEDGER_API_KEY": "ledger-key-123456",
    "PAYMENTS_WEBHOOK_TOKEN": "webhook-token-1",
    "KYC_CLIENT_SECRET": "kyc-client-secret-1",
    "CORE_BANKING_PASSWORD": "core-banking-pw-1",
    "ONBOARDING_WEBHOOK_TOKEN": "webhook-token-2",
    "WAREHOUSE_API_KEY": "warehouse-key-1",
    "PAYMENTS_API_TOKEN": "payments-token-1",
    "CARRIER_API_KEY": "carrier-key-1",
}

ORDER = {
    "orderId": "o-1",
    "total": 1500,
    "currency": "EUR",
    "shipping": "express",
    "address": {"city": "Berlin"},
    "payment": {"cardToken": "tok_ok"},
    "items": [{"sku": "A-1", "quantity": 2}],
}
APPLICANT = {
    "firstName": "Ada",
    "lastName": "Lovelace",
    "email": "ada@example.com",
    "country": "GB",
    "currency": "GBP",
    "document": {"number": "P1234567", "type": "PASSPORT"},
}

# workflow name -> [(input, expected subset of the final output), ...]; every branch once.
SCENARIOS = {
    "payment-approval": [
        ({"transactionId": "tx-1", "amount": 120.5, "currency": "EUR", "payer": "acct-9"}, {"decision": "APPROVED"}),
        ({"transactionId": "tx-2", "amount": 25000, "currency": "EUR", "payer": "acct-9"}, {"decision": "HOLD"}),
    ],
    "order-fulfilment": [
        (ORDER, {"status": "SHIPPED", "orderId": "o-1"}),
        ({**ORDER, "orderId": "o-2", "shipping": "standard", "total": 20}, {"status": "SHIPPED", "orderId": "o-2"}),
    ],
    "nightly-settlement": [
        ({"region": "EU", "scheduledAt": "2026-03-29T01:00:00Z"}, {"status": "SETTLED", "payments": 42}),
        ({"region": "SANDBOX", "scheduledAt": "2026-10-25T00:30:00Z"}, {"status": "NOTHING_TO_SETTLE"}),
    ],
    "customer-onboarding": [
        (APPLICANT, {"status": "ONBOARDED"}),
        ({**APPLICANT, "document": {"number": "X999", "type": "PASSPORT"}}, {"status": "MANUAL_REVIEW"}),
    ],
}


def example_workflows() -> list[Path]:
    return sorted(EXAMPLES.glob("*/workflows/*.yaml"))


@pytest.fixture(scope="module")
def sample_service():
    spec = importlib.util.spec_from_file_location("flowker_sample_service", EXAMPLES / "sample_service.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    server = module.make_sample_server("127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(scope="module")
def examples_copy(tmp_path_factory, sample_service) -> Path:
    target = tmp_path_factory.mktemp("examples") / "examples"
    shutil.copytree(EXAMPLES, target, ignore=shutil.ignore_patterns("__pycache__"))
    for path in target.rglob("*.yaml"):
        path.write_text(path.read_text().replace(EXAMPLE_URL, sample_service))
    return target


def flowker_run(*args, env_extra=None, timeout=120) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if not key.startswith("FLOWKER_")}
    # The sample OIDC issuer is plain http on loopback; requests-oauthlib needs this to use it.
    env.update(SECRETS, OAUTHLIB_INSECURE_TRANSPORT="1", **(env_extra or {}))
    return subprocess.run(
        [sys.executable, "-m", "flowker", "run", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=REPO,
    )


def test_every_example_has_scenarios():
    names = {path.stem for path in example_workflows()}
    assert names, "no example workflows found"
    assert names <= set(SCENARIOS), f"add inputs for {sorted(names - set(SCENARIOS))} to SCENARIOS"


@pytest.mark.parametrize("workflow", [p.stem for p in example_workflows()])
def test_example_runs_end_to_end(examples_copy, workflow):
    file = next(examples_copy.glob(f"*/workflows/{workflow}.yaml"))
    for input_data, expected in SCENARIOS[workflow]:
        result = flowker_run(file, "--input", json.dumps(input_data))
        assert result.returncode == 0, result.stderr
        output = json.loads(result.stdout)
        assert expected.items() <= output.items(), output
        assert "execution completed" in result.stderr
        assert " completed in " in result.stderr and "-> [1/" in result.stderr  # progress per step
        for secret in SECRETS.values():
            assert secret not in result.stdout + result.stderr


def test_failed_run_exits_1(examples_copy):
    file = examples_copy / "order-fulfilment" / "workflows" / "order-fulfilment.yaml"
    declined = {**ORDER, "orderId": "o-declined", "payment": {"cardToken": "tok_declined"}}
    result = flowker_run(file, "--input", json.dumps(declined))
    assert result.returncode == 1
    assert result.stdout == ""
    assert "HTTP 402" in result.stderr and "skipped" in result.stderr


def test_input_from_a_file_and_a_kept_database(examples_copy, tmp_path):
    from flowker.storage.database import open_database

    file = examples_copy / "payment-approval" / "workflows" / "payment-approval.yaml"
    input_file = tmp_path / "input.json"
    input_file.write_text(json.dumps(SCENARIOS["payment-approval"][0][0]))
    url = f"sqlite:///{tmp_path}/kept.db"
    executors = examples_copy / "payment-approval" / "executors"
    for _ in range(2):
        result = flowker_run(file, "--input", f"@{input_file}", "--executors", executors, "--db", url)
        assert result.returncode == 0, result.stderr
    database = open_database(url)
    with database.connection_context():
        rows = database.execute_sql("SELECT status FROM execution").fetchall()
        events = [r[0] for r in database.execute_sql("SELECT event_type FROM audit_entry ORDER BY sequence")]
    assert [r[0] for r in rows] == ["completed", "completed"]
    assert events.count("WORKFLOW_CREATED") == 1 and events.count("EXECUTION_COMPLETED") == 2
    verify = subprocess.run(
        [sys.executable, "-m", "flowker", "audit", "verify", "--db", url],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={k: v for k, v in os.environ.items() if not k.startswith("FLOWKER_")},
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_invalid_workflow_is_refused_before_running(tmp_path):
    file = tmp_path / "cyclic.yaml"
    file.write_text(
        "kind: Workflow\nname: cyclic\nnodes:\n"
        "  - {id: start, type: trigger, data: {triggerType: manual}}\n"
        "  - {id: a, type: action, data: {actionType: log, message: hi}}\n"
        "  - {id: b, type: action, data: {actionType: log, message: hi}}\n"
        "edges:\n  - {source: start, target: a}\n  - {source: a, target: b}\n  - {source: b, target: a}\n"
    )
    result = flowker_run(file)
    assert result.returncode == 1
    assert f"{file}:10:5: cycle" in result.stderr  # file:line:column
    assert "nothing was run" in result.stderr and "-> [1/" not in result.stderr


@pytest.mark.parametrize("args", [["--input", "{not json"], ["--input", "[1, 2]"], ["--input", "@/nonexistent.json"]])
def test_usage_errors_exit_2(examples_copy, args):
    file = examples_copy / "payment-approval" / "workflows" / "payment-approval.yaml"
    result = flowker_run(file, *args)
    assert result.returncode == 2, result.stderr
    assert "--input" in result.stderr


def test_missing_file_exits_2(tmp_path):
    assert flowker_run(tmp_path / "absent.yaml").returncode == 2

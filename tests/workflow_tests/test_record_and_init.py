"""`flowker run --record` (a real run, against a stub on 127.0.0.1, becomes a passing
WorkflowTest case) and `flowker init` (a scaffold that validates and tests clean)."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import yaml

from cli_runner import run_flowker
from flowker.local_server import LocalHTTPServer

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "payment-approval"
FRAUD_TOKEN = "fraud-token-0123456789-very-secret"
LEDGER_KEY = "ledger-key-9876543210-very-secret"
INPUT = '{"transactionId": "tx-1", "amount": 120.5, "currency": "EUR", "payer": "alice"}'


class PaymentServices:
    """Fraud scoring (echoing the token it got, as a careless service might) and a
    ledger that is unavailable once before it books."""

    def __init__(self):
        self.ledger_calls = 0
        self.requests = 0
        self.lock = threading.Lock()

    def __call__(self, request):
        with self.lock:
            self.requests += 1
            if request.path.startswith("/fraud/"):
                token = (request.header("Authorization") or "").removeprefix("Bearer ")
                return 200, {"X-Trace": "t-1"}, {"score": 15, "seenToken": token, "apiKey": "k-123"}
            self.ledger_calls += 1
            if self.ledger_calls == 1:
                return 503, {"Retry-After": "0"}, {"error": "busy"}
            return 201, {}, {"bookingId": "bk-1"}


def _repository(tmp_path: Path, url: str) -> Path:
    shutil.copytree(EXAMPLE / "workflows", tmp_path / "workflows")
    (tmp_path / "executors").mkdir()
    for path in (EXAMPLE / "executors").glob("*.yaml"):
        (tmp_path / "executors" / path.name).write_text(path.read_text().replace("http://127.0.0.1:8700", url))
    (tmp_path / "tests").mkdir()
    return tmp_path


def _record(folder: Path, *extra):
    return run_flowker(
        "run",
        "workflows/payment-approval.yaml",
        "--input",
        INPUT,
        "--record",
        "tests/recorded.test.yaml",
        *extra,
        cwd=folder,
        FRAUD_API_TOKEN=FRAUD_TOKEN,
        LEDGER_API_KEY=LEDGER_KEY,
        FLOWKER_RETRY_BASE_SECONDS="0.05",
    )


def test_a_recorded_run_is_a_passing_test_without_its_secrets(tmp_path):
    services = PaymentServices()
    with LocalHTTPServer(services) as server:
        folder = _repository(tmp_path, server.url)
        result = _record(folder)
        assert result.returncode == 0, result.stderr
        assert "case 'recorded run' written to tests/recorded.test.yaml" in result.stderr
        again = _record(folder, "--record-name", "recorded run")
        assert again.returncode == 0, again.stderr
    text = (folder / "tests" / "recorded.test.yaml").read_text()
    assert FRAUD_TOKEN not in text and LEDGER_KEY not in text
    document = yaml.safe_load(text)
    assert document["kind"] == "WorkflowTest" and document["workflow"] == "payment-approval"
    first, second = document["cases"]
    assert (first["name"], second["name"]) == ("recorded run", "recorded run (2)")
    assert first["input"] == {"transactionId": "tx-1", "amount": 120.5, "currency": "EUR", "payer": "alice"}
    fraud, ledger = first["fixtures"]
    assert fraud["call"] == "fraud-check.analyze"
    assert fraud["respond"]["body"]["score"] == 15
    assert fraud["respond"]["body"]["seenToken"] == "****"  # the token's value, scrubbed
    assert fraud["respond"]["body"]["apiKey"] == "****"  # a secret-looking field
    assert fraud["respond"]["headers"] == {"X-Trace": "t-1", "Content-Type": "application/json"}
    assert ledger["call"] == "payments-ledger.book-payment"
    assert [answer["status"] for answer in ledger["respond"]] == [503, 201]
    assert first["expect"]["status"] == "completed"
    assert first["expect"]["output"] == {"decision": "APPROVED", "score": 15, "bookingId": "bk-1"}
    assert first["expect"]["steps"]["book"] == {"status": "completed", "attempts": 2}
    assert first["expect"]["steps"]["review"] == "skipped"
    assert first["expect"]["calls"] == {"fraud-check.analyze": 1, "payments-ledger.book-payment": 2}
    # The second run met a ledger that had recovered: one attempt.
    assert second["expect"]["steps"]["book"] == {"status": "completed", "attempts": 1}

    replay = run_flowker("test", "tests/recorded.test.yaml", cwd=folder)  # no server any more
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "2 cases: 2 passed, 0 failed" in replay.stdout


def test_a_failed_run_is_recorded_with_its_error(tmp_path):
    with LocalHTTPServer(lambda request: (500, {}, {"error": "down"})) as server:
        folder = _repository(tmp_path, server.url)
        result = _record(folder)
    assert result.returncode == 1
    case = yaml.safe_load((folder / "tests" / "recorded.test.yaml").read_text())["cases"][0]
    assert case["expect"]["status"] == "failed" and case["expect"]["error"] == "FLK-0503"
    assert case["expect"]["steps"]["score"] == {"status": "failed", "attempts": 5}
    assert case["fixtures"] == [{"call": "fraud-check.analyze", "respond": [case["fixtures"][0]["respond"][0]] * 5}]
    replay = run_flowker("test", "tests/recorded.test.yaml", cwd=folder)
    assert replay.returncode == 0, replay.stdout + replay.stderr


def test_record_refuses_a_file_that_is_not_a_test_of_this_workflow_before_running(tmp_path):
    services = PaymentServices()
    with LocalHTTPServer(services) as server:
        folder = _repository(tmp_path, server.url)
        (folder / "tests" / "recorded.test.yaml").write_text(
            "kind: WorkflowTest\nworkflow: other\ncases: [{name: a}]\n"
        )
        result = _record(folder)
        assert result.returncode == 2
        assert "tests workflow 'other', not 'payment-approval'" in result.stderr
        (folder / "tests" / "recorded.test.yaml").write_text("just: yaml\n")
        result = _record(folder)
        assert result.returncode == 2
        assert "is not a WorkflowTest file" in result.stderr
    assert services.requests == 0  # nothing ran


def test_init_scaffolds_a_repository_that_validates_and_tests_clean(tmp_path):
    target = tmp_path / "team-workflows"
    created = run_flowker("init", target)
    assert created.returncode == 0, created.stderr
    for relative in (
        "workflows/greet-customer.yaml",
        "executors/crm.yaml",
        "tests/greet-customer.test.yaml",
        ".pre-commit-config.yaml",
        "README.md",
    ):
        assert (target / relative).is_file(), relative
    hooks = yaml.safe_load((target / ".pre-commit-config.yaml").read_text())
    assert [hook["id"] for hook in hooks["repos"][0]["hooks"]] == ["flowker-validate", "flowker-test"]

    validated = run_flowker("validate", ".", cwd=target)
    assert validated.returncode == 0, validated.stdout + validated.stderr
    tested = run_flowker("test", ".", "--coverage", cwd=target)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "3 cases: 3 passed" in tested.stdout
    assert "never taken" not in tested.stdout
    # The pre-commit hook passes changed files: one workflow finds its executors and tests.
    hooked = run_flowker("test", "workflows/greet-customer.yaml", cwd=target)
    assert hooked.returncode == 0 and "3 cases: 3 passed" in hooked.stdout

    again = run_flowker("init", target)
    assert again.returncode == 2
    assert "nothing was written" in again.stderr


def test_the_pre_commit_hooks_file_offers_flowker_test():
    hooks = {hook["id"]: hook for hook in yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())}
    assert hooks["flowker-test"]["entry"] == "flowker test"
    assert hooks["flowker-test"]["require_serial"] is True

"""Schemathesis against the served ``/openapi.json`` of a real ``flowker serve``.

Every operation of the document is exercised (coverage, fuzzing and stateful phases)
with at least 1,000 generated requests and every check schemathesis has (``--checks all``:
schema-valid data accepted, schema-invalid data refused, no server error, every response
as documented) plus ``refusals_are_documented`` (schemathesis_hooks.py). Where the
document cannot state a rule, it lists the codes that enforce it (``x-flowker-codes``);
schemathesis.toml says which statuses those are. The server's own access log counts the
requests it received and shows no 5xx either.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from e2e_helpers import API_KEY, api_session, executor_yaml, workflow_yaml

CHECKS = "all"
HERE = Path(__file__).resolve().parent
SEED = "20261129"
MIN_REQUESTS = 1000
ACCESS_LINE = re.compile(r'"(?:GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS|TRACE|CONNECT|[A-Z]+) [^"]*" (\d{3}) ')


@pytest.fixture
def database_url(tmp_path):
    """SQLite only: this run checks the API against its document, not the backend."""
    return f"sqlite:///{tmp_path}/flowker.db"


def seed_data(url: str, stub_url: str) -> None:
    """An executor, an active workflow and one run, so lists and links have something to find."""
    api = api_session()
    yaml = {"Content-Type": "application/yaml"}
    assert api.post(f"{url}/v1/executors", data=executor_yaml(stub_url), headers=yaml).status_code == 201
    created = api.post(f"{url}/v1/workflows", data=workflow_yaml(), headers=yaml)
    assert created.status_code == 201, created.text
    workflow_id = created.json()["workflowId"]
    assert api.post(f"{url}/v1/workflows/{workflow_id}/activate").status_code == 200
    run = api.post(f"{url}/v1/workflows/{workflow_id}/executions", json={"inputData": {"amount": 1}})
    assert run.status_code == 201, run.text


def failure_digest(output: str, limit: int = 120) -> str:
    """The FAILURES and ERRORS sections of schemathesis' output, lines cut short."""
    start = min((i for i in (output.find("= ERRORS ="), output.find("= FAILURES =")) if i >= 0), default=-1)
    section = output[start:] if start >= 0 else output[-6000:]
    lines = [line[:300] for line in section.splitlines() if line.strip()]
    return "\n".join(lines[:limit])


def test_schemathesis_finds_no_server_error_and_no_undocumented_response(start_server, scorer, tmp_path):
    server = start_server("--access-log", workers=2, threads=8)
    seed_data(server.url, scorer.url)
    report = tmp_path / "schemathesis.json"
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(HERE / "schemathesis.toml"),
        "run",
        f"{server.url}/openapi.json",
        "--header",
        f"X-API-Key: {API_KEY}",
        "--checks",
        CHECKS,
        "--max-examples",
        "10",
        "--seed",
        SEED,
        # One worker: CPython 3.11's ast.parse (used by Hypothesis) is not safe across threads.
        "--workers",
        "1",
        "--suppress-health-check",
        "filter_too_much",
        "--generation-database",
        "none",
        "--request-timeout",
        "30",
        "--report",
        "json",
        "--report-json-path",
        str(report),
        "--no-color",
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": str(HERE / "schemathesis_hooks.py")}
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert report.exists(), result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads(report.read_text())

    statuses = [int(code) for code in ACCESS_LINE.findall(server.output)]
    assert summary["test_cases"]["generated"] >= MIN_REQUESTS, summary["test_cases"]
    assert len(statuses) >= MIN_REQUESTS, f"the server logged only {len(statuses)} requests"
    assert summary["operations"]["tested"] == summary["operations"]["total"], summary["operations"]
    assert not [code for code in statuses if code >= 500], failure_digest(result.stdout)
    assert summary["failures"] == [], failure_digest(result.stdout)
    assert summary["errors"] == [], failure_digest(result.stdout)
    assert result.returncode == 0, failure_digest(result.stdout)

"""A fixture sequence drives retries and the breaker exactly as a real service would.

Each scenario runs one workflow twice with the same settings: once for real (`flowker
run --record` in a subprocess, against a stub HTTP server on 127.0.0.1 answering the
sequence, with real waits and the shared breaker on SQLite) and once under `flowker test`
(fixtures answering the same sequence, virtual time). Step statuses, attempt counts and
the error code must be the same.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import yaml

from cli_runner import run_flowker
from flowker.local_server import LocalHTTPServer

WORKFLOW = """\
kind: Workflow
name: parity
nodes:
  - {id: start, type: trigger, data: {triggerType: manual}}
  - {id: first, type: executor, data: {executor: svc, endpoint: op, body: {n: 1}}}
  - {id: second, type: executor, data: {executor: svc, endpoint: op, body: {n: 2}}}
  - {id: done, type: action, data: {actionType: set_output, output: {ok: true}}}
edges:
  - {source: start, target: first}
  - {source: first, target: second}
  - {source: second, target: done}
"""

EXECUTOR = """\
kind: Executor
name: svc
baseUrl: {url}
endpoints: [{{name: op, path: /op, method: POST, timeout: 5}}]
authentication: {{type: bearer, config: {{token: {{$env: PARITY_TOKEN}}}}}}
"""


class Sequence:
    """Answers successive requests with the statuses given (the last repeats)."""

    def __init__(self, statuses: list[int]):
        self.statuses = statuses
        self.served = 0
        self.lock = threading.Lock()

    def __call__(self, request):
        with self.lock:
            status = self.statuses[min(self.served, len(self.statuses) - 1)]
            self.served += 1
        return status, {}, {"served": self.served} if status < 300 else {"error": "unavailable"}


# (statuses answered in order, settings): retries, the breaker opening mid-retry, its count
# reset by a success and carried into the next step, recovery through a half-open trial,
# and a breaker still open.
SCENARIOS = {
    "recovers on the third attempt": ([503, 503, 200], {}),
    "every attempt fails": ([503], {}),
    "the breaker opens mid-retry": ([503], {"cb_failure_threshold": 3}),
    "a success resets the count, then the breaker opens in the next step": (
        [503, 200, 503, 503, 200],
        {"cb_failure_threshold": 2},
    ),
    "a half-open trial closes the breaker": ([503, 503, 200], {"cb_failure_threshold": 2, "cb_recovery_seconds": 0.25}),
    "the breaker is still open after the wait": (
        [503, 503, 200],
        {"cb_failure_threshold": 2, "cb_recovery_seconds": 30},
    ),
}
BASE = {"retry_base_seconds": 0.2, "execution_timeout_seconds": 60}


def _real_run(tmp_path: Path, statuses: list[int], settings: dict) -> dict:
    """The recorded case of a real run against the stub."""
    with LocalHTTPServer(Sequence(statuses)) as server:
        (tmp_path / "workflows").mkdir()
        (tmp_path / "executors").mkdir()
        (tmp_path / "workflows" / "parity.yaml").write_text(WORKFLOW)
        (tmp_path / "executors" / "svc.yaml").write_text(EXECUTOR.format(url=server.url))
        environment = {f"FLOWKER_{name.upper()}": str(value) for name, value in {**BASE, **settings}.items()}
        result = run_flowker(
            "run",
            tmp_path / "workflows" / "parity.yaml",
            "--record",
            tmp_path / "recorded.test.yaml",
            cwd=tmp_path,
            PARITY_TOKEN="parity-secret-token",
            **environment,
        )
    assert (tmp_path / "recorded.test.yaml").exists(), result.stderr
    return yaml.safe_load((tmp_path / "recorded.test.yaml").read_text())["cases"][0]


def _offline_run(tmp_path: Path, statuses: list[int], settings: dict):
    from flowker.plugins import load_registry
    from flowker.settings import Settings
    from flowker.runner.workflow_tests.harness import TestSuite
    from flowker.validation.loader import load_spec_text

    test = {
        "kind": "WorkflowTest",
        "workflow": "parity",
        "cases": [
            {
                "name": "the same sequence",
                "fixtures": [{"call": "svc.op", "respond": [{"status": status} for status in statuses]}],
            }
        ],
    }
    offline = Settings.from_mapping({**BASE, **settings})
    documents = [
        load_spec_text(WORKFLOW, "parity.yaml", from_file=True),
        load_spec_text(EXECUTOR.format(url="https://svc.example.com"), "svc.yaml", from_file=True),
        load_spec_text(json.dumps(test), "parity.test.yaml", from_file=True),
    ]
    suite = TestSuite(offline, load_registry(offline), documents)
    (result,) = suite.run_file(suite.test_files[0])
    return result


def _offline_view(result) -> tuple:
    steps = {}
    for step in result.outcome.steps:
        steps[step.node.id] = {"status": step.status, "attempts": step.attempts} if step.call else step.status
    failed = [step for step in result.outcome.steps if step.status == "failed"]
    return result.outcome.status, steps, failed[0].error_code if failed else None


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_the_same_sequence_gives_the_same_steps_and_attempts(tmp_path, scenario):
    statuses, settings = SCENARIOS[scenario]
    recorded = _real_run(tmp_path, statuses, settings)
    expect = recorded["expect"]
    started = time.monotonic()
    offline = _offline_run(tmp_path, statuses, settings)
    assert time.monotonic() - started < 2.0  # no real waits
    assert _offline_view(offline) == (expect["status"], expect["steps"], expect.get("error"))


def test_the_scenarios_take_the_paths_they_are_named_for(tmp_path):
    """The parity above is not vacuous: the runs differ as the scenarios say."""
    views = {name: _offline_view(_offline_run(tmp_path, *SCENARIOS[name])) for name in SCENARIOS}
    assert views["recovers on the third attempt"][1]["first"] == {"status": "completed", "attempts": 3}
    assert views["every attempt fails"][1]["first"] == {"status": "failed", "attempts": 5}
    assert views["every attempt fails"][2] == "FLK-0503"
    assert views["the breaker opens mid-retry"][1]["first"] == {"status": "failed", "attempts": 3}
    assert views["the breaker opens mid-retry"][2] == "FLK-0507"
    carried = views["a success resets the count, then the breaker opens in the next step"]
    assert carried[1]["first"] == {"status": "completed", "attempts": 2}
    assert carried[1]["second"] == {"status": "failed", "attempts": 2} and carried[2] == "FLK-0507"
    assert views["a half-open trial closes the breaker"][1]["first"] == {"status": "completed", "attempts": 3}
    still_open = views["the breaker is still open after the wait"]
    assert still_open[1]["first"] == {"status": "failed", "attempts": 2} and still_open[2] == "FLK-0507"

"""Metrics and logs of a real ``flowker serve`` with two workers, scraped by a real Prometheus.

Debian's ``prometheus`` binary (scripts/test.sh installs it) is started by the test on
loopback with a scrape config of its own (1 s interval) pointed at ``--metrics-bind``.
After N executions spread over both workers (the JSON access lines name each worker's
pid), its query API must answer ``sum(flowker_executions_total) == N``: the workers'
counts are summed, none lost or counted twice. Everything started here is stopped here,
and ``flowker serve`` removes its metrics directory when it stops.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from e2e_helpers import API_KEY, api_session, poll, write_specs

PROMETHEUS = "/usr/bin/prometheus"
METRICS_LINE = re.compile(r"Metrics \(no key\) on (http://\S+)")
WORKER_READY = re.compile(r"worker \d+ ready")
START_TIMEOUT = 60.0
MAX_EXECUTIONS = 200  # executions are added in rounds until both workers ran some; never more


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Prometheus:
    """``prometheus`` on 127.0.0.1, scraping one target every second."""

    def __init__(self, folder: Path, target: str):
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = folder / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            f"  - job_name: flowker\n    metrics_path: /metrics\n    static_configs: [{{targets: ['{target}']}}]\n"
        )
        self.log = open(folder / "prometheus.log", "w")  # noqa: SIM115 - closed by stop()
        self.process = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"prometheus exited: {(self.folder / 'prometheus.log').read_text()[-2000:]}")
            try:
                if requests.get(f"{self.url}/-/ready", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("prometheus did not become ready")
            time.sleep(0.1)

    def query(self, expression: str) -> float | None:
        answer = requests.get(f"{self.url}/api/v1/query", params={"query": expression}, timeout=5).json()
        assert answer["status"] == "success", answer
        result = answer["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=20)
        self.log.close()


@pytest.fixture
def prometheus_at(tmp_path):
    if not os.access(PROMETHEUS, os.X_OK):
        pytest.fail(f"{PROMETHEUS} is missing: scripts/test.sh installs Debian's prometheus package")
    started: list[Prometheus] = []

    def start(target: str) -> Prometheus:
        folder = tmp_path / f"prometheus-{len(started)}"
        folder.mkdir()
        server = Prometheus(folder, target)
        started.append(server)
        server.wait_ready()
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


def webhook_lines(output: str) -> list[dict]:
    """The access lines of the webhook's requests."""
    return [
        line
        for line in json_lines(output)
        if line["logger"] == "flowker.access" and line["route"] == "/v1/webhooks/{path}"
    ]


def json_lines(output: str) -> list[dict]:
    found = []
    for line in output.splitlines():
        if line.startswith("{"):
            found.append(json.loads(line))
    return found


def execute(url: str, amount: int) -> dict:
    # A connection each (Connection: close), so the workers share them out.
    response = requests.post(
        f"{url}/v1/webhooks/e2e/score",
        json={"amount": amount},
        headers={"X-API-Key": API_KEY, "Connection": "close"},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    return response.json()


def test_prometheus_sums_the_executions_of_both_workers(start_server, scorer, prometheus_at, tmp_path):
    temp = tmp_path / "tmp"  # where serve makes its private metrics directory
    temp.mkdir()
    folder = write_specs(tmp_path / "specs", scorer.url)
    metrics_port = free_port()
    server = start_server(
        "--specs",
        str(folder),
        "--metrics-bind",
        f"127.0.0.1:{metrics_port}",
        workers=2,
        threads=4,
        env={"FLOWKER_LOG_FORMAT": "json", "TMPDIR": str(temp)},
    )
    server.wait_until(lambda: len(WORKER_READY.findall(server.output)) == 2, "both workers")
    metrics_url = METRICS_LINE.search(server.output).group(1)
    assert metrics_url == f"http://127.0.0.1:{metrics_port}/metrics"
    (directory,) = list(temp.iterdir())
    assert directory.name.startswith("flowker-metrics-") and (directory.stat().st_mode & 0o777) == 0o700

    executions = 0
    pids: set[int] = set()
    with ThreadPoolExecutor(4) as pool:
        while executions < MAX_EXECUTIONS and len(pids) < 2 or executions < 20:
            results = list(pool.map(lambda amount: execute(server.url, amount), range(executions, executions + 10)))
            assert all(result["status"] == "completed" for result in results), results
            executions += len(results)
            # A worker writes its INFO lines once a second while busy (log_output.FLUSH_SECONDS).
            server.wait_until(lambda: len(webhook_lines(server.output)) >= executions, "the access lines", timeout=10)
            pids = {line["pid"] for line in webhook_lines(server.output)}
    assert len(pids) == 2, f"every execution ran on one worker ({pids})"

    prometheus = prometheus_at(f"127.0.0.1:{metrics_port}")
    total = poll(
        lambda: prometheus.query("sum(flowker_executions_total)"),
        lambda value: value == executions,
        "Prometheus to see every execution",
        timeout=60,
    )
    assert total == executions
    assert prometheus.query('sum(flowker_executions_total{workflow="e2e-score",status="completed"})') == executions
    assert prometheus.query('sum(flowker_executor_calls_total{executor="scorer",outcome="success"})') == executions
    route = 'route="/v1/webhooks/{path}"'
    assert prometheus.query(f'sum(flowker_http_requests_total{{method="POST",{route},status="201"}})') == executions

    # The API's /metrics answers the same sums, and only with a key.
    assert requests.get(f"{server.url}/metrics", timeout=10).status_code == 401
    text = api_session().get(f"{server.url}/metrics", timeout=10).text
    counted = sum(
        float(value) for value in re.findall(r"^flowker_executions_total\{[^}]*\} (\S+)$", text, re.MULTILINE)
    )
    assert counted == executions

    # Every log line is JSON, gunicorn's own included; executions end with a line each.
    lines = json_lines(server.output)
    assert any(line["logger"] == "gunicorn.error" and "Booting worker" in line["message"] for line in lines)
    ended = [line for line in lines if line["logger"] == "flowker.executions" and line.get("status") == "completed"]
    assert len(ended) == executions
    assert API_KEY not in server.output

    server.send()
    assert server.wait_exit() == 0
    assert not list(temp.iterdir()), "flowker serve left its metrics directory behind"
    with pytest.raises(requests.ConnectionError):
        requests.get(metrics_url, timeout=2)
    shutil.rmtree(temp, ignore_errors=True)

"""Helpers for the end-to-end tests: ``flowker serve`` and ``flowker apply`` as real
processes, and the specs they load.

Every loop here is bounded by a deadline; every process started is stopped by the
fixture that started it (terminate, then kill after a bounded wait).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

API_KEY = "e2e-key-0123456789abcdef0123456789"
SCORER_TOKEN = "e2e-scorer-token-9876"  # the executor's bearer secret ($env reference)
LISTENING = re.compile(r"Flowker listening on (https?://\S+)")
GENERATED_KEY = re.compile(r"API key \(generated[^)]*\): (\S+)")
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


def flowker_env(database_url: str, **extra: str) -> dict:
    """The environment of a child process: ours without any FLOWKER_* setting, plus these."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("FLOWKER_")}
    env.update(
        FLOWKER_DATABASE_URL=database_url,
        FLOWKER_ENV="development",
        FLOWKER_RETRY_BASE_SECONDS="0.01",
        E2E_SCORER_TOKEN=SCORER_TOKEN,
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def run_flowker(
    args: list[str], env: dict, timeout: float = 120.0, cwd: str | None = None
) -> subprocess.CompletedProcess:
    """``flowker ARGS`` to its end; stdout and stderr captured separately."""
    return subprocess.run(
        [sys.executable, "-m", "flowker", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


class FlowkerServer:
    """``flowker serve --bind 127.0.0.1:0`` in a child process; the port is read from its output."""

    def __init__(self, env: dict, *args: str, workers: int = 2, threads: int = 4, drain_seconds: float = 0.5):
        self.env = env
        self.args = [
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--drain-seconds",
            str(drain_seconds),
            *args,
        ]
        self.process: subprocess.Popen | None = None
        self.lines: list[str] = []
        self._reader: threading.Thread | None = None
        self.url: str | None = None
        # A self-signed --certfile is the CA the readiness probe trusts.
        self.verify = args[args.index("--certfile") + 1] if "--certfile" in args else True

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def start(self) -> "FlowkerServer":
        self.process = subprocess.Popen(
            [sys.executable, "-m", "flowker", *self.args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + START_TIMEOUT
        while self.url is None:
            if self.process.poll() is not None:
                raise AssertionError(f"flowker serve exited with {self.process.returncode}:\n{self.output}")
            if time.monotonic() > deadline:
                raise AssertionError(f"flowker serve did not announce its address:\n{self.output}")
            match = LISTENING.search(self.output)
            self.url = match.group(1) if match else None
            time.sleep(0.05)
        self.wait_until(
            lambda: _status(self.url + "/health/live", self.verify) == 200, "the server to answer /health/live"
        )
        return self

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    def wait_until(self, condition, what: str, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.process.poll() is not None:
                raise AssertionError(f"flowker serve exited while waiting for {what}:\n{self.output}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}:\n{self.output}")
            time.sleep(0.05)

    def send(self, signum: int = signal.SIGTERM) -> None:
        self.process.send_signal(signum)

    def wait_exit(self, timeout: float = STOP_TIMEOUT) -> int:
        code = self.process.wait(timeout=timeout)
        if self._reader is not None:
            self._reader.join(timeout=5)
        return code

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT)


def _status(url: str, verify=True) -> int | None:
    try:
        return requests.get(url, timeout=2, verify=verify).status_code
    except requests.RequestException:
        return None


def api_session(api_key: str = API_KEY) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.headers["X-API-Key"] = api_key
    return session


def poll(fetch, done, what: str, timeout: float = 30.0):
    """``fetch()`` until ``done(value)``; returns the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last value: {value!r}")
        time.sleep(0.05)


# --------------------------------------------------------------------------- specs


def executor_yaml(base_url: str, name: str = "scorer") -> str:
    return f"""\
kind: Executor
name: {name}
description: Scores amounts (a local stub)
baseUrl: {base_url}
endpoints:
  - {{name: score, path: /score, method: POST, timeout: 10}}
  - {{name: slow, path: /slow, method: POST, timeout: 30}}
authentication:
  type: bearer
  config:
    token: {{$env: E2E_SCORER_TOKEN}}
"""


def workflow_yaml(
    name: str = "e2e-score",
    *,
    endpoint: str = "score",
    path: str = "/e2e/score",
    label: str = "scored",
    executor: str = "scorer",
) -> str:
    return f"""\
kind: Workflow
name: {name}
description: Score an amount and report it
nodes:
  - id: start
    type: trigger
    data: {{triggerType: webhook, path: {path}, method: POST}}
  - id: score
    type: executor
    name: Score
    data:
      executor: {executor}
      endpoint: {endpoint}
      body:
        amount: ${{{{ workflow.amount }}}}
  - id: done
    type: action
    data:
      actionType: set_output
      output:
        label: {label}
        score: ${{{{ nodes.score.body.score }}}}
        amount: ${{{{ workflow.amount }}}}
edges:
  - {{source: start, target: score}}
  - {{source: score, target: done}}
"""


def write_specs(folder: Path, base_url: str, **workflow_options) -> Path:
    (folder / "executors").mkdir(parents=True, exist_ok=True)
    (folder / "workflows").mkdir(parents=True, exist_ok=True)
    (folder / "executors" / "scorer.yaml").write_text(executor_yaml(base_url))
    (folder / "workflows" / "e2e-score.yaml").write_text(workflow_yaml(**workflow_options))
    return folder

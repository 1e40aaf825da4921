"""Side by side: the same small workload in Flowker and in a peer engine (Prefect).

    .venv/bin/python -m benchmarks.peer [--runs 20] [--install]

The workload: a trigger, 10 HTTP calls to a local stub (the asyncio keep-alive stub of
:mod:`benchmarks.api`, one process shared by both engines), an output. Flowker runs it
through the real ExecutionService on SQLite (every step row and audit entry committed);
Prefect 3 runs it as a flow with 10 tasks, in ephemeral mode (its own SQLite state
store, no network but 127.0.0.1). Per-step overhead = (wall time of one run - time
inside the 10 HTTP calls) / 12 steps, measured the same way in both, in the same run.

Prefect lives in its own virtualenv (``benchmarks/.peer-venv``, git-ignored), created
with ``--install`` from benchmarks/requirements.txt, so Flowker's dependencies stay as
they are. Why Prefect: it is the most used Python workflow engine on PyPI whose tasks
call services the way Flowker's executor nodes do, and it runs offline with no server.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import venv
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import api as api_bench  # noqa: E402
from benchmarks import overhead  # noqa: E402

HERE = Path(__file__).resolve().parent
PEER_VENV = HERE / ".peer-venv"
PEER_SCRIPT = HERE / "peer_prefect.py"
REQUIREMENTS = HERE / "requirements.txt"


@dataclass
class PeerResult:
    flowker_p50: float | None = None
    flowker_p99: float | None = None
    peer_p50: float | None = None
    peer_p99: float | None = None
    peer_engine: str = "prefect"
    peer_startup_seconds: float | None = None
    runs: int = 0
    note: str = ""

    @property
    def ratio(self) -> float | None:
        """Peer overhead / Flowker overhead: how many times lower Flowker's is."""
        if self.flowker_p50 and self.peer_p50:
            return self.peer_p50 / self.flowker_p50
        return None


def peer_python(install: bool) -> Path | None:
    python = PEER_VENV / "bin" / "python"
    if python.exists():
        return python
    if not install:
        return None
    venv.EnvBuilder(with_pip=True).create(PEER_VENV)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)], check=True, timeout=1800)
    return python


def peer_environment(home: str) -> dict:
    """No API URL (ephemeral mode), state under ``home``, no telemetry, quiet logs."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PREFECT_", "FLOWKER_"))}
    env.update(
        PREFECT_HOME=home,
        DO_NOT_TRACK="1",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_LEVEL="WARNING",
        PREFECT_LOGGING_TO_API_ENABLED="false",
        PREFECT_SERVER_LOGGING_LEVEL="WARNING",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        env.pop(name, None)
    return env


def run(runs: int = 20, warmup: int = 3, *, install: bool = False, timeout: float = 600.0) -> PeerResult:
    result = PeerResult(runs=runs)
    stub, port = api_bench.start_stub()
    stub_url = f"http://127.0.0.1:{port}"
    try:
        with overhead.service_on(stub_url) as service:
            flowker = overhead.measure(service, "ten-calls", runs, warmup)
        result.flowker_p50, result.flowker_p99 = flowker.p50, flowker.p99
        python = peer_python(install)
        if python is None:
            result.note = f"peer not installed: python -m benchmarks --install-peer (creates {PEER_VENV.name})"
            return result
        with tempfile.TemporaryDirectory(prefix="flowker-peer-") as home:
            completed = subprocess.run(
                [str(python), str(PEER_SCRIPT), "--stub-url", stub_url, "--runs", str(runs), "--warmup", str(warmup)],
                env=peer_environment(home),
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        if completed.returncode != 0:
            result.note = "peer run failed: " + (completed.stderr or completed.stdout).strip()[-500:]
            return result
        answer = json.loads(completed.stdout.strip().splitlines()[-1])
        result.peer_engine = answer["engine"]
        result.peer_p50 = statistics.median(answer["samples"])
        result.peer_p99 = api_bench.percentile(answer["samples"], 0.99)
        result.peer_startup_seconds = answer["startup_seconds"]
    finally:
        stub.terminate()
        stub.join(timeout=10)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--install", action="store_true", help=f"create {PEER_VENV} and install the peer")
    args = parser.parse_args(argv)
    result = run(args.runs, args.warmup, install=args.install)
    print(json.dumps({**result.__dict__, "ratio": result.ratio}))
    return 0 if result.ratio else 1


if __name__ == "__main__":
    sys.exit(main())

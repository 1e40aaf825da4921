"""REST throughput on SQLite and PostgreSQL, with one and two ``flowker serve`` processes,
and the memory of their gunicorn workers afterwards.

    .venv/bin/python -m benchmarks.scaleout [--seconds 10] [--generator auto|wrk|python]

The servers, the stub executor service, the 3-node workflow and the threaded Python
client come from :mod:`benchmarks.api`. The load generator is ``wrk`` (Debian package
``wrk``; C, one epoll thread per server, so it takes little CPU from the servers on a
small machine) when installed, else the Python client. Completed executions are counted
in the database (rows that reached ``completed`` during the measured window), so a
201 is never counted for a run that did not complete. Two servers share one PostgreSQL
schema; the load is split evenly between them, as a load balancer would.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import api as api_bench  # noqa: E402

WRK_SCRIPT = """\
wrk.method = "POST"
wrk.body = '{"inputData": {"orderId": "wrk-order", "amount": 42}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-API-Key"] = "%s"
"""


@dataclass
class RestResult:
    label: str
    servers: int
    backend: str
    generator: str
    seconds: float = 0.0
    completed: int = 0
    errors: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    chain_valid: bool | None = None
    chain_entries: int = 0
    worker_rss_mb: list = field(default_factory=list)
    worker_pss_mb: list = field(default_factory=list)
    note: str = ""

    @property
    def rate(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0


# --------------------------------------------------------------------------- memory (from /proc)


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                stat = handle.read()
        except OSError:
            continue
        # The command name may hold spaces; the fields after ")" are fixed.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry))
    return found


def memory_mb(pid: int) -> tuple[float, float]:
    """(RSS, PSS) in MiB. PSS splits pages shared with the master and other workers."""
    rss = pss = 0.0
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1]) / 1024
    except OSError:
        pass
    return rss, pss


# --------------------------------------------------------------------------- counting in the database


def completed_count(database_url: str) -> int:
    from flowker.storage.database import open_database

    database = open_database(database_url)
    try:
        with database.connection_context():
            return database.execute_sql("SELECT COUNT(*) FROM execution WHERE status = 'completed'").fetchone()[0]
    finally:
        if not database.is_closed():
            database.close()
        if hasattr(database, "close_all"):
            database.close_all()


# --------------------------------------------------------------------------- load generators


def run_wrk(urls: list[str], workflow_id: str, seconds: float, connections: int) -> tuple[int, list[float]]:
    """wrk against every URL at once (connections split); (non-2xx + socket errors, p50/p99 in ms)."""
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    script.write(WRK_SCRIPT % api_bench.API_KEY)
    script.close()
    per_server = max(1, connections // len(urls))
    processes = [
        subprocess.Popen(["wrk", "-t1", f"-c{per_server}", f"-d{max(1, int(round(seconds)))}s", "--latency",
                          "--timeout", "30s", "-s", script.name, f"{url}/v1/workflows/{workflow_id}/executions"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for url in urls
    ]
    errors, p50s, p99s = 0, [], []
    try:
        for process in processes:
            output, _ = process.communicate(timeout=seconds + 60)
            for pattern in (r"Non-2xx or 3xx responses: (\d+)", r"Socket errors: connect (\d+), read (\d+), "
                                                                 r"write (\d+), timeout (\d+)"):
                match = re.search(pattern, output)
                if match:
                    errors += sum(int(value) for value in match.groups())
            p50s.append(_wrk_ms(output, "50%"))
            p99s.append(_wrk_ms(output, "99%"))
    finally:
        os.unlink(script.name)
    # With one server per process and an even split, the worst server's percentile is reported.
    return errors, [max(p for p in p50s if p is not None), max(p for p in p99s if p is not None)]


def _wrk_ms(output: str, label: str) -> float | None:
    match = re.search(rf"^\s*{re.escape(label)}\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
    if not match:
        return None
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def run_python(urls: list[str], workflow_id: str, seconds: float, concurrency: int) -> tuple[int, list[float]]:
    """benchmarks/api.py's threaded keep-alive client, split over the URLs for ``seconds``."""
    loads = [api_bench.Load(url, workflow_id, 10**9, seconds) for url in urls]
    threads = [threading.Thread(target=load.run, args=(max(1, concurrency // len(urls)),)) for load in loads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 120)
    latencies = [value for load in loads for value in load.latencies]
    errors = sum(len(load.errors) for load in loads)
    if not latencies:
        return errors, [None, None]
    return errors, [1000 * api_bench.percentile(latencies, 0.5), 1000 * api_bench.percentile(latencies, 0.99)]


def choose_generator(requested: str) -> str:
    if requested == "auto":
        return "wrk" if shutil.which("wrk") else "python"
    if requested == "wrk" and not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install wrk (or --generator python)")
    return requested


# --------------------------------------------------------------------------- one configuration


def measure(label: str, database_url: str, servers: int, *, generator: str, seconds: float, warmup_seconds: float,
            connections: int, workers: int, threads: int) -> RestResult:
    backend = "PostgreSQL" if database_url.startswith("postgres") else "SQLite"
    result = RestResult(label=label, servers=servers, backend=backend, generator=generator)
    stub, stub_port = api_bench.start_stub()
    started: list[api_bench.Server] = []
    try:
        for _ in range(servers):
            started.append(api_bench.Server(database_url, workers, threads))
        urls = [server.url for server in started]
        for url in urls:
            api_bench.wait_ready(url)
        workflow_id = api_bench.create_workflow(urls[0], stub_port)
        load = run_wrk if generator == "wrk" else run_python
        load(urls, workflow_id, warmup_seconds, connections)
        before = completed_count(database_url)
        began = time.perf_counter()
        result.errors, (result.p50_ms, result.p99_ms) = load(urls, workflow_id, seconds, connections)
        result.seconds = time.perf_counter() - began
        result.completed = completed_count(database_url) - before
        for server in started:
            for pid in children(server.process.pid):
                rss, pss = memory_mb(pid)
                result.worker_rss_mb.append(rss)
                result.worker_pss_mb.append(pss)
        result.chain_valid, result.chain_entries, _ = api_bench.verify_chain(urls[-1])
    finally:
        for server in started:
            server.stop()
        stub.terminate()
        stub.join(timeout=10)
    return result


def run_all(*, postgres_url: str | None, generator: str, seconds: float, warmup_seconds: float, connections: int,
            workers: int, threads: int, configurations=("sqlite-1", "postgresql-1", "postgresql-2")) -> list[RestResult]:
    from benchmarks.audit import Scratch

    generator = choose_generator(generator)
    results = []
    for configuration in configurations:
        backend, count = configuration.rsplit("-", 1)
        if backend == "postgresql" and not postgres_url:
            results.append(RestResult(configuration, int(count), "PostgreSQL", generator,
                                      note="skipped: no FLOWKER_BENCH_POSTGRES_URL / FLOWKER_TEST_POSTGRES_URL"))
            continue
        scratch = Scratch(backend, postgres_url)
        try:
            url = scratch.new()
            results.append(measure(configuration, url, int(count), generator=generator, seconds=seconds,
                                   warmup_seconds=warmup_seconds, connections=connections, workers=workers,
                                   threads=threads))
        finally:
            scratch.cleanup()
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured load per configuration")
    parser.add_argument("--warmup-seconds", type=float, default=2.0)
    parser.add_argument("--generator", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers per server")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--configurations", default="sqlite-1,postgresql-1,postgresql-2")
    args = parser.parse_args(argv)
    postgres_url = (os.environ.get("FLOWKER_BENCH_POSTGRES_URL") or os.environ.get("FLOWKER_TEST_POSTGRES_URL")
                    or "").strip() or None
    results = run_all(postgres_url=postgres_url, generator=args.generator, seconds=args.seconds,
                      warmup_seconds=args.warmup_seconds, connections=args.connections, workers=args.workers,
                      threads=args.threads, configurations=tuple(args.configurations.split(",")))
    for result in results:
        print(json.dumps({**result.__dict__, "rate": round(result.rate, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

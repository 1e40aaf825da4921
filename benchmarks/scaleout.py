"""REST throughput on SQLite and PostgreSQL, with one and two ``flowker serve`` processes,
and the memory of their gunicorn workers afterwards.

    .venv/bin/python -m benchmarks.scaleout [--seconds 10] [--generator auto|wrk|python]

The servers, the stub executor service, the 3-node workflow and the threaded Python
client come from :mod:`benchmarks.api`. The load generator is ``wrk`` (Debian package
``wrk``; C, one epoll thread per server, so it takes little CPU from the servers on a
small machine) when installed, else the Python client. Completed executions are counted
in the database (rows that reached ``completed`` during the measured window), so a
201 is never counted for a run that did not complete. Two servers share one PostgreSQL
schema; each server gets the same offered load (``--connections`` per server), as when
a host and its share of the clients are added behind a load balancer.

Host emulation (``--host-cores Q``, default 0.6; 0: off): in ``postgresql-1-host`` and
``postgresql-2-host`` each server (master and workers) runs in a cgroup CPU budget of Q
CPUs of its own (:mod:`benchmarks.hosts`), as a host of Q cores would; PostgreSQL, the stub
and wrk are not limited. Two servers then bring twice the CPU of one, as two hosts would,
and the ratio shows whether what they share (PostgreSQL, the audit chain's lock) lets
throughput scale. Each server's CPU use against its budget is printed.
"""

from __future__ import annotations

import argparse
import contextlib
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
from benchmarks import hosts  # noqa: E402

# Per server. One thread per worker: with a stub that answers at once the work is all
# CPU, and a second thread in a worker only competes for its GIL (1 worker: 1 thread
# 384/s, 2 threads 299/s); more connections only queue on the database write lock
# (SQLite) or the audit append lock (PostgreSQL). See benchmarks/README.md.
DEFAULT_WORKERS, DEFAULT_THREADS, DEFAULT_CONNECTIONS = 2, 1, 4
DEFAULT_HOST_CORES = 0.6  # CPUs per emulated host; see benchmarks/README.md
HOST_CONFIGURATIONS = ("postgresql-1-host", "postgresql-2-host")

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
    cpu_busy: float | None = None  # share of all CPUs busy during the measured load (whole machine)
    audit_lock_waiters: float | None = None  # PostgreSQL: mean sessions waiting for the audit lock
    # CPU milliseconds per completed execution: the servers' workers, the load generator,
    # the stub, and the whole machine (PostgreSQL and any other process included).
    cpu_ms: dict = field(default_factory=dict)
    host_cores: float = 0.0  # > 0: each server ran in a CPU budget of this many CPUs
    # Per server with a budget: {"cores_used", "budget", "throttled"} over the measured load
    # (throttled: share of the quota periods in which the budget ran out).
    hosts: list = field(default_factory=list)
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


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of one process, from /proc/<pid>/stat (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_and_children_cpu_seconds() -> float:
    """CPU of this process (a threaded client) and of its waited-for children (wrk)."""
    import resource

    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def database_backends(database_url: str) -> list[int]:
    """Process ids of the PostgreSQL sessions connected to this URL's database."""
    from flowker.storage.database import open_database

    database = open_database(database_url)
    try:
        with database.connection_context():
            return [
                row[0]
                for row in database.execute_sql(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ]
    finally:
        if hasattr(database, "close_all"):
            database.close_all()


class BackendCpu:
    """CPU used by the benchmark database's PostgreSQL sessions (ours alone: a separate
    database keeps other users' sessions out) between :meth:`start` and :meth:`stop`."""

    def __init__(self, database_url: str | None):
        self.database_url = database_url
        self.before: dict[int, float] = {}

    def start(self) -> None:
        if self.database_url:
            self.before = {pid: process_cpu_seconds(pid) for pid in database_backends(self.database_url)}

    def stop(self) -> float:
        if not self.database_url:
            return 0.0
        now = {pid: process_cpu_seconds(pid) for pid in set(database_backends(self.database_url)) | set(self.before)}
        return sum(max(0.0, seconds - self.before.get(pid, 0.0)) for pid, seconds in now.items())


def cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    with open("/proc/stat") as handle:
        values = [int(value) for value in handle.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return sum(values) - idle, sum(values)


class LockSampler:
    """Samples, every 0.1 s, how many sessions of this PostgreSQL database wait for an
    advisory lock (the audit append lock): a mean near the number of busy threads means
    the appends, not the CPU, set the pace."""

    def __init__(self, database_url: str):
        self.database_url = database_url
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        from flowker.storage.database import open_database

        database = open_database(self.database_url)
        try:
            with database.connection_context():
                while not self._stop.wait(0.1):
                    self.samples.append(
                        database.execute_sql(
                            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() "
                            "AND wait_event_type = 'Lock' AND wait_event = 'advisory'"
                        ).fetchone()[0]
                    )
        finally:
            if hasattr(database, "close_all"):
                database.close_all()

    def __enter__(self) -> "LockSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    @property
    def mean(self) -> float | None:
        return sum(self.samples) / len(self.samples) if self.samples else None


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
    """wrk against every URL at once, ``connections`` each; (non-2xx + socket errors, [p50, p99] in ms)."""
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    script.write(WRK_SCRIPT % api_bench.API_KEY)
    script.close()
    processes = [
        subprocess.Popen(
            [
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{max(1, int(round(seconds)))}s",
                "--latency",
                "--timeout",
                "30s",
                "-s",
                script.name,
                f"{url}/v1/workflows/{workflow_id}/executions",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for url in urls
    ]
    errors, p50s, p99s = 0, [], []
    try:
        for process in processes:
            output, _ = process.communicate(timeout=seconds + 60)
            for pattern in (
                r"Non-2xx or 3xx responses: (\d+)",
                r"Socket errors: connect (\d+), read (\d+), "
                r"write (\d+), timeout (\d+)",
            ):
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
    """benchmarks/api.py's threaded keep-alive client, ``concurrency`` threads per URL, for ``seconds``."""
    loads = [api_bench.Load(url, workflow_id, 10**9, seconds) for url in urls]
    threads = [threading.Thread(target=load.run, args=(concurrency,)) for load in loads]
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


def pin(server: api_bench.Server, cpu: int) -> None:
    """Server ``cpu``-bound, master and workers: one core each stands in for one host each."""
    for pid in [server.process.pid, *children(server.process.pid)]:
        os.sched_setaffinity(pid, {cpu})


def measure(
    label: str,
    database_url: str,
    servers: int,
    *,
    generator: str,
    seconds: float,
    warmup_seconds: float,
    connections: int,
    workers: int,
    threads: int,
    pinned: bool = False,
    host_cores: float = 0.0,
    host_period_us: int = hosts.DEFAULT_PERIOD_US,
) -> RestResult:
    backend = "PostgreSQL" if database_url.startswith("postgres") else "SQLite"
    note = "each server pinned to its own core" if pinned else ""
    if host_cores:
        note = f"each server a host of {host_cores:g} CPUs (cgroup CPU quota, period {host_period_us / 1000:g} ms)"
    result = RestResult(
        label=label, servers=servers, backend=backend, generator=generator, note=note, host_cores=host_cores
    )
    stub, stub_port = api_bench.start_stub()
    started: list[api_bench.Server] = []
    budgets_stack = contextlib.ExitStack()
    try:
        budgets = [
            budgets_stack.enter_context(hosts.CpuBudget(f"server{number}", host_cores, host_period_us))
            for number in range(servers if host_cores else 0)
        ]
        for budget in budgets:
            if not budget.available:
                raise SystemExit(f"host emulation unavailable: {budget.reason}")
        for number in range(servers):
            if budgets:
                started.append(hosts.HostServer(budgets[number], database_url, workers, threads))
            else:
                started.append(api_bench.Server(database_url, workers, threads))
        urls = [server.url for server in started]
        for url in urls:
            api_bench.wait_ready(url)
        for server, budget in zip(started, budgets):
            hosts.check_budget(server, budget, workers)
        if pinned:
            for number, server in enumerate(started):
                pin(server, number % (os.cpu_count() or 1))
        workflow_id = api_bench.create_workflow(urls[0], stub_port)
        load = run_wrk if generator == "wrk" else run_python
        load(urls, workflow_id, warmup_seconds, connections)
        before = completed_count(database_url)
        sampler = LockSampler(database_url) if backend == "PostgreSQL" else None
        workers = [pid for server in started for pid in children(server.process.pid)]
        cpu_before = cpu_times()
        workers_before = sum(process_cpu_seconds(pid) for pid in workers)
        stub_before = process_cpu_seconds(stub.pid)
        client_before = own_and_children_cpu_seconds()
        backends = BackendCpu(database_url if backend == "PostgreSQL" else None)
        backends.start()
        host_meters = [hosts.HostMeter(server, budget) for server, budget in zip(started, budgets)]
        began = time.perf_counter()
        if sampler:
            sampler.__enter__()
        try:
            result.errors, (result.p50_ms, result.p99_ms) = load(urls, workflow_id, seconds, connections)
        finally:
            if sampler:
                sampler.__exit__(None, None, None)
        result.seconds = time.perf_counter() - began
        result.hosts = [meter.read(result.seconds) for meter in host_meters]
        cpu_after = cpu_times()
        result.cpu_busy = (cpu_after[0] - cpu_before[0]) / max(1, cpu_after[1] - cpu_before[1])
        result.audit_lock_waiters = sampler.mean if sampler else None
        result.completed = completed_count(database_url) - before
        if result.completed:
            per = 1000.0 / result.completed
            ticks = os.sysconf("SC_CLK_TCK")
            result.cpu_ms = {
                "workers": per * (sum(process_cpu_seconds(pid) for pid in workers) - workers_before),
                "load generator": per * (own_and_children_cpu_seconds() - client_before),
                "stub": per * (process_cpu_seconds(stub.pid) - stub_before),
                "postgres": per * backends.stop(),
                "machine": per * (cpu_after[0] - cpu_before[0]) / ticks,
            }
        for server in started:
            for pid in children(server.process.pid):
                rss, pss = memory_mb(pid)
                result.worker_rss_mb.append(rss)
                result.worker_pss_mb.append(pss)
        result.chain_valid, result.chain_entries, _ = api_bench.verify_chain(urls[-1])
    finally:
        try:
            for server in started:
                server.stop()
        finally:
            budgets_stack.close()  # after the servers: nothing is left to move out
        stub.terminate()
        stub.join(timeout=10)
    return result


def run_all(
    *,
    postgres_url: str | None,
    generator: str,
    seconds: float,
    warmup_seconds: float,
    connections: int,
    workers: int,
    threads: int,
    configurations=("sqlite-1", "postgresql-1", "postgresql-2"),
    host_cores: float = DEFAULT_HOST_CORES,
    host_period_us: int = hosts.DEFAULT_PERIOD_US,
) -> list[RestResult]:
    """One result per configuration: ``<sqlite|postgresql>-<servers>[-pinned|-host]``."""
    from benchmarks.audit import Scratch

    generator = choose_generator(generator)
    results = []
    host_state = None  # (usable, how or why not), probed once when a -host configuration comes
    for configuration in configurations:
        kind = configuration.rsplit("-", 1)[1] if configuration.endswith(("-pinned", "-host")) else ""
        backend, count = configuration.removesuffix(f"-{kind}" if kind else "").rsplit("-", 1)
        skip = ""
        if backend == "postgresql" and not postgres_url:
            skip = "skipped: no FLOWKER_BENCH_POSTGRES_URL / FLOWKER_TEST_POSTGRES_URL"
        elif kind == "host" and host_cores <= 0:
            skip = "skipped: host emulation off (--host-cores 0)"
        elif kind == "host":
            host_state = host_state or hosts.probe()
            if not host_state[0]:
                skip = f"skipped: host emulation unavailable: {host_state[1]}"
        if skip:
            print(f"{configuration}: {skip}", flush=True)
            results.append(
                RestResult(
                    configuration,
                    int(count),
                    "PostgreSQL" if backend == "postgresql" else "SQLite",
                    generator,
                    host_cores=host_cores if kind == "host" else 0.0,
                    note=skip,
                )
            )
            continue
        scratch = Scratch(backend, postgres_url)
        try:
            url = scratch.new()
            results.append(
                measure(
                    configuration,
                    url,
                    int(count),
                    generator=generator,
                    seconds=seconds,
                    warmup_seconds=warmup_seconds,
                    connections=connections,
                    workers=workers,
                    threads=threads,
                    pinned=kind == "pinned",
                    host_cores=host_cores if kind == "host" else 0.0,
                    host_period_us=host_period_us,
                )
            )
        finally:
            scratch.cleanup()
    return results


def scale_out(results: list[RestResult]) -> list[tuple[str, float]]:
    """(figure, ratio) for each pair of PostgreSQL 1- and 2-server results that both ran."""
    by_label = {result.label: result for result in results}
    out = []
    for suffix in ("", "-pinned", "-host"):
        one, two = by_label.get("postgresql-1" + suffix), by_label.get("postgresql-2" + suffix)
        if not (one and two and one.rate and two.rate):
            continue
        if suffix == "-host":
            how = f", each server a host of {one.host_cores:g} cores"
        else:
            how = " (one core per server, as one host each)" if suffix else " (sharing both cores)"
        out.append((f"scale-out on PostgreSQL, 2 servers / 1 server{how}", two.rate / one.rate))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured load per configuration")
    parser.add_argument("--warmup-seconds", type=float, default=2.0)
    parser.add_argument("--generator", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--connections", type=int, default=DEFAULT_CONNECTIONS, help="client connections per server")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="gunicorn workers per server")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS)
    parser.add_argument(
        "--configurations",
        default=",".join(("sqlite-1", "postgresql-1", "postgresql-2", *HOST_CONFIGURATIONS)),
        help="of <sqlite|postgresql>-<servers>[-pinned|-host]; -host ones are dropped by --host-cores 0",
    )
    parser.add_argument(
        "--host-cores",
        type=float,
        default=DEFAULT_HOST_CORES,
        help="host emulation: CPUs of each server's cgroup budget in the -host configurations (0: off)",
    )
    parser.add_argument(
        "--host-period-ms",
        type=float,
        default=hosts.DEFAULT_PERIOD_US / 1000,
        help="the budget's quota period; each throttling pause is at most this long",
    )
    parser.add_argument(
        "--postgres-url",
        default=(
            os.environ.get("FLOWKER_BENCH_POSTGRES_URL") or os.environ.get("FLOWKER_TEST_POSTGRES_URL") or ""
        ).strip()
        or None,
        help="default: $FLOWKER_BENCH_POSTGRES_URL or $FLOWKER_TEST_POSTGRES_URL",
    )
    args = parser.parse_args(argv)
    configurations = [
        name for name in args.configurations.split(",") if args.host_cores > 0 or not name.endswith("-host")
    ]
    results = run_all(
        postgres_url=args.postgres_url,
        generator=args.generator,
        seconds=args.seconds,
        warmup_seconds=args.warmup_seconds,
        connections=args.connections,
        workers=args.workers,
        threads=args.threads,
        configurations=tuple(configurations),
        host_cores=args.host_cores,
        host_period_us=int(round(args.host_period_ms * 1000)),
    )
    for result in results:
        print(json.dumps({**result.__dict__, "rate": round(result.rate, 1)}))
    for result in results:
        if result.hosts:
            print(f"{result.label}: {result.rate:.0f}/s; server CPU use vs budget: {hosts.host_use(result)}")
    for figure, ratio in scale_out(results):
        print(f"{figure}: {ratio:.2f}x (target >= 1.5x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

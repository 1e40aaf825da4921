"""The execution queue: a queued run's wait with idle workers, and workers scaling out.

    .venv/bin/python -m benchmarks.execution_queue [--postgres-url URL] [--sections wait,scale]
        [--workers 4] [--host-cores 0.6] [--seconds 10] [--backlog 6000] [--concurrency 4]

What runs, all on this machine: ``flowker worker`` processes (real ones, started with
subprocess), the asyncio stub executor of :mod:`benchmarks.api`, and the 3-node workflow
(manual trigger, one executor call, ``set_output``) stored straight in the database.

* **wait**: one idle ``flowker worker``; runs are queued one at a time from this process
  (``ExecutionService.enqueue``) with pauses between them, and each run's wait is its
  ``started_at - queued_at`` (the claim's time minus the enqueue's), p50/p99/max. On
  PostgreSQL the worker LISTENs, so the wait is the notification's trip; on SQLite it
  backs off from 10 ms to 1 s while idle, so the pauses are spread over 0-2 s and the
  wait shows where in its backoff the worker was.
* **scale** (PostgreSQL; give it a database of its own: advisory locks, the audit
  chain's among them, are per database, so other users of the same database, in any
  schema, would share its audit lock): ``--backlog`` runs are queued in a fresh schema, then 1 worker,
  and in another fresh schema ``--workers`` workers, are started, each (with its threads)
  in a cgroup CPU budget of ``--host-cores`` CPUs (:mod:`benchmarks.hosts`: a host of
  that many cores; PostgreSQL, the stub and this process are not limited). Once every
  worker said it runs, the completed runs are counted over ``--seconds``: runs/s, and
  the ratio N workers / 1 worker (target: 4 workers >= 3x one). Each worker's CPU use
  against its budget is printed; "queue drained" means the backlog was too small.

Figures are recorded in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import hosts  # noqa: E402
from benchmarks.api import FreshPostgresSchema, percentile, start_stub  # noqa: E402
from benchmarks.overhead import three_node_workflow  # noqa: E402
from benchmarks.load_tools import cpu_seconds, machine_cpu, postgres_pids  # noqa: E402
from benchmarks.scaleout import LockSampler  # noqa: E402

READY = re.compile(r"Flowker worker (\d+) running")


# --------------------------------------------------------------------------- the database side


class Queue:
    """The benchmark's own runtime on ``url``: migrated, with the stub executor and the
    workflow stored; :meth:`enqueue` queues runs, :meth:`counts` reads the statuses."""

    def __init__(self, url: str, stub_port: int):
        from flowker.runtime import Runtime
        from flowker.settings import Settings
        from flowker.storage.migrations import upgrade

        self.runtime = Runtime.from_settings(Settings.from_mapping({"database_url": url}))
        upgrade(self.runtime.database)
        with self.runtime.bound(), self.runtime.database.connection_context():
            self.workflow_id = _store_specs(stub_port)

    def enqueue(self, count: int, batch: int = 200) -> None:
        """``count`` runs, ``batch`` per transaction (each enqueue a savepoint of it)."""
        from flowker.storage.database import write_transaction

        service = self.runtime.execution_service
        with self.runtime.bound(), self.runtime.database.connection_context():
            for start in range(0, count, batch):
                with write_transaction():
                    for number in range(start, min(count, start + batch)):
                        service.enqueue(self.workflow_id, {"orderId": f"o-{number}", "amount": number}, actor=None)

    def enqueue_one(self) -> str:
        with self.runtime.bound(), self.runtime.database.connection_context():
            return self.runtime.execution_service.enqueue(
                self.workflow_id, {"orderId": "w", "amount": 1}, actor=None
            ).execution.id

    def counts(self) -> dict[str, int]:
        from peewee import fn

        from flowker.storage.models import Execution

        with self.runtime.bound(), self.runtime.database.connection_context():
            rows = Execution.select(Execution.status, fn.COUNT(Execution.id)).group_by(Execution.status).tuples()
            return {status: count for status, count in rows}

    def waits(self, ids: list[str]) -> list[float]:
        """Milliseconds from enqueue to claim of each run (None for one not started yet)."""
        from flowker.storage.models import Execution

        with self.runtime.bound(), self.runtime.database.connection_context():
            rows = Execution.select(Execution.id, Execution.status, Execution.queued_at, Execution.started_at).where(
                Execution.id.in_(ids)
            )
            return [(row.started_at - row.queued_at).total_seconds() * 1000.0 for row in rows if row.status != "queued"]

    def close(self) -> None:
        self.runtime.close()


def _store_specs(stub_port: int) -> str:
    from flowker.storage.models import Executor, Workflow, WorkflowVersion

    executor = {
        "name": "bench-stub",
        "baseUrl": f"http://127.0.0.1:{stub_port}",
        "endpoints": [{"name": "score", "path": "/score", "method": "POST", "timeout": 10}],
        "authentication": {"type": "none"},
    }
    Executor.create(name="bench-stub", base_url=executor["baseUrl"], spec=executor, spec_hash="bench")
    workflow = {**three_node_workflow(), "name": "bench-queued-3-nodes"}
    workflow["nodes"][1]["data"]["executor"] = "bench-stub"
    row = Workflow.create(name=workflow["name"], status="active", version=1, spec=workflow, spec_hash="bench")
    WorkflowVersion.create(workflow_id=row.id, version=1, spec=workflow)
    return row.id


# --------------------------------------------------------------------------- worker processes


class Worker:
    """``flowker worker`` in a child process, in ``budget`` (a :class:`hosts.CpuBudget`) if given."""

    def __init__(self, url: str, concurrency: int, budget=None):
        env = {key: value for key, value in os.environ.items() if not key.startswith(("FLOWKER_", "OTEL_"))}
        env.update(FLOWKER_DATABASE_URL=url, FLOWKER_METRICS="off", PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "flowker", "worker", "--concurrency", str(concurrency), "--grace-seconds", "0"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        if budget is not None:
            budget.add(self.process.pid)  # before it imports: its threads all start inside
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not READY.search("".join(self.lines)):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("flowker worker did not start:\n" + "".join(self.lines))
            time.sleep(0.05)

    def cpu(self) -> float:
        return cpu_seconds([self.process.pid])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)


# --------------------------------------------------------------------------- wait with idle workers


def measure_wait(url: str, stub_port: int, samples: int, pause: tuple[float, float], label: str) -> dict:
    queue = Queue(url, stub_port)
    worker = Worker(url, 4)
    try:
        worker.wait_ready()
        time.sleep(1.0)
        ids = []
        for _ in range(samples):
            time.sleep(random.uniform(*pause))  # idle: the worker waits (LISTEN, or its backoff)
            ids.append(queue.enqueue_one())
        deadline = time.monotonic() + 60
        while len(waits := queue.waits(ids)) < samples and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        worker.stop()
        queue.close()
    waits.sort()
    result = {
        "backend": label,
        "samples": len(waits),
        "pause_s": f"{pause[0]:g}-{pause[1]:g}",
        "p50_ms": round(percentile(waits, 0.50), 2),
        "p99_ms": round(percentile(waits, 0.99), 2),
        "max_ms": round(waits[-1], 2),
        "mean_ms": round(statistics.fmean(waits), 2),
    }
    print(
        f"wait enqueue->start, idle worker, {label}: p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, "
        f"max {result['max_ms']} ms ({result['samples']} runs, pauses {result['pause_s']} s)",
        flush=True,
    )
    return result


# --------------------------------------------------------------------------- workers scaling out


def measure_throughput(
    base_url: str, stub_port: int, workers: int, concurrency: int, host_cores: float, seconds: float, backlog: int
) -> dict:
    with FreshPostgresSchema(base_url) as url, ExitStack() as stack:
        queue = Queue(url, stub_port)
        stack.callback(queue.close)
        queue.enqueue(backlog)
        budgets = []
        processes = []
        for number in range(workers):
            budget = None
            if host_cores > 0:
                budget = stack.enter_context(hosts.CpuBudget(f"queue-worker{number}", host_cores))
                if not budget.available:
                    raise SystemExit(f"host emulation unavailable: {budget.reason} (or pass --host-cores 0)")
                budgets.append(budget)
            processes.append(Worker(url, concurrency, budget))
        for process in processes:
            stack.callback(process.stop)
        for process in processes:
            process.wait_ready()
        time.sleep(1.0)  # past the first claims
        before = queue.counts().get("completed", 0)
        cpu_before = [process.cpu() for process in processes]
        postgres_before = cpu_seconds(postgres_pids())
        busy_before, total_before = machine_cpu()
        started = time.monotonic()
        with LockSampler(url) as locks:
            time.sleep(seconds)
        elapsed = time.monotonic() - started
        counts = queue.counts()
        busy_after, total_after = machine_cpu()
        completed = counts.get("completed", 0) - before
        used = [(process.cpu() - was) / elapsed for process, was in zip(processes, cpu_before)]
        postgres_used = (cpu_seconds(postgres_pids()) - postgres_before) / elapsed
    rate = completed / elapsed
    result = {
        "workers": workers,
        "runs_per_s": round(rate, 1),
        "worker_cpu": [round(value, 2) for value in used],
        "budget": host_cores or None,
        "postgres_cpu": round(postgres_used, 2),
        "machine_busy": round((busy_after - busy_before) / max(1, total_after - total_before), 2),
        "worker_cpu_ms_per_run": round(sum(used) * 1000.0 / rate, 2) if rate else None,
        "drained": counts.get("queued", 0) == 0,
        "failed": counts.get("failed", 0),
        "advisory_lock_waiters": round(locks.mean, 2) if locks.mean is not None else None,
    }
    print(
        f"{workers} worker(s) x {concurrency} threads"
        + (f", each a host of {host_cores} CPUs" if host_cores else "")
        + f": {result['runs_per_s']} runs/s; worker CPU {result['worker_cpu']}"
        + f" (budget {host_cores or 'none'}), PostgreSQL {result['postgres_cpu']} CPUs, machine "
        + f"{result['machine_busy']:.0%} busy, {result['worker_cpu_ms_per_run']} ms worker CPU per run, "
        + f"{result['advisory_lock_waiters']} sessions waiting for an advisory lock (the audit append's)"
        + (", QUEUE DRAINED (raise --backlog)" if result["drained"] else "")
        + (f", {result['failed']} failed" if result["failed"] else ""),
        flush=True,
    )
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sections", default="wait,scale")
    parser.add_argument(
        "--postgres-url",
        default=(os.environ.get("FLOWKER_BENCH_POSTGRES_URL") or os.environ.get("FLOWKER_TEST_POSTGRES_URL") or "")
        or None,
    )
    parser.add_argument("--workers", type=int, default=4, help="workers of the scale-out side (against 1)")
    parser.add_argument("--concurrency", type=int, default=4, help="run threads per worker")
    parser.add_argument("--host-cores", type=float, default=0.6, help="CPU budget per worker (0: no budget)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured window per configuration")
    parser.add_argument("--backlog", type=int, default=6000, help="runs queued before the workers start")
    parser.add_argument("--wait-samples", type=int, default=100)
    args = parser.parse_args(argv)
    sections = set(args.sections.split(","))
    if args.postgres_url:
        from benchmarks.before_after import ensure_database

        ensure_database(args.postgres_url)  # a new machine has only test, root and postgres
    load = os.getloadavg()[0]
    print(f"load average at start: {load:.2f}", flush=True)
    stub, stub_port = start_stub()
    try:
        if "wait" in sections:
            if args.postgres_url:
                with FreshPostgresSchema(args.postgres_url) as url:
                    measure_wait(url, stub_port, args.wait_samples, (0.05, 0.15), "postgresql (LISTEN)")
            with tempfile.TemporaryDirectory() as folder:
                samples = max(10, args.wait_samples // 3)
                measure_wait(f"sqlite:///{folder}/queue.db", stub_port, samples, (0.0, 2.0), "sqlite (backoff)")
        if "scale" in sections:
            if not args.postgres_url:
                print("scale: skipped: no --postgres-url / FLOWKER_BENCH_POSTGRES_URL / FLOWKER_TEST_POSTGRES_URL")
            else:
                one = measure_throughput(
                    args.postgres_url, stub_port, 1, args.concurrency, args.host_cores, args.seconds, args.backlog
                )
                many = measure_throughput(
                    args.postgres_url,
                    stub_port,
                    args.workers,
                    args.concurrency,
                    args.host_cores,
                    args.seconds,
                    args.backlog,
                )
                ratio = many["runs_per_s"] / one["runs_per_s"] if one["runs_per_s"] else 0.0
                # The target is for 4 workers; another count is only shown.
                verdict = ("met" if ratio >= 3.0 else "NOT met") if args.workers == 4 else "not this run's count"
                print(
                    f"{args.workers} workers / 1 worker: {ratio:.2f}x (target for 4 workers: >= 3x: {verdict}); "
                    f"load average now {os.getloadavg()[0]:.2f}",
                    flush=True,
                )
    finally:
        stub.terminate()
        stub.join(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""REST throughput: synchronous executions of a 3-node workflow through ``flowker serve``.

    .venv/bin/python benchmarks/api.py [--generator auto|wrk|python] [--seconds 15]
        [--concurrency 4] [--workers 2] [--threads 1]
        [--database-url URL | --postgres postgresql://postgres@127.0.0.1:5432/test] [--servers 2]

What runs, all on this machine:

* ``flowker serve`` (gunicorn, ``--workers`` gthread workers), ``--servers`` of them on one
  database: SQLite in a temporary folder by default, ``--database-url``, or with
  ``--postgres URL`` a fresh schema in that PostgreSQL database (dropped afterwards);
* a stub executor service: a separate process, asyncio, HTTP/1.1 keep-alive, answering a
  fixed JSON body at once (so the figures are Flowker's, not the stub's);
* the workflow: a manual trigger, one executor call (bearer auth from ``$env``) and a
  ``set_output``; each execution commits two write transactions (the start; the steps
  with the end) holding seven audit entries;
* the load: ``wrk`` (C, one thread; installed with apt-get when missing and running as
  root; ``--generator python`` or no wrk: Python client threads, which take far more
  CPU) on ``--concurrency`` keep-alive connections, split between the servers, POSTing
  ``/v1/workflows/{id}/executions`` with distinct bodies for ``--seconds`` (the Python
  client sends ``--requests``). A warm-up with the Python client comes first.

Printed: completed executions/s, p50/p90/p99/max latency, errors (anything but a 201 with
status ``completed``, and socket errors), the CPU each part used (servers, stub, load
generator, PostgreSQL) against the machine's, and whether the audit chain verifies
afterwards. Targets: >= 500 executions/s, p99 <= 100 ms, 0 errors.

Functions other scripts reuse: start_stub, Server, wait_ready, create_workflow, Load,
percentile, verify_chain, run_wrk, run_wrk_all, CpuShare, FreshPostgresSchema.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import multiprocessing
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import load_tools  # noqa: E402
from benchmarks.load_tools import (  # noqa: E402,F401 - re-exported for other benchmark scripts
    CpuShare,
    WrkResult,
    cpu_seconds,
    find_wrk,
    machine_cpu,
    postgres_pids,
    process_tree,
)

API_KEY = "benchmark-api-key-0123456789"
STUB_TOKEN = "benchmark-stub-token"
LISTENING = re.compile(r"Flowker listening on (http://\S+)")
STUB_BODY = json.dumps({"score": 42, "decision": "ALLOW"}).encode()
STUB_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(STUB_BODY)).encode()
    + b"\r\nConnection: keep-alive\r\n\r\n"
    + STUB_BODY
)


# --------------------------------------------------------------------------- the stub


async def _stub_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            match = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
            if match:
                await reader.readexactly(int(match.group(1)))
            writer.write(STUB_RESPONSE)
            await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, asyncio.CancelledError):
        pass  # the client went away, or the stub is stopping
    finally:
        writer.close()


def _run_stub(port_sender) -> None:
    async def main():
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        server = await asyncio.start_server(_stub_connection, "127.0.0.1", 0, backlog=1024)
        port_sender.send(server.sockets[0].getsockname()[1])
        await stop.wait()
        server.close()

    asyncio.run(main())


def start_stub() -> tuple[multiprocessing.Process, int]:
    receiver, sender = multiprocessing.Pipe(duplex=False)
    process = multiprocessing.Process(target=_run_stub, args=(sender,), daemon=True)
    process.start()
    if not receiver.poll(30):
        process.terminate()
        raise SystemExit("the stub service did not start")
    return process, receiver.recv()


# --------------------------------------------------------------------------- the server


class Server:
    """``flowker serve`` in a subprocess. ``checkout`` (a :class:`benchmarks.before_tree.Checkout`)
    runs another tree's code with its own interpreter; by default this tree with this one."""

    def __init__(self, database_url: str, workers: int, threads: int, env_extra: dict | None = None, checkout=None):
        # Flowker's settings and the OTEL_* variables (traces) are only what the benchmark says.
        env = {key: value for key, value in os.environ.items() if not key.startswith(("FLOWKER_", "OTEL_"))}
        python, cwd = sys.executable, ROOT
        if checkout is not None:
            env = checkout.environment(env)
            python, cwd = str(checkout.python), checkout.root
        env.update(
            FLOWKER_DATABASE_URL=database_url,
            FLOWKER_API_KEYS=f"bench:{API_KEY}",
            BENCHMARK_STUB_TOKEN=STUB_TOKEN,
            PYTHONUNBUFFERED="1",
        )
        env.update(env_extra or {})
        self.process = subprocess.Popen(
            [
                python,
                "-m",
                "flowker",
                "serve",
                "--bind",
                "127.0.0.1:0",
                "--workers",
                str(workers),
                "--threads",
                str(threads),
                "--drain-seconds",
                "0",
            ],
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.url = self._wait_for_address()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    def _wait_for_address(self, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit("flowker serve exited:\n" + "".join(self.lines))
            match = LISTENING.search("".join(self.lines))
            if match:
                return match.group(1)
            time.sleep(0.05)
        raise SystemExit("flowker serve did not start:\n" + "".join(self.lines))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)


class Client:
    """One keep-alive connection with the API key; JSON in and out."""

    def __init__(self, url: str, timeout: float = 30.0):
        parts = urlsplit(url)
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        self.headers = {"X-API-Key": API_KEY, "Content-Type": "application/json", "Accept": "application/json"}

    def call(self, method: str, path: str, body=None) -> tuple[int, object]:
        payload = None if body is None else json.dumps(body).encode()
        for attempt in (1, 2):
            try:
                self.connection.request(method, path, body=payload, headers=self.headers)
                response = self.connection.getresponse()
                data = response.read()
                return response.status, (json.loads(data) if data else None)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.connection.close()  # the server closed an idle keep-alive connection: once more
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.connection.close()


def wait_ready(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            client = Client(url, timeout=2)
            if client.call("GET", "/health/ready")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit("the server never became ready")


def stub_executor(stub_port: int) -> dict:
    """The stub executor's spec (a bearer token from ``BENCHMARK_STUB_TOKEN``)."""
    return {
        "kind": "Executor",
        "name": "bench-stub",
        "baseUrl": f"http://127.0.0.1:{stub_port}",
        "endpoints": [{"name": "score", "path": "/score", "method": "POST", "timeout": 10}],
        "authentication": {"type": "bearer", "config": {"token": {"$env": "BENCHMARK_STUB_TOKEN"}}},
    }


def rest_workflow() -> dict:
    """The REST benchmark's 3-node workflow (trigger, a call of the stub, set_output) as a spec."""
    from benchmarks.overhead import three_node_workflow

    workflow = {"kind": "Workflow", **three_node_workflow()}
    workflow["nodes"][1]["data"]["executor"] = "bench-stub"
    return workflow


def create_workflow(url: str, stub_port: int) -> str:
    client = Client(url)
    status, body = client.call("POST", "/v1/executors", stub_executor(stub_port))
    assert status == 201, (status, body)
    workflow = rest_workflow()
    status, body = client.call("POST", "/v1/workflows", workflow)
    assert status == 201, (status, body)
    workflow_id = body["workflowId"]
    status, body = client.call("POST", f"/v1/workflows/{workflow_id}/activate")
    assert status == 200, (status, body)
    client.close()
    return workflow_id


# --------------------------------------------------------------------------- CPU and wrk (benchmarks/load_tools.py)


def run_wrk(
    url: str, workflow_id: str, seconds: float, connections: int, *, wrk: str = "wrk", threads: int = 1, on_start=None
) -> WrkResult:
    """wrk POSTing executions of ``workflow_id`` to one server (see :mod:`benchmarks.load_tools`)."""
    return load_tools.run_wrk(
        url, workflow_id, seconds, connections, api_key=API_KEY, wrk=wrk, threads=threads, on_start=on_start
    )


def run_wrk_all(urls: list[str], workflow_id: str, seconds: float, connections: int, *, wrk: str = "wrk") -> WrkResult:
    """One wrk per server at once, results summed (see :mod:`benchmarks.load_tools`)."""
    return load_tools.run_wrk_all(urls, workflow_id, seconds, connections, api_key=API_KEY, wrk=wrk)


class FreshPostgresSchema:
    """A new, empty schema in the PostgreSQL database of ``url`` for one run (dropped after):
    the chain check covers every entry, so each run needs its own."""

    def __init__(self, url: str):
        import psycopg2

        self.psycopg2 = psycopg2
        self.base = url
        self.name = f"flowker_bench_{os.getpid()}_{int(time.time())}"
        parts = urlsplit(url)
        self.dsn = dict(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5432,
            user=parts.username or "postgres",
            dbname=parts.path.lstrip("/") or "postgres",
        )
        if parts.password:
            self.dsn["password"] = parts.password

    def _run(self, sql: str) -> None:
        connection = self.psycopg2.connect(**self.dsn)
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(sql)
        finally:
            connection.close()

    def __enter__(self) -> str:
        self._run(f'CREATE SCHEMA "{self.name}"')
        separator = "&" if "?" in self.base else "?"
        return f"{self.base}{separator}options=-csearch_path%3D{self.name}"

    def __exit__(self, *exc_info) -> None:
        self._run(f'DROP SCHEMA IF EXISTS "{self.name}" CASCADE')


# --------------------------------------------------------------------------- the load


class Load:
    def __init__(self, url: str, workflow_id: str, total: int, max_seconds: float):
        self.url, self.path = url, f"/v1/workflows/{workflow_id}/executions"
        self.total, self.max_seconds = total, max_seconds
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self._issued = 0
        self._lock = threading.Lock()

    def _next(self, deadline: float) -> int | None:
        with self._lock:
            if self._issued >= self.total or time.monotonic() > deadline:
                return None
            self._issued += 1
            return self._issued

    def _worker(self, deadline: float) -> None:
        client = Client(self.url)
        latencies, errors = [], []
        try:
            while (number := self._next(deadline)) is not None:
                body = {"inputData": {"orderId": f"order-{number}", "amount": number % 1000}}
                started = time.perf_counter()
                try:
                    status, answer = client.call("POST", self.path, body)
                except Exception as exc:  # noqa: BLE001 - counted as an error, the run goes on
                    errors.append(f"{type(exc).__name__}: {exc}")
                    client = Client(self.url)
                    continue
                elapsed = time.perf_counter() - started
                if status == 201 and isinstance(answer, dict) and answer.get("status") == "completed":
                    latencies.append(elapsed)
                else:
                    errors.append(f"HTTP {status}: {json.dumps(answer)[:200]}")
        finally:
            client.close()
            with self._lock:
                self.latencies.extend(latencies)
                self.errors.extend(errors)

    def run(self, concurrency: int) -> float:
        deadline = time.monotonic() + self.max_seconds
        threads = [threading.Thread(target=self._worker, args=(deadline,)) for _ in range(concurrency)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=self.max_seconds + 60)
        return time.perf_counter() - started


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def verify_chain(url: str) -> tuple[bool, int, float]:
    client = Client(url, timeout=600)
    status, page = client.call("GET", "/v1/audit-events?limit=1&sortOrder=DESC")
    assert status == 200, (status, page)
    newest = page["items"][0]["eventId"]
    started = time.perf_counter()
    status, verification = client.call("GET", f"/v1/audit-events/{newest}/verify")
    elapsed = time.perf_counter() - started
    client.close()
    assert status == 200, (status, verification)
    return bool(verification["isValid"]), int(verification["totalChecked"]), elapsed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--generator",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="load generator: wrk (C, installed from Debian if missing) or Python threads",
    )
    parser.add_argument("--seconds", type=float, default=15.0, help="wrk: how long to send")
    parser.add_argument("--requests", type=int, default=5000, help="python: executions to send after the warm-up")
    parser.add_argument("--warmup", type=int, default=300)
    # Two connections per worker, one thread each (see benchmarks/scaleout.py: DEFAULT_THREADS).
    parser.add_argument("--concurrency", type=int, default=4, help="client connections (threads for python)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="threads per gunicorn worker")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="python: stop sending after this long")
    parser.add_argument("--database-url", help="default: SQLite in a temporary folder")
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="PostgreSQL database to run on, in a fresh schema made (and dropped) for this run",
    )
    parser.add_argument(
        "--servers",
        type=int,
        default=1,
        help="flowker serve processes on the same database (each --workers workers); wrk only",
    )
    args = parser.parse_args(argv)
    if args.postgres:
        with FreshPostgresSchema(args.postgres) as url:
            return main([*(argv if argv is not None else sys.argv[1:]), "--database-url", url, "--postgres", ""])

    wrk = None
    if args.generator in ("auto", "wrk"):
        wrk = find_wrk()
        if wrk is None:
            if args.generator == "wrk":
                raise SystemExit("wrk is not installed and could not be installed (apt-get install wrk)")
            print("note: wrk is not available; using the Python client, which takes CPU from the server")

    load_before = os.getloadavg()[0]  # the machine is shared: say how busy it was
    folder = tempfile.mkdtemp(prefix="flowker-bench-")
    database_url = args.database_url or f"sqlite:///{folder}/flowker.db"
    backend = "PostgreSQL" if database_url.startswith("postgres") else "SQLite"
    if args.servers > 1 and wrk is None:
        raise SystemExit("--servers above 1 needs wrk")
    stub, stub_port = start_stub()
    server = None
    servers: list[Server] = []
    try:
        for _ in range(args.servers):
            servers.append(Server(database_url, args.workers, args.threads))
        server = servers[0]
        for started in servers:
            wait_ready(started.url)
        workflow_id = create_workflow(server.url, stub_port)
        warmup = Load(server.url, workflow_id, args.warmup, args.max_seconds)
        warmup.run(args.concurrency)
        if warmup.errors:
            print(f"warm-up errors ({len(warmup.errors)}), first: {warmup.errors[0]}")

        for other in servers[1:]:
            Load(other.url, workflow_id, args.warmup // 2, args.max_seconds).run(args.concurrency)
        cpu = CpuShare(
            {
                "server": lambda: [pid for one in servers for pid in process_tree(one.process.pid)],
                "stub": lambda: [stub.pid],
                **({"postgres": postgres_pids} if backend == "PostgreSQL" else {}),
            }
        )
        with cpu:
            if wrk is not None:
                children = resource.getrusage(resource.RUSAGE_CHILDREN)
                result = run_wrk_all([one.url for one in servers], workflow_id, args.seconds, args.concurrency, wrk=wrk)
                reaped = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk, the only child reaped meanwhile
                cpu.finish({"wrk": reaped.ru_utime + reaped.ru_stime - children.ru_utime - children.ru_stime})
                done, elapsed, errors = result.completed, result.seconds, result.errors
                latency = result.latencies_ms
                first_error = f"{result.bad} answers not 201/completed, {result.socket_errors} socket errors"
                client = f"wrk, {args.concurrency} keep-alive connections"
            else:
                load = Load(server.url, workflow_id, args.requests, args.max_seconds)
                own = time.process_time()
                elapsed = load.run(args.concurrency)
                cpu.finish({"client": time.process_time() - own})
                done, errors = len(load.latencies), len(load.errors)
                latency = {}
                if done:
                    latency = {
                        name: 1000 * percentile(load.latencies, q)
                        for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))
                    }
                    latency["mean"] = 1000 * statistics.fmean(load.latencies)
                first_error = load.errors[0] if load.errors else ""
                client = f"Python, {args.concurrency} threads (keep-alive)"
        valid, checked, verify_seconds = verify_chain(server.url)

        print(
            f"flowker serve: {args.servers} server(s) x {args.workers} gthread workers x {args.threads} threads "
            f"on {backend}; "
            f"{os.cpu_count()} CPUs; load average before: {load_before:.2f}; client: {client}"
        )
        print("workflow: trigger -> executor call (local stub) -> set_output, synchronous (201 when finished)")
        rate = done / elapsed if elapsed else 0.0
        print(f"executions completed: {done} in {elapsed:.2f} s  ->  {rate:.0f} executions/s")
        if latency:
            print(
                "latency ms: p50 {p50:.1f}  p90 {p90:.1f}  p99 {p99:.1f}  max {max:.1f}  mean {mean:.1f}".format(
                    **latency
                )
            )
        print(f"errors: {errors}" + (f" ({first_error})" if errors else ""))
        for line in cpu.lines(done):
            print(line)
        print(f"audit chain: {'valid' if valid else 'BROKEN'} ({checked} entries verified in {verify_seconds:.2f} s)")
        met = rate >= 500 and done and latency.get("p99", 1e9) <= 100 and not errors
        print(f"targets (>= 500/s, p99 <= 100 ms, 0 errors, chain valid): {'met' if met and valid else 'NOT met'}")
        return 0 if valid and not errors else 1
    finally:
        for started in servers:
            started.stop()
        stub.terminate()
        stub.join(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

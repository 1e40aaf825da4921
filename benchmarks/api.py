"""REST throughput: synchronous executions of a 3-node workflow through ``flowker serve``.

    .venv/bin/python benchmarks/api.py [--requests 5000] [--concurrency 16] [--workers 2]
                                       [--threads 8] [--database-url postgresql://...]

What runs, all on this machine:

* ``flowker serve`` (gunicorn, ``--workers`` gthread workers) on SQLite in a temporary
  folder by default, or on ``--database-url``;
* a stub executor service: a separate process, asyncio, HTTP/1.1 keep-alive, answering a
  fixed JSON body at once (so the figures are Flowker's, not the stub's);
* the workflow: a manual trigger, one executor call (bearer auth from ``$env``) and a
  ``set_output``; each execution commits its rows and about ten audit entries;
* the load: ``--concurrency`` client threads, each with its own keep-alive connection
  (``http.client``, the lightest Python client, so it takes as little CPU from the
  server as it can), sending ``POST /v1/workflows/{id}/executions`` (201 when finished)
  until ``--requests`` are done or ``--max-seconds`` pass. A warm-up comes first.

Printed: completed executions/s, p50/p90/p99/max latency, errors (anything but a 201 with
status ``completed``), and whether the audit chain verifies afterwards (``/verify`` on
the newest entry). Targets: >= 500 executions/s, p99 <= 100 ms, 0 errors.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import multiprocessing
import os
import re
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
API_KEY = "benchmark-api-key-0123456789"
STUB_TOKEN = "benchmark-stub-token"
LISTENING = re.compile(r"Flowker listening on (http://\S+)")
STUB_BODY = json.dumps({"score": 42, "decision": "ALLOW"}).encode()
STUB_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(STUB_BODY)).encode() + b"\r\nConnection: keep-alive\r\n\r\n" + STUB_BODY
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
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        pass
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
    def __init__(self, database_url: str, workers: int, threads: int):
        env = {key: value for key, value in os.environ.items() if not key.startswith("FLOWKER_")}
        env.update(FLOWKER_DATABASE_URL=database_url, FLOWKER_API_KEYS=f"bench:{API_KEY}",
                   BENCHMARK_STUB_TOKEN=STUB_TOKEN, PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "flowker", "serve", "--bind", "127.0.0.1:0", "--workers", str(workers),
             "--threads", str(threads), "--drain-seconds", "0"],
            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
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
            if client.call("GET", "/readyz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit("the server never became ready")


def create_workflow(url: str, stub_port: int) -> str:
    client = Client(url)
    executor = {
        "kind": "Executor", "name": "bench-stub", "baseUrl": f"http://127.0.0.1:{stub_port}",
        "endpoints": [{"name": "score", "path": "/score", "method": "POST", "timeout": 10}],
        "authentication": {"type": "bearer", "config": {"token": {"$env": "BENCHMARK_STUB_TOKEN"}}},
    }
    status, body = client.call("POST", "/v1/executors", executor)
    assert status == 201, (status, body)
    workflow = {
        "kind": "Workflow", "name": "bench-3-nodes",
        "nodes": [
            {"id": "start", "type": "trigger", "data": {"triggerType": "manual"}},
            {"id": "score", "type": "executor", "data": {
                "executor": "bench-stub", "endpoint": "score",
                "body": {"orderId": "${{ workflow.orderId }}", "amount": "${{ workflow.amount }}"}}},
            {"id": "out", "type": "action", "data": {"actionType": "set_output", "output": {
                "orderId": "${{ workflow.orderId }}", "score": "${{ nodes.score.body.score }}"}}},
        ],
        "edges": [{"source": "start", "target": "score"}, {"source": "score", "target": "out"}],
    }
    status, body = client.call("POST", "/v1/workflows", workflow)
    assert status == 201, (status, body)
    workflow_id = body["workflowId"]
    status, body = client.call("POST", f"/v1/workflows/{workflow_id}/activate")
    assert status == 200, (status, body)
    client.close()
    return workflow_id


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
    parser.add_argument("--requests", type=int, default=5000, help="executions to send after the warm-up")
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8, help="client threads")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8, help="threads per gunicorn worker")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="stop sending after this long")
    parser.add_argument("--database-url", help="default: SQLite in a temporary folder")
    args = parser.parse_args(argv)

    folder = tempfile.mkdtemp(prefix="flowker-bench-")
    database_url = args.database_url or f"sqlite:///{folder}/flowker.db"
    backend = "PostgreSQL" if database_url.startswith("postgres") else "SQLite"
    stub, stub_port = start_stub()
    server = None
    try:
        server = Server(database_url, args.workers, args.threads)
        wait_ready(server.url)
        workflow_id = create_workflow(server.url, stub_port)
        warmup = Load(server.url, workflow_id, args.warmup, args.max_seconds)
        warmup.run(args.concurrency)
        if warmup.errors:
            print(f"warm-up errors ({len(warmup.errors)}), first: {warmup.errors[0]}")

        load = Load(server.url, workflow_id, args.requests, args.max_seconds)
        elapsed = load.run(args.concurrency)
        valid, checked, verify_seconds = verify_chain(server.url)

        done = len(load.latencies)
        print(f"flowker serve: {args.workers} gthread workers x {args.threads} threads on {backend}; "
              f"{os.cpu_count()} CPUs; client: {args.concurrency} threads (keep-alive)")
        print("workflow: trigger -> executor call (local stub) -> set_output, synchronous (201 when finished)")
        print(f"executions completed: {done} in {elapsed:.2f} s  ->  {done / elapsed:.0f} executions/s")
        if done:
            print("latency ms: p50 {:.1f}  p90 {:.1f}  p99 {:.1f}  max {:.1f}  mean {:.1f}".format(
                *(1000 * percentile(load.latencies, q) for q in (0.5, 0.9, 0.99, 1.0)),
                1000 * statistics.fmean(load.latencies)))
        print(f"errors: {len(load.errors)}" + (f" (first: {load.errors[0]})" if load.errors else ""))
        print(f"audit chain: {'valid' if valid else 'BROKEN'} ({checked} entries verified in {verify_seconds:.2f} s)")
        met = done / elapsed >= 500 and done and 1000 * percentile(load.latencies, 0.99) <= 100 and not load.errors
        print(f"targets (>= 500/s, p99 <= 100 ms, 0 errors, chain valid): {'met' if met and valid else 'NOT met'}")
        return 0 if valid and not load.errors else 1
    finally:
        if server is not None:
            server.stop()
        stub.terminate()
        stub.join(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

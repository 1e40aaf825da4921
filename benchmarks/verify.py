"""REST audit verification under load: worker memory and other requests' latency.

    .venv/bin/python benchmarks/verify.py [--entries 1000000] [--backend sqlite|postgresql]
                                          [--seconds 30] [--verify-rate 2] [--clients 4]

Targets (issue 19 §3): the worker's RSS grows by less than 20 MB during repeated verifies,
and other requests' p99 stays under 100 ms.

* The chain is bulk-loaded by direct batched inserts of properly chained rows, with a
  chained, signed checkpoint every 1000 entries (``benchmarks.audit.bulk_load``).
* ``flowker serve`` runs one gunicorn worker (4 threads) on it, with the signing key.
* For ``--seconds``: ``--verify-rate`` verifies per second of the newest entry, each after
  an append from this process (so the head moves and no result is reused: every verify
  reads the whole chain); meanwhile ``--clients`` threads loop on
  ``GET /v1/executions?limit=1``. Verifies refused with 429 (one already running in the
  worker) are counted. The worker's RSS is sampled every 0.25 s.
* ``--server-path`` runs the server from another checkout (e.g. the code before this
  change) against the same chain, for a before/after comparison.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.audit import CHECKPOINT_INTERVAL, Scratch, bulk_load  # noqa: E402
from flowker.audit import checkpoints as cp  # noqa: E402
from flowker.audit.chain import AuditLog  # noqa: E402
from flowker.storage.database import close_database, open_database  # noqa: E402

API_KEY = "bench-verify-key-0123456789"


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def children(pid: int) -> list[int]:
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                found += [int(p) for p in handle.read().split()]
        except OSError:
            pass
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


def run(args) -> None:
    postgres = os.environ.get("FLOWKER_BENCH_POSTGRES_URL") or os.environ.get("FLOWKER_TEST_POSTGRES_URL")
    if args.backend == "postgresql" and not postgres:
        sys.exit("set FLOWKER_BENCH_POSTGRES_URL (or FLOWKER_TEST_POSTGRES_URL) for the PostgreSQL run")
    scratch = Scratch(args.backend, postgres)
    key = cp.generate_signing_key()
    key_path = Path(scratch.folder) / "signing.pem"
    key_path.write_text(cp.private_key_pem(key))
    server = None
    try:
        url = scratch.new()
        loaded = bulk_load(url, args.entries, key)
        print(f"chain: {args.entries} entries ({args.backend}) loaded in {loaded:.1f} s")
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWKER_")}
        env.update(
            FLOWKER_DATABASE_URL=url,
            FLOWKER_API_KEYS=f"bench:{API_KEY}",
            FLOWKER_AUDIT_SIGNING_KEY=str(key_path),
            FLOWKER_AUDIT_CHECKPOINT_INTERVAL=str(CHECKPOINT_INTERVAL),
            FLOWKER_LOG_LEVEL="WARNING",
            PYTHONPATH=args.server_path,
        )
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flowker",
                "serve",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "1",
                "--threads",
                "4",
            ],
            env=env,
            cwd=args.server_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        base = f"http://127.0.0.1:{port}"
        session = requests.Session()
        session.headers["X-API-Key"] = API_KEY
        deadline = time.monotonic() + 60
        while True:
            try:
                if session.get(f"{base}/v1/executions", params={"limit": 1}, timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                sys.exit("the server did not start")
            time.sleep(0.2)
        workers = children(server.pid)
        worker = workers[0] if workers else server.pid
        for _ in range(20):  # warm up the worker's ordinary paths
            session.get(f"{base}/v1/executions", params={"limit": 1}, timeout=5)
        baseline = rss_mib(worker)

        stop = threading.Event()
        latencies: list[float] = []
        samples: list[float] = []
        verifies: dict = {"ok": 0, "busy": 0, "invalid": 0, "seconds": []}

        def reader() -> None:
            own = requests.Session()
            own.headers["X-API-Key"] = API_KEY
            while not stop.is_set():
                started = time.perf_counter()
                own.get(f"{base}/v1/executions", params={"limit": 1}, timeout=60)
                latencies.append(time.perf_counter() - started)
                time.sleep(0.02)

        def sampler() -> None:
            while not stop.is_set():
                samples.append(rss_mib(worker))
                time.sleep(0.25)

        database = open_database(url)
        log = AuditLog(database, signing_key=key, checkpoint_interval=CHECKPOINT_INTERVAL)

        def verifier() -> None:
            own = requests.Session()
            own.headers["X-API-Key"] = API_KEY
            while not stop.is_set():
                started = time.perf_counter()
                with database.connection_context():
                    entry = log.append("WORKFLOW_UPDATED", "UPDATE", "SUCCESS", "workflow", "bench")
                response = own.get(f"{base}/v1/audit-events/{entry.event_id}/verify", timeout=600)
                if response.status_code == 200:
                    verifies["ok"] += 1
                    verifies["invalid"] += not response.json()["isValid"]
                    verifies["seconds"].append(time.perf_counter() - started)
                elif response.status_code == 429:
                    verifies["busy"] += 1
                wait = 1 / args.verify_rate - (time.perf_counter() - started)
                if wait > 0:
                    stop.wait(wait)

        threads = [threading.Thread(target=reader) for _ in range(args.clients)]
        threads += [threading.Thread(target=sampler)]
        threads += [threading.Thread(target=verifier) for _ in range(args.verifiers)]
        for thread in threads:
            thread.start()
        time.sleep(args.seconds)
        stop.set()
        for thread in threads:
            thread.join(600)
        close_database(database)
        end = rss_mib(worker)
        peak = max(samples) if samples else end
        print(
            f"worker RSS: {baseline:.0f} MiB before, peak {peak:.0f} MiB, {end:.0f} MiB after "
            f"(growth {peak - baseline:+.1f} MiB peak, {end - baseline:+.1f} MiB after)"
        )
        mean = sum(verifies["seconds"]) / len(verifies["seconds"]) if verifies["seconds"] else float("nan")
        if verifies["invalid"]:
            print(
                f"NOTE: {verifies['invalid']} verifies answered invalid (a server from another checkout reading "
                "this one's checkpoints?)"
            )
        print(f"load average at the end: {os.getloadavg()[0]:.1f}")
        print(
            f"verifies: {verifies['ok']} completed (mean {mean:.2f} s each), {verifies['busy']} refused with 429, "
            f"in {args.seconds} s at up to {args.verify_rate}/s from {args.verifiers} client(s)"
        )
        print(
            f"other requests (GET /v1/executions?limit=1, {args.clients} clients): {len(latencies)} requests, "
            f"p50 {percentile(latencies, 0.5) * 1000:.1f} ms, p99 {percentile(latencies, 0.99) * 1000:.1f} ms, "
            f"max {max(latencies) * 1000:.1f} ms"
        )
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
        scratch.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--verify-rate", type=float, default=2.0, help="verifies per second per verifying client")
    parser.add_argument("--verifiers", type=int, default=2, help="clients asking for verifies concurrently")
    parser.add_argument("--clients", type=int, default=4, help="clients of other requests")
    parser.add_argument(
        "--server-path",
        default=str(Path(__file__).resolve().parents[1]),
        help="the checkout whose `flowker serve` runs (to compare with another version)",
    )
    run(parser.parse_args())


if __name__ == "__main__":
    main()

"""``flowker serve`` spreads keep-alive connections over its workers
(flowker.api.gunicorn_worker.BalancedThreadWorker).

With gthread's own accept, a burst of connections often lands on one worker and stays
there (every request of those clients then runs on one core). Here a burst of eight
keep-alive clients against 2 workers x 4 threads must leave four connections on each
worker, which /proc shows: each worker's socket descriptors, matched against the
established TCP connections on the server's port."""

from __future__ import annotations

import http.client
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from e2e_helpers import API_KEY

ESTABLISHED = "01"
THREADS = 4  # per worker; 2 workers, 8 clients (plain gthread: 5/3 or 6/2 seen)
WORKER_READY = re.compile(r"worker \d+ ready")


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:  # the parent pid
                found.append(int(entry.name))
    return found


def _established_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == ESTABLISHED:
                inodes.add(fields[9])
    return inodes


def connections_per_worker(master_pid: int, port: int) -> dict[int, int]:
    """How many established connections to ``port`` each worker of ``master_pid`` holds."""
    inodes = _established_inodes(port)
    counts = {}
    for worker in _children(master_pid):
        held = 0
        for fd in Path(f"/proc/{worker}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                held += 1
        counts[worker] = held
    return counts


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc to see which worker holds what")
def test_a_burst_of_keep_alive_clients_is_spread_over_the_workers(start_server):
    server = start_server(workers=2, threads=THREADS)
    deadline = time.monotonic() + 30
    while len(WORKER_READY.findall(server.output)) < 2 and time.monotonic() < deadline:  # both accept
        time.sleep(0.05)
    assert len(WORKER_READY.findall(server.output)) == 2, server.output
    parts = urlsplit(server.url)
    clients = [http.client.HTTPConnection(parts.hostname, parts.port, timeout=10) for _ in range(2 * THREADS)]
    for client in clients:  # one after the other, at once, as wrk or a connection pool does
        client.connect()

    def first_request(client: http.client.HTTPConnection) -> int:
        client.request("GET", "/version", headers={"X-API-Key": API_KEY})
        response = client.getresponse()
        response.read()
        return response.status

    try:
        with ThreadPoolExecutor(max_workers=len(clients)) as pool:
            assert list(pool.map(first_request, clients)) == [200] * len(clients)
        counts = connections_per_worker(server.process.pid, parts.port)
        assert len(counts) == 2, counts
        assert sorted(counts.values()) == [THREADS, THREADS], counts
        # The connections stay where they are: more requests on each change nothing.
        for client in clients:
            assert first_request(client) == 200
        assert sorted(connections_per_worker(server.process.pid, parts.port).values()) == [THREADS, THREADS]
    finally:
        for client in clients:
            client.close()

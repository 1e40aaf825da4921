"""Cost of checking a stored API key (one indexed read per request, DESIGN §13) against a
key from FLOWKER_API_KEYS (in memory), through the whole Falcon app in this process.

    .venv/bin/python benchmarks/api_keys.py [--requests 1000] [--postgres URL]

Prints, per backend, the median microseconds per ``GET /v1/workflows?limit=1`` with each
kind of key (7 interleaved rounds), their ratio, the extra cost of the stored key, and how many
last-used writes the stored key caused over all those requests (batched: at most one per
key per minute per process).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

ENV_KEY = "bench-env-key-0123456789abcdef0123456789"


ROUNDS = 7


def one_round(client, headers: dict, count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        response = client.simulate_get("/v1/workflows", params={"limit": "1"}, headers=headers)
        if response.status_code != 200:
            raise SystemExit(f"unexpected {response.status_code}: {response.text}")
    return (time.perf_counter() - started) / count * 1e6


def measure(client, kinds: dict[str, dict], count: int) -> dict[str, float]:
    """Median microseconds per request of each kind, the kinds' rounds interleaved so
    that a change of load on a shared machine hits both alike."""
    rounds: dict[str, list[float]] = {name: [] for name in kinds}
    for _ in range(ROUNDS):
        for name, headers in kinds.items():
            rounds[name].append(one_round(client, headers, count))
    return {name: statistics.median(values) for name, values in rounds.items()}


def run(database_url: str, count: int) -> str:
    import falcon.testing

    from flowker.api.app import create_app
    from flowker.settings import Settings
    from flowker.storage.database import bind_database, close_database
    from flowker.storage.migrations import upgrade

    database = bind_database(database_url)
    upgrade(database)
    settings = Settings.from_mapping({"database_url": database_url, "api_keys": f"bench:{ENV_KEY}"})
    app = create_app(settings)
    try:
        client = falcon.testing.TestClient(app)
        made = client.simulate_post(
            "/v1/api-keys", json={"name": f"bench-{os.getpid()}", "role": "viewer"}, headers={"X-API-Key": ENV_KEY}
        )
        stored = {"X-API-Key": made.json["key"]}
        one_round(client, stored, 50)  # warm up (connections, caches; the first last-used write)
        writes_before = app.state.api_keys.last_used_writes
        figures = measure(client, {"environment": {"X-API-Key": ENV_KEY}, "stored": stored}, count)
        environment, in_database = figures["environment"], figures["stored"]
        writes = app.state.api_keys.last_used_writes - writes_before
        client.simulate_delete(f"/v1/api-keys/bench-{os.getpid()}", headers={"X-API-Key": ENV_KEY})
    finally:
        app.state.close()
        close_database(database)
    return (
        f"{database_url.split(':', 1)[0]:<10} FLOWKER_API_KEYS key {environment:7.0f} us/request, "
        f"stored key {in_database:7.0f} us/request (x{in_database / environment:.2f}, "
        f"+{in_database - environment:.0f} us); last-used writes over the next {ROUNDS * count} requests: {writes}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="requests per round")
    parser.add_argument("--postgres", help="a PostgreSQL URL to measure too (its tables are created there)")
    options = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as root:
        print(run(f"sqlite:///{root}/bench.db", options.requests))
    if options.postgres:
        print(run(options.postgres, options.requests))


if __name__ == "__main__":
    main()

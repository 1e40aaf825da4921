"""The peer workload in Prefect: a flow run (the trigger), 10 tasks each calling the stub
over HTTP, and the flow's return value (the output).

Run by :mod:`benchmarks.peer` with the separate virtualenv's Python (Prefect is not a
Flowker dependency); it never imports Flowker. Offline: no PREFECT_API_URL, so Prefect
runs its ephemeral local server (SQLite under PREFECT_HOME, on 127.0.0.1); telemetry
and analytics are off. Prints one JSON object: per-step overhead samples in ms
((flow wall time - time inside the 10 HTTP calls) / 12 steps), and start-up seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

STEPS = 12  # trigger + 10 calls + output, as in Flowker's workflow


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stub-url", required=True)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args(argv)

    import httpx
    import prefect
    from prefect import flow, task

    client = httpx.Client(base_url=args.stub_url, headers={"Authorization": "Bearer benchmark-token-value"})
    inside_calls = [0.0]

    @task
    def call_stub(order_id: str, step: int) -> dict:
        began = time.perf_counter()
        response = client.post("/score", json={"orderId": order_id, "step": step})
        response.raise_for_status()
        body = response.json()
        inside_calls[0] += time.perf_counter() - began
        return body

    @flow
    def ten_calls(order_id: str) -> dict:
        last = None
        for step in range(10):
            last = call_stub(order_id, step)
        return {"orderId": order_id, "score": last["score"]}

    samples, startup = [], None
    for number in range(args.warmup + args.runs):
        inside_calls[0] = 0.0
        began = time.perf_counter()
        output = ten_calls(f"o-{number}")
        wall = time.perf_counter() - began
        if output.get("score") is None:
            raise SystemExit(f"the peer flow returned {output!r}")
        if startup is None:
            startup = wall
        if number >= args.warmup:
            samples.append((wall - inside_calls[0]) * 1000.0 / STEPS)
    print(
        json.dumps(
            {"engine": f"prefect {prefect.__version__}", "samples": samples, "startup_seconds": startup, "steps": STEPS}
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

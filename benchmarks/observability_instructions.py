"""What logs, metrics and traces cost in instructions: a figure the machine's speed does not move.

    .venv/bin/python -m benchmarks.observability_instructions [--variants off,on] [--executions 50,250] [--per-thread]

On this 2-core machine the servers' CPU per execution moves by a third between rounds a
minute apart, so ``benchmarks/observability_cost.py`` needs many rounds to see a 10 % effect
(benchmarks/README.md). This counts work instead: each variant (the environments of
:data:`benchmarks.observability_cost.VARIANTS`) runs the REST benchmark's synchronous 3-node
execution through the whole Falcon app in one process (falcon's TestClient: the
middleware, authentication, the run, its commits, its log lines, metrics and spans; no
gunicorn, no socket to a client) under ``valgrind --tool=callgrind``, once with a few
executions and once with more, and the difference of the two instruction totals divided
by the difference of the counts is the instructions per execution. Instruction counts
do not follow what else the machine runs, but they do not repeat exactly either: timers
(the log batch, the metrics and progress threads) fire a different number of times, and
the hash seed (fixed at 0 here) changes set and dict orders; ``off`` has moved by up to
2 % between runs, so compare variants of one run, and small differences twice. They are not
time (a cache miss costs more than an add), so this is a proxy for the throughput target,
for finding and checking reductions, not the target itself.

``--per-thread`` counts each thread apart (callgrind's ``--separate-threads``): thread 1
runs the requests; the others, numbered as they started, are the background threads (the
span export, the log writer, the WAL checkpoints, timers), told apart by their sizes. The
SQLite WAL checkpoint thread's count follows wall-clock time, not executions, and is most
of the noise in the totals.

The stub executor and, for traced variants, the OTLP receiver run outside valgrind. Log
lines go to /dev/null; metrics use a fresh multiprocess directory.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

API_KEY = "instructions-api-key-0123456789"
CHILD_FLAG = "--child"


def child(variant_env: dict[str, str], stub_port: int, executions: int, warmup: int) -> None:
    """One measured process: set the variant up, run ``warmup`` then ``executions``."""
    import logging

    folder = tempfile.mkdtemp(prefix="flowker-instructions-")
    os.environ.update(variant_env)
    if "OTEL_EXPORTER_OTLP_ENDPOINT" in variant_env:
        # Under valgrind an execution takes a good part of a second, so the span batch's 5 s
        # timer would send a small batch (an HTTP request: millions of instructions) every
        # few executions; a busy server fills its 512-span batches long before the timer.
        # Batches by size only, as there.
        os.environ.setdefault("OTEL_BSP_SCHEDULE_DELAY", "3600000")
    os.environ.update(
        FLOWKER_DATABASE_URL=f"sqlite:///{folder}/flowker.db",
        FLOWKER_API_KEYS=f"bench:{API_KEY}",
        BENCHMARK_STUB_TOKEN="benchmark-stub-token",
    )
    if os.environ.get("FLOWKER_METRICS", "on") != "off":
        from flowker.observability.metrics import join_metrics_directory

        metrics_folder = os.path.join(folder, "metrics")
        os.mkdir(metrics_folder)
        join_metrics_directory(metrics_folder)
        # The same for the metrics' flusher (every 0.1 s): here that is a flush, and the GIL
        # handed to it and back, every few executions, where a busy server's flush serves a
        # hundred. Its own work (the amounts into the files) is left out of the counts.
        from flowker.observability import metric_writes

        metric_writes._pending.flush_seconds = 3600.0
    import falcon.testing

    from benchmarks.profile_paths import rest_workflow_in_process
    from flowker.api.app import create_app
    from flowker.observability.logs import configure_logging
    from flowker.settings import Settings
    from flowker.storage.database import bind_database
    from flowker.storage.migrations import upgrade

    settings = Settings.load()
    configure_logging(settings)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the process
    upgrade(bind_database(settings.database_url))
    app = create_app(settings)
    try:
        client = falcon.testing.TestClient(app, headers={"X-API-Key": API_KEY})
        path = rest_workflow_in_process(client, stub_port)
        for number in range(warmup + executions):
            answer = client.simulate_post(path, json={"inputData": {"orderId": f"i-{number}", "amount": number}})
            if answer.status_code != 201 or answer.json["status"] != "completed":
                raise SystemExit(f"execution failed: {answer.status_code} {answer.text[:300]}")
    finally:
        app.state.close()
        shutil.rmtree(folder, ignore_errors=True)


def instructions(variant_env: dict, stub_port: int, executions: int, warmup: int, per_thread: bool) -> dict[int, int]:
    """Instructions callgrind counted for one child process (startup included): per thread,
    or ``{0: total}``."""
    from benchmarks.load_tools import callgrind_instructions_per_thread

    # The variant's settings only (as benchmarks/api.py's Server): none inherited.
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("FLOWKER_", "OTEL_"))}
    arguments = [str(Path(__file__).resolve()), CHILD_FLAG, repr((variant_env, stub_port, executions, warmup))]
    return callgrind_instructions_per_thread(arguments, ROOT, environment, separate=per_thread)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default="off,on", help="names of benchmarks.observability_cost.VARIANTS")
    parser.add_argument("--executions", default="50,250", help="the two counts whose difference is measured")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--per-thread", action="store_true", help="count each thread apart as well")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    from concurrent.futures import ThreadPoolExecutor

    from benchmarks.api import start_stub
    from benchmarks.observability_cost import RECEIVER, VARIANTS, start_receiver

    names = args.variants.split(",")
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"--variants: choose among {', '.join(VARIANTS)}")
    few, many = (int(part) for part in args.executions.split(","))
    stub, stub_port = start_stub()
    receiver, receiver_url, spans = start_receiver()
    try:
        environments = {
            name: {key: value.replace(RECEIVER, receiver_url) for key, value in VARIANTS[name].items()}
            for name in names
        }
        # Two processes at a time (the machine's two cores): counts do not depend on it.
        with ThreadPoolExecutor(max_workers=2) as pool:
            totals = {
                (name, count): pool.submit(
                    instructions, environments[name], stub_port, count, args.warmup, args.per_thread
                )
                for name in names
                for count in (few, many)
            }
            threads = {}
            for name in names:
                small, large = totals[(name, few)].result(), totals[(name, many)].result()
                threads[name] = {
                    thread: (large.get(thread, 0) - small.get(thread, 0)) / (many - few) for thread in sorted(large)
                }
            per_execution = {name: sum(threads[name].values()) for name in names}
    finally:
        stub.terminate()
        receiver.terminate()
    print(f"instructions per synchronous 3-node REST execution, in one process under callgrind ({many} - {few} runs):")
    base = per_execution.get("off")
    for name in names:
        ratio = f"  {100 * per_execution[name] / base:.1f} % of off" if base and name != "off" else ""
        print(f"  {name:16s} {per_execution[name] / 1e6:8.3f} M{ratio}")
        if args.per_thread:
            print("      per thread, k: " + ", ".join(f"{t}: {v / 1e3:,.0f}" for t, v in threads[name].items()))
    print(f"spans received: {spans.value}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == CHILD_FLAG:
        import ast

        child(*ast.literal_eval(sys.argv[2]))
        sys.exit(0)
    sys.exit(main())

"""Same-run ratios against the commit a piece of work started from (DESIGN §17, issue 18).

    .venv/bin/python -m benchmarks.before_after [--before cc15ca9] [--parts steps,rest]
        [--rounds 6] [--executions 150] [--rest-rounds 3] [--rest-seconds 8]
        [--rest-variants before-sqlite,after-sqlite,after-postgresql] [--postgres-url URL] [--json FILE]

``--before COMMIT`` (default: :data:`benchmarks.before_tree.DEFAULT_BEFORE`, where issue 18's
work started) is unpacked into ``benchmarks/.before-tree`` with its own virtualenv
``benchmarks/.before-venv`` (both git-ignored, reused while the commit is the same; see
:mod:`benchmarks.before_tree`). "after" is this working tree, run by this interpreter.
Every measured process is a subprocess with its tree's interpreter and ``PYTHONPATH``;
this process imports nothing of the before tree. Rounds alternate (before, after, after,
before, ...) so that the machine's drift falls on both alike.

Parts:

* ``steps``: runner overhead per step, one process per tree (``benchmarks/step_child.py``,
  the same measuring code for both), the 10-call HTTP chain of ``benchmarks/peer.py``
  (trigger, 10 executor calls to the stub, ``set_output``: 12 steps) on SQLite, every step
  row and audit entry committed. Per execution: (wall time - time inside the HTTP
  transport) / 12. Both trees call one stub process. Targets: after p50 and p99 <= 60 %
  of before; p50 <= 0.25 ms, p99 <= 1 ms.
* ``rest``: ``flowker serve`` (2 gthread workers x 1 thread, both cores) driven by wrk
  (4 connections) with synchronous 3-node executions (``benchmarks/api.py``'s workload), a
  fresh database and server per round. Per variant: executions/s, p50/p99 (median of the
  rounds), the servers' CPU ms per completed execution. Targets: after-sqlite CPU <= 75 %
  of before-sqlite, throughput >= 1.3x, p99 <= 50 ms; after-postgresql >= 75 % of
  after-sqlite's throughput. PostgreSQL runs in a fresh schema of ``--postgres-url``
  (created if missing, dropped after each round).

With no change between the trees (``--before HEAD``) every ratio should be 1.0 within the
noise: that A/A run is how the harness shows it is fair.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import before_tree  # noqa: E402
from benchmarks.rounds import Figures, LineChild, load_average, round_order  # noqa: E402

STEP_CHILD = ROOT / "benchmarks" / "step_child.py"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/flowker_bench"
STEP_TARGET_RATIO = 0.60
STEP_TARGET_P50, STEP_TARGET_P99 = 0.25, 1.0
CPU_TARGET_RATIO, RATE_TARGET_RATIO, REST_P99_TARGET = 0.75, 1.3, 50.0
POSTGRES_TARGET_RATIO = 0.75


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


# --------------------------------------------------------------------------- steps


def step_child(checkout: before_tree.Checkout, stub_url: str, workflows: dict, database_url: str | None = None):
    """A ``step_child.py`` of ``checkout``, set up with ``workflows``; (child, flowker path)."""
    child = LineChild(
        [str(checkout.python), "-P", str(STEP_CHILD)], checkout.environment(dict(os.environ)), tempfile.gettempdir()
    )
    answer = child.ask({"op": "setup", "database_url": database_url, "stub_url": stub_url, "workflows": workflows})
    return child, answer["flowker"]


def run_steps(checkouts: list, args, log=print) -> dict:
    from benchmarks import api as api_bench
    from benchmarks.overhead import ten_calls_workflow

    workflows = {"ten-calls": ten_calls_workflow()}
    stub, port = api_bench.start_stub()
    children = {}
    figures = {checkout.label: Figures(checkout.label) for checkout in checkouts}
    try:
        for checkout in checkouts:
            child, where = step_child(checkout, f"http://127.0.0.1:{port}", workflows)
            children[checkout.label] = child
            log(f"  {checkout.label} ({checkout.commit}): flowker from {where}")
            child.ask({"op": "round", "workflow": "ten-calls", "executions": args.warmup})
        for number in range(args.rounds):
            for checkout in round_order(checkouts, number):
                answer = children[checkout.label].ask(
                    {"op": "round", "workflow": "ten-calls", "executions": args.executions}
                )
                figures[checkout.label].add_round(answer["samples"], answer["cpu_ms"], answer["seconds"])
    finally:
        for child in children.values():
            child.stop()
        stub.terminate()
        stub.join(timeout=10)
    before, after = figures["before"], figures["after"]
    p50_ratio, p99_ratio = after.p50 / before.p50, after.p99 / before.p99
    steps = len(workflows["ten-calls"]["nodes"])
    log(
        f"per-step overhead, trigger + 10 HTTP calls + output ({steps} steps), SQLite, "
        f"{args.rounds} alternating rounds x {args.executions} executions per tree:"
    )
    for one in (before, after):
        cpu = statistics.median(one.cpu_ms)
        log(
            f"  {one.label:6s} p50 {one.p50:.3f} ms  p99 {one.p99:.3f} ms  (rounds' p50: {one.rounds_text()}; "
            f"process CPU per execution p50 {cpu:.2f} ms)"
        )
    spread = [a / b for a, b in zip(after.round_p50, before.round_p50)]
    log(
        f"  after / before: p50 {100 * p50_ratio:.1f} %, p99 {100 * p99_ratio:.1f} % "
        f"(per round p50: {min(spread) * 100:.0f}-{max(spread) * 100:.0f} %)  "
        f"target <= {100 * STEP_TARGET_RATIO:.0f} %: {verdict(p50_ratio <= STEP_TARGET_RATIO)}"
    )
    log(
        f"  after absolute: p50 {after.p50:.3f} ms (target <= {STEP_TARGET_P50}: "
        f"{verdict(after.p50 <= STEP_TARGET_P50)}), p99 {after.p99:.3f} ms (target <= {STEP_TARGET_P99}: "
        f"{verdict(after.p99 <= STEP_TARGET_P99)})"
    )
    return {
        "before": before.as_dict(),
        "after": after.as_dict(),
        "p50_ratio": p50_ratio,
        "p99_ratio": p99_ratio,
        "round_p50_ratios": spread,
    }


# --------------------------------------------------------------------------- REST


@dataclass
class RestTotals:
    label: str
    completed: int = 0
    errors: int = 0
    seconds: float = 0.0
    server_cpu: float = 0.0
    postgres_cpu: float = 0.0
    rates: list = field(default_factory=list)
    round_cpu_ms: list = field(default_factory=list)  # servers' CPU ms per execution, each round
    p50: list = field(default_factory=list)
    p99: list = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0

    def cpu_ms(self, seconds: float) -> float:
        return 1000.0 * seconds / self.completed if self.completed else 0.0

    def as_dict(self) -> dict:
        return {
            "label": self.label,
            "rate": self.rate,
            "round_rates": self.rates,
            "round_server_cpu_ms": self.round_cpu_ms,
            "p50_ms": statistics.median(self.p50) if self.p50 else None,
            "p99_ms": statistics.median(self.p99) if self.p99 else None,
            "server_cpu_ms": self.cpu_ms(self.server_cpu),
            "postgres_cpu_ms": self.cpu_ms(self.postgres_cpu),
            "errors": self.errors,
        }


def ensure_database(url: str) -> None:
    """Create the database of ``url`` when it does not exist (a database of the benchmark's own)."""
    import psycopg2

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    connection = psycopg2.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5432,
        user=parts.username or "postgres",
        dbname="postgres",
    )
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cursor.fetchone() is None:
                cursor.execute(f'CREATE DATABASE "{name}"')
    finally:
        connection.close()


def rest_round(checkout: before_tree.Checkout, backend: str, stub_port: int, args, wrk: str) -> dict:
    """One round of one variant on a fresh database and server."""
    from contextlib import ExitStack

    from benchmarks import api as api_bench
    from benchmarks.load_tools import cpu_seconds, postgres_pids, process_tree

    folder = tempfile.mkdtemp(prefix="flowker-before-after-")
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, folder, True)
        if backend == "postgresql":
            database_url = stack.enter_context(api_bench.FreshPostgresSchema(args.postgres_url))
        else:
            database_url = f"sqlite:///{folder}/flowker.db"
        server = api_bench.Server(database_url, args.workers, args.threads, checkout=checkout)
        stack.callback(server.stop)
        api_bench.wait_ready(server.url)
        workflow_id = api_bench.create_workflow(server.url, stub_port)
        api_bench.Load(server.url, workflow_id, args.rest_warmup, 60).run(args.connections)
        pids = process_tree(server.process.pid)
        database_before = {pid: cpu_seconds([pid]) for pid in postgres_pids()} if backend == "postgresql" else {}
        cpu_before = cpu_seconds(pids)
        result = api_bench.run_wrk(server.url, workflow_id, args.rest_seconds, args.connections, wrk=wrk)
        server_cpu = cpu_seconds(pids) - cpu_before
        # PostgreSQL backends started during the load count from zero (those that ended are lost).
        database_cpu = 0.0
        if backend == "postgresql":
            database_cpu = sum(cpu_seconds([pid]) - database_before.get(pid, 0.0) for pid in postgres_pids())
        return {
            "completed": result.completed,
            "errors": result.errors,
            "seconds": result.seconds,
            "server_cpu": server_cpu,
            "postgres_cpu": database_cpu,
            "p50": result.latencies_ms["p50"],
            "p99": result.latencies_ms["p99"],
        }


def run_rest(checkouts: dict, args, log=print) -> dict:
    from benchmarks import api as api_bench

    wrk = api_bench.find_wrk()
    if wrk is None:
        raise SystemExit("the rest part needs wrk (apt-get install wrk)")
    variants = [name.strip() for name in args.rest_variants.split(",") if name.strip()]
    for name in variants:
        side, _, backend = name.partition("-")
        if side not in checkouts or backend not in ("sqlite", "postgresql"):
            raise SystemExit(f"--rest-variants: {name!r} is not (before|after)-(sqlite|postgresql)")
    if any(name.endswith("postgresql") for name in variants):
        ensure_database(args.postgres_url)
    totals = {name: RestTotals(name) for name in variants}
    stub, stub_port = api_bench.start_stub()
    try:
        for number in range(args.rest_rounds):
            for name in round_order(variants, number):
                side, _, backend = name.partition("-")
                one = rest_round(checkouts[side], backend, stub_port, args, wrk)
                total = totals[name]
                total.completed += one["completed"]
                total.errors += one["errors"]
                total.seconds += one["seconds"]
                total.server_cpu += one["server_cpu"]
                total.postgres_cpu += one["postgres_cpu"]
                total.rates.append(one["completed"] / one["seconds"] if one["seconds"] else 0.0)
                total.round_cpu_ms.append(1000.0 * one["server_cpu"] / one["completed"] if one["completed"] else 0.0)
                total.p50.append(one["p50"])
                total.p99.append(one["p99"])
    finally:
        stub.terminate()
        stub.join(timeout=10)
    log(
        f"REST, synchronous 3-node executions, 1 server x {args.workers} workers x {args.threads} thread, wrk "
        f"{args.connections} connections, {args.rest_rounds} alternating rounds x {args.rest_seconds:g} s per variant:"
    )
    for total in totals.values():
        row = total.as_dict()
        postgres = f", PostgreSQL {row['postgres_cpu_ms']:.2f} ms (all its processes)" if total.postgres_cpu else ""
        log(
            f"  {total.label:18s} {total.rate:6.1f}/s (rounds: {', '.join(f'{r:.0f}' for r in total.rates)}), "
            f"p50 {row['p50_ms']:.1f} ms, p99 {row['p99_ms']:.1f} ms, {total.errors} errors; "
            f"CPU per execution: servers {row['server_cpu_ms']:.2f} ms{postgres}"
        )
    summary = {"variants": {name: total.as_dict() for name, total in totals.items()}}
    before, after = totals.get("before-sqlite"), totals.get("after-sqlite")
    if before and after and before.rate and after.rate:
        cpu_ratio = after.cpu_ms(after.server_cpu) / before.cpu_ms(before.server_cpu)
        rate_ratio = after.rate / before.rate
        p99 = statistics.median(after.p99)
        spread = [a / b for a, b in zip(after.rates, before.rates)]
        cpu_spread = [a / b for a, b in zip(after.round_cpu_ms, before.round_cpu_ms) if b]
        summary.update(
            cpu_ratio=cpu_ratio, rate_ratio=rate_ratio, round_rate_ratios=spread, round_cpu_ratios=cpu_spread
        )
        log(
            f"  after / before (SQLite): servers' CPU per execution {100 * cpu_ratio:.1f} % "
            f"(per round {100 * min(cpu_spread):.0f}-{100 * max(cpu_spread):.0f} %; "
            f"target <= {100 * CPU_TARGET_RATIO:.0f} %: {verdict(cpu_ratio <= CPU_TARGET_RATIO)}), "
            f"throughput {rate_ratio:.2f}x (per round {min(spread):.2f}-{max(spread):.2f}x; target >= "
            f"{RATE_TARGET_RATIO}x: {verdict(rate_ratio >= RATE_TARGET_RATIO)}), after p99 {p99:.1f} ms "
            f"(target <= {REST_P99_TARGET:g}: {verdict(p99 <= REST_P99_TARGET)})"
        )
    for side in ("before", "after"):
        sqlite, postgres = totals.get(f"{side}-sqlite"), totals.get(f"{side}-postgresql")
        if sqlite and postgres and sqlite.rate:
            ratio = postgres.rate / sqlite.rate
            summary[f"{side}_postgres_ratio"] = ratio
            log(
                f"  {side}: PostgreSQL / SQLite throughput {100 * ratio:.1f} %"
                + (
                    f" (target >= {100 * POSTGRES_TARGET_RATIO:.0f} %: {verdict(ratio >= POSTGRES_TARGET_RATIO)})"
                    if side == "after"
                    else ""
                )
            )
    return summary


# --------------------------------------------------------------------------- main


def parse(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.before_after", description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default=before_tree.DEFAULT_BEFORE, help="the commit to compare with")
    parser.add_argument("--parts", default="steps,rest", help="comma-separated, of steps, rest")
    parser.add_argument("--rounds", type=int, default=6, help="steps: alternating rounds per tree")
    parser.add_argument("--executions", type=int, default=150, help="steps: executions per round")
    parser.add_argument("--warmup", type=int, default=30, help="steps: executions before the first round")
    parser.add_argument("--rest-rounds", type=int, default=3)
    parser.add_argument("--rest-seconds", type=float, default=8.0)
    parser.add_argument("--rest-warmup", type=int, default=200, help="rest: requests before each round's load")
    parser.add_argument("--rest-variants", default="before-sqlite,after-sqlite,after-postgresql")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("FLOWKER_BENCH_POSTGRES_URL") or DEFAULT_POSTGRES,
        help="a database of the benchmark's own (created if missing); each round uses a fresh schema",
    )
    parser.add_argument("--json", dest="json_path", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    unknown = set(args.parts.split(",")) - {"steps", "rest"}
    if unknown:
        parser.error(f"unknown part(s): {', '.join(sorted(unknown))}")
    return args


def run(args, log=print) -> dict:
    before = before_tree.prepare(args.before, log)
    after = before_tree.current()
    checkouts = {"before": before, "after": after}
    same_code = before_tree.same_code(before.commit)
    log(
        f"before: {before.commit} ({before.root}), after: {after.commit} (this tree"
        f"{', flowker/ and specs/ identical to before: an A/A run' if same_code else ''}); "
        f"{os.cpu_count()} CPUs, load average {load_average()}"
    )
    results: dict = {
        "before": before.commit,
        "after": after.commit,
        "same_code": same_code,
        "load_average_start": load_average(),
    }
    began = time.monotonic()
    for part in args.parts.split(","):
        log(f"\n== {part} (load average {load_average()})")
        if part == "steps":
            results["steps"] = run_steps([before, after], args, log)
        else:
            results["rest"] = run_rest(checkouts, args, log)
    results["load_average_end"] = load_average()
    log(f"\ntook {time.monotonic() - began:.0f} s; load average at the end {load_average()}")
    return results


def main(argv=None) -> int:
    args = parse(argv)
    results = run(args)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The performance suite: every figure of the product in one table.

    .venv/bin/python -m benchmarks [--full] [--sections runner,rest,audit,validate,peer,dbos,before]
                                   [--postgres-url URL] [--generator auto|wrk|python]
                                   [--before COMMIT] [--install-peer] [--json FILE]

Sections (each bounded by its counts and durations; a failing section prints its error
and the others still run):

* runner: overhead per step of the real ExecutionService (benchmarks/runner.py's
  workflows), and the in-process ceiling for the REST workflow;
* rest: completed 3-node executions/s and latency through ``flowker serve`` on SQLite,
  and on PostgreSQL with 1 and 2 servers (benchmarks/api.py's servers and stub; load from
  ``wrk`` when installed, else api.py's threaded client), the chain verified after each,
  CPU use, audit-lock waiters, and the memory of every gunicorn worker after the load;
  PostgreSQL 1 and 2 servers once more with each server a host of ``--host-cores`` CPUs
  (a cgroup CPU quota per server, benchmarks/hosts.py; 0 leaves those rows out);
* audit: appends/s (one writer, signed, N processes) and verify rate (benchmarks/audit.py),
  and on PostgreSQL the audit lock held per append, client-side and with one server-side
  call (benchmarks/audit_lock.py);
* validate: ``flowker validate`` over 1,000 generated spec files;
* peer: the same 10-call workload in Flowker and in Prefect, per-step overhead ratio;
* dbos: the same 10-call workload in Flowker and in DBOS Transact, durable steps on SQLite
  and on PostgreSQL, rounds interleaved (benchmarks/dbos_side_by_side.py);
* before: DESIGN §17's same-run ratios against ``--before COMMIT`` (default: where issue
  18's work started), checked out with its own virtualenv: per-step overhead, REST CPU per
  execution and throughput on SQLite, PostgreSQL / SQLite (benchmarks/before_after.py).

PostgreSQL comes from ``--postgres-url``, FLOWKER_BENCH_POSTGRES_URL or
FLOWKER_TEST_POSTGRES_URL (scratch schemas, dropped afterwards); a database of its own is
best, so the audit-lock sampling sees only the benchmark's sessions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import suite_ratios  # noqa: E402

SECTIONS = ("runner", "rest", "audit", "validate", "peer", "dbos", "before")
REST_CONFIGURATIONS = (
    "sqlite-1",
    "postgresql-1",
    "postgresql-2",
    "postgresql-1-pinned",
    "postgresql-2-pinned",
    "postgresql-1-host",
    "postgresql-2-host",
)

PROFILES = {
    "quick": {
        "runner_executions": 200,
        "runner_warmup": 20,
        "rest_seconds": 8.0,
        "rest_warmup": 2.0,
        "rest_repeat": 1,
        "audit_appends": 2000,
        "audit_processes": 2,
        "verify_entries": 100_000,
        "validate_files": 1000,
        "peer_runs": 15,
        "peer_warmup": 2,
        "dbos_rounds": 4,
        "dbos_executions": 40,
        "before_rounds": 4,
        "before_executions": 100,
        "before_rest_rounds": 3,
        "before_rest_seconds": 6.0,
    },
    "full": {
        "runner_executions": 1000,
        "runner_warmup": 50,
        "rest_seconds": 15.0,
        "rest_warmup": 3.0,
        "rest_repeat": 2,
        "audit_appends": 20000,
        "audit_processes": 4,
        "verify_entries": 1_000_000,
        "validate_files": 1000,
        "peer_runs": 50,
        "peer_warmup": 3,
        "dbos_rounds": 6,
        "dbos_executions": 100,
        "before_rounds": 8,
        "before_executions": 200,
        "before_rest_rounds": 4,
        "before_rest_seconds": 10.0,
    },
}


@dataclass
class Row:
    section: str
    figure: str
    value: str
    target: str = ""
    met: bool | None = None  # None: no target


class Table:
    def __init__(self):
        self.rows: list[Row] = []

    def add(self, section: str, figure: str, value: str, target: str = "", met: bool | None = None) -> None:
        row = Row(section, figure, value, target, met)
        self.rows.append(row)
        verdict = "" if met is None else ("  [met]" if met else "  [NOT met]")
        print(f"  {figure}: {value}" + (f"  (target {target})" if target else "") + verdict, flush=True)

    def render(self) -> str:
        header = ("section", "figure", "value", "target", "result")
        lines = [
            [r.section, r.figure, r.value, r.target, "" if r.met is None else ("met" if r.met else "NOT met")]
            for r in self.rows
        ]
        out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        out += ["| " + " | ".join(cells) + " |" for cells in lines]
        return "\n".join(out)


def load_average() -> str:
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "?"


# --------------------------------------------------------------------------- sections


def section_runner(table: Table, profile: dict, args) -> None:
    from benchmarks import api as api_bench
    from benchmarks import overhead

    stub, port = api_bench.start_stub()
    try:
        with overhead.service_on(f"http://127.0.0.1:{port}") as service:
            for name, label in (
                ("actions", "10 steps: trigger, 8 CEL transforms, set_output"),
                ("executors", "10 steps: trigger, 4 executor calls, 5 actions"),
            ):
                result = overhead.measure(service, name, profile["runner_executions"], profile["runner_warmup"])
                table.add(
                    "runner",
                    f"overhead per step, {label}",
                    f"p50 {result.p50:.3f} ms, p99 {result.p99:.3f} ms",
                    "p50 <= 0.5 ms",
                    result.p50 <= 0.5,
                )
            ceiling = overhead.measure(service, "three-nodes", profile["runner_executions"], profile["runner_warmup"])
            table.add(
                "runner",
                "3-node executions/s in one thread, no HTTP server (SQLite)",
                f"{ceiling.executions_per_second:.0f}/s (overhead p50 {ceiling.p50:.3f} ms/step)",
            )
    finally:
        stub.terminate()
        stub.join(timeout=10)


def section_rest(table: Table, profile: dict, args) -> None:
    from benchmarks import hosts, scaleout

    args.connections = args.connections or scaleout.DEFAULT_CONNECTIONS
    args.workers = args.workers or scaleout.DEFAULT_WORKERS
    args.threads = args.threads or scaleout.DEFAULT_THREADS
    generator = scaleout.choose_generator(args.generator)
    configurations = [name for name in REST_CONFIGURATIONS if args.host_cores > 0 or not name.endswith("-host")]
    best: dict = {}
    for _ in range(args.repeat or profile["rest_repeat"]):
        # Rounds interleave the configurations, so a burst of other work on the machine
        # hits one round, not one configuration; the best round of each is reported.
        for result in scaleout.run_all(
            postgres_url=args.postgres_url,
            generator=generator,
            seconds=profile["rest_seconds"],
            warmup_seconds=profile["rest_warmup"],
            connections=args.connections,
            workers=args.workers,
            threads=args.threads,
            configurations=configurations,
            host_cores=args.host_cores,
        ):
            if result.label not in best or result.rate > best[result.label].rate:
                best[result.label] = result
    by_label = {}
    for result in best.values():
        by_label[result.label] = result
        shape = f"{result.servers} server{'s' if result.servers > 1 else ''} x {args.workers} workers x {args.threads} threads"
        how = ", each server pinned to one core" if result.label.endswith("pinned") else ""
        if result.label.endswith("-host"):
            how = f", each server a host of {result.host_cores:g} cores (cgroup CPU quota)"
        figure = (
            f"REST 3-node executions/s, {result.backend}, {shape}{how} "
            f"({generator}, {args.connections} connections per server)"
        )
        if result.note.startswith("skipped"):
            table.add("rest", figure, result.note)
            continue
        value = (
            f"{result.rate:.0f}/s, p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms, "
            f"{result.errors} errors, CPU {100 * result.cpu_busy:.0f}% busy"
        )
        if result.audit_lock_waiters is not None:
            value += f", {result.audit_lock_waiters:.1f} sessions waiting for the audit lock"
        if result.cpu_ms:
            cpu = result.cpu_ms
            others = cpu["machine"] - cpu["workers"] - cpu["load generator"] - cpu["stub"] - cpu["postgres"]
            value += (
                f"; CPU ms per execution: workers {cpu['workers']:.2f}, postgres {cpu['postgres']:.2f}, "
                f"load generator {cpu['load generator']:.2f}, stub {cpu['stub']:.2f}, "
                f"other processes {max(0.0, others):.2f}; ceiling alone on this machine "
                f"~{ceiling(result):.0f}/s"
            )
            if result.hosts:
                # Servers at their budget (and throttled) are the bound, as hosts of that size would be.
                value += (
                    f"; server CPU vs budget: {hosts.host_use(result)}; host-bound ceiling "
                    f"{result.servers} x {result.host_cores:g} CPUs / workers' CPU per execution "
                    f"~{result.servers * result.host_cores * 1000 / cpu['workers']:.0f}/s"
                )
        target, met = ("", None)
        if result.label == "sqlite-1":
            target, met = ">= 500/s", result.rate >= 500
        table.add("rest", figure, value, target, met)
        table.add(
            "rest",
            f"audit chain after the load ({result.label})",
            f"{'valid' if result.chain_valid else 'BROKEN'}, {result.chain_entries} entries",
            "valid",
            bool(result.chain_valid),
        )
        if result.worker_rss_mb:
            rss = sum(result.worker_rss_mb) / len(result.worker_rss_mb)
            pss = sum(result.worker_pss_mb) / len(result.worker_pss_mb)
            table.add(
                "memory",
                f"per gunicorn worker after the load ({result.label}, {len(result.worker_rss_mb)} workers)",
                f"RSS {rss:.0f} MiB (PSS {pss:.0f} MiB)",
            )
    for suffix, how in (
        ("", " (sharing both cores)"),
        ("-pinned", " (one core per server, as one host each)"),
        ("-host", f", each server a host of {args.host_cores:g} cores"),
    ):
        one, two = by_label.get("postgresql-1" + suffix), by_label.get("postgresql-2" + suffix)
        if one and two and one.rate and two.rate:
            ratio = two.rate / one.rate
            value = f"{ratio:.2f}x"
            if one.cpu_ms and two.cpu_ms:
                cost_one, cost_two = own_cpu_ms(one), own_cpu_ms(two)
                value += (
                    f" (Flowker + PostgreSQL CPU per execution: {cost_one:.2f} ms with 1 server, "
                    f"{cost_two:.2f} ms with 2: {100 * (cost_two / cost_one - 1):+.0f}%)"
                )
            table.add("rest", f"scale-out on PostgreSQL, 2 servers / 1 server{how}", value, ">= 1.5x", ratio >= 1.5)


def own_cpu_ms(result) -> float:
    """CPU per execution of what the benchmark runs: servers, PostgreSQL, load generator, stub."""
    return sum(result.cpu_ms[name] for name in ("workers", "postgres", "load generator", "stub"))


def ceiling(result) -> float:
    """Executions/s if the benchmark had the machine's cores to itself: all cores / own CPU
    per execution. An upper bound (locks never leave a core idle), not a measurement."""
    return (os.cpu_count() or 1) * 1000.0 / own_cpu_ms(result)


def section_audit(table: Table, profile: dict, args) -> None:
    from benchmarks import audit as audit_bench
    from flowker.audit import checkpoints as cp

    signing_key = cp.generate_signing_key()
    backends = ["sqlite"] + (["postgresql"] if args.postgres_url else [])
    for backend in backends:
        scratch = audit_bench.Scratch(backend, args.postgres_url)
        label = "SQLite" if backend == "sqlite" else "PostgreSQL"
        try:
            appends = profile["audit_appends"]
            rate = audit_bench.single_writer(scratch, appends, None)
            table.add(
                "audit",
                f"appends/s, one writer, {label}",
                f"{rate:,.0f}/s ({appends:,} appends)",
                *((">= 5,000/s", rate >= 5000) if backend == "sqlite" else ("", None)),
            )
            rate = audit_bench.single_writer(scratch, appends, signing_key)
            table.add("audit", f"appends/s, one writer, signed checkpoint every 1000, {label}", f"{rate:,.0f}/s")
            processes = profile["audit_processes"]
            rate = audit_bench.many_writers(scratch, appends, processes)
            table.add("audit", f"appends/s, {processes} processes together, {label}", f"{rate:,.0f}/s")
            if backend == "postgresql":
                section_audit_lock(table, scratch, appends)
            entries = profile["verify_entries"]
            url = scratch.new()
            audit_bench.bulk_load(url, entries, signing_key)
            audit_bench.verify_rate(url, entries, signing_key)  # the first run warms the caches
            rate, seconds = audit_bench.verify_rate(url, entries, signing_key)
            table.add(
                "audit",
                f"verify rate, {label} (hashes, links, signatures)",
                f"{rate:,.0f} entries/s ({entries:,} in {seconds:.2f} s)",
            )
        finally:
            scratch.cleanup()


def section_audit_lock(table: Table, scratch, appends: int) -> None:
    """The lock hold per append on PostgreSQL: the path before migration 10 and its function
    taking turns transaction by transaction (benchmarks/audit_lock.py)."""
    from benchmarks import audit_lock

    figures = audit_lock.measure(scratch, audit_lock.MODES, 1, appends, audit_lock.BATCH)
    for mode, name in (("client", "client-side (before)"), ("server", "one server-side call")):
        f = figures[mode]
        table.add(
            "audit",
            f"audit lock held per append of {audit_lock.BATCH} entries, {name}, PostgreSQL",
            f"p50 {f['held_p50_ms']:.3f} ms (until COMMIT {f['before_commit_p50_ms']:.3f} ms, COMMIT "
            f"{f['commit_p50_ms']:.3f} ms), p99 {f['held_p99_ms']:.3f} ms, "
            f"{'/'.join(map(str, f['round_trips']))} round trips under the lock (COMMIT included)",
            *(("one call + COMMIT", f["round_trips"] == [2]) if mode == "server" else ("", None)),
        )


def section_validate(table: Table, profile: dict, args) -> None:
    from benchmarks import validate_many

    result = validate_many.run(profile["validate_files"])
    table.add(
        "validate",
        f"flowker validate, {result.files} spec files (one process, start-up included)",
        f"{result.seconds:.2f} s ({result.files_per_second:.0f} files/s), exit {result.exit_code}",
        "exit 0",
        result.exit_code == 0,
    )


def section_peer(table: Table, profile: dict, args) -> None:
    from benchmarks import peer

    result = peer.run(profile["peer_runs"], profile["peer_warmup"], install=args.install_peer)
    table.add(
        "peer",
        "Flowker overhead per step, trigger + 10 HTTP calls + output (SQLite, all audited)",
        f"p50 {result.flowker_p50:.3f} ms, p99 {result.flowker_p99:.3f} ms",
    )
    if result.note:
        table.add("peer", "peer engine", result.note)
        return
    table.add(
        "peer",
        f"{result.peer_engine} overhead per step, same workload (ephemeral local server)",
        f"p50 {result.peer_p50:.3f} ms, p99 {result.peer_p99:.3f} ms (first run with start-up: "
        f"{result.peer_startup_seconds:.1f} s)",
    )
    table.add(
        "peer",
        "per-step overhead, peer / Flowker (p50)",
        f"Flowker {result.ratio:.0f}x lower",
        ">= 20x",
        result.ratio >= 20,
    )


RUNNERS = {
    "runner": section_runner,
    "rest": section_rest,
    "audit": section_audit,
    "validate": section_validate,
    "peer": section_peer,
    "dbos": suite_ratios.section_dbos,
    "before": suite_ratios.section_before,
}


# --------------------------------------------------------------------------- main


def parse(argv):
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="longer runs (default: quick)")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, of {', '.join(SECTIONS)}")
    parser.add_argument(
        "--postgres-url",
        default=(
            os.environ.get("FLOWKER_BENCH_POSTGRES_URL") or os.environ.get("FLOWKER_TEST_POSTGRES_URL") or ""
        ).strip()
        or None,
    )
    parser.add_argument(
        "--generator",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="REST load generator (auto: wrk when installed)",
    )
    parser.add_argument("--connections", type=int, default=None, help="REST client connections per server")
    parser.add_argument("--workers", type=int, default=None, help="gunicorn workers per server")
    parser.add_argument("--threads", type=int, default=None, help="threads per gunicorn worker")
    parser.add_argument(
        "--host-cores",
        type=float,
        default=None,
        help="REST host emulation: CPUs per server in the -host rows (default 0.6; 0 leaves them out)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="REST rounds; the best of each configuration is reported (quick 1, full 2)",
    )
    parser.add_argument(
        "--install-peer",
        action="store_true",
        help="create benchmarks/.peer-venv and benchmarks/.dbos-venv and install the peer engines (needs PyPI)",
    )
    parser.add_argument(
        "--before",
        default=None,
        help="section before: the commit to compare with (default: where issue 18's work started)",
    )
    parser.add_argument("--json", dest="json_path", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    if args.before is None:
        from benchmarks.before_tree import DEFAULT_BEFORE

        args.before = DEFAULT_BEFORE
    if args.host_cores is None:
        from benchmarks.scaleout import DEFAULT_HOST_CORES

        args.host_cores = DEFAULT_HOST_CORES
    unknown = set(args.sections.split(",")) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    return args


def main(argv=None) -> int:
    args = parse(argv)
    profile = PROFILES["full" if args.full else "quick"]
    table = Table()
    print(
        f"Flowker performance suite ({'full' if args.full else 'quick'}): {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, {platform.platform()}; load average {load_average()}"
    )
    print(f"PostgreSQL: {args.postgres_url or 'none (PostgreSQL figures skipped)'}")
    began = time.perf_counter()
    failed = []
    for name in args.sections.split(","):
        print(f"\n== {name} (load average {load_average()})", flush=True)
        started = time.perf_counter()
        try:
            RUNNERS[name](table, profile, args)
        except Exception as exc:  # noqa: BLE001 - one broken section must not hide the others
            traceback.print_exc()
            table.add(name, "section failed", f"{type(exc).__name__}: {exc}"[:300])
            failed.append(name)
        print(f"   ({time.perf_counter() - started:.0f} s)")
    print(f"\n{table.render()}\n")
    print(f"suite took {time.perf_counter() - began:.0f} s; load average at the end {load_average()}")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps([row.__dict__ for row in table.rows], indent=2))
    return 1 if failed else 0

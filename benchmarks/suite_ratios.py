"""The suite's same-run sections (issue 18): ``dbos`` (Flowker and DBOS Transact side by
side, :mod:`benchmarks.dbos_side_by_side`) and ``before`` (DESIGN §17's ratios against
``--before COMMIT``, :mod:`benchmarks.before_after`). Each adds rows to the suite's table.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from benchmarks.suite import Table


def section_dbos(table: Table, profile: dict, args) -> None:
    from benchmarks import dbos_side_by_side

    options = argparse.Namespace(
        rounds=profile["dbos_rounds"],
        executions=profile["dbos_executions"],
        warmup=5,
        backends="sqlite,sqlite-wal,postgresql" if args.postgres_url else "sqlite,sqlite-wal",
        postgres_url=args.postgres_url,
        install=args.install_peer,
    )
    result = dbos_side_by_side.run(options, log=lambda line: print(f"  {line}", flush=True))
    for backend, figures in result["backends"].items():
        ours, theirs = figures["flowker"], figures["dbos"]
        label = {
            "sqlite": "SQLite, each engine's own settings",
            "sqlite-wal": "SQLite, DBOS in WAL with synchronous=NORMAL as Flowker",
        }.get(backend, "PostgreSQL")
        table.add(
            "dbos",
            f"Flowker overhead per step, trigger + 10 HTTP calls + output ({label}, all audited)",
            f"p50 {ours['p50']:.3f} ms, p99 {ours['p99']:.3f} ms",
        )
        table.add(
            "dbos",
            f"{result['engine']} overhead per step, same workload, durable steps ({label})",
            f"p50 {theirs['p50']:.3f} ms, p99 {theirs['p99']:.3f} ms",
        )
        table.add(
            "dbos",
            f"per-step overhead, Flowker / DBOS (p50, {label}, same run)",
            f"{100 * ours['p50'] / theirs['p50']:.1f} % ({figures['times_lower']:.1f}x lower)",
            "<= 20 %",
            figures["times_lower"] >= dbos_side_by_side.TARGET_TIMES_LOWER,
        )


def section_before(table: Table, profile: dict, args) -> None:
    from benchmarks import before_after

    variants = "before-sqlite,after-sqlite" + (",after-postgresql" if args.postgres_url else "")
    options = before_after.parse(
        [
            "--before",
            args.before,
            "--rounds",
            str(profile["before_rounds"]),
            "--executions",
            str(profile["before_executions"]),
            "--rest-rounds",
            str(profile["before_rest_rounds"]),
            "--rest-seconds",
            str(profile["before_rest_seconds"]),
            "--rest-variants",
            variants,
            *(["--postgres-url", args.postgres_url] if args.postgres_url else []),
        ]
    )
    result = before_after.run(options, log=lambda line: print(f"  {line}", flush=True))
    steps, rest = result["steps"], result["rest"]
    before, after = steps["before"], steps["after"]
    against = f"after {result['after']} / before {result['before']}"
    table.add(
        "before",
        f"overhead per step, 10-call HTTP chain, SQLite: before {result['before']}",
        f"p50 {before['p50']:.3f} ms, p99 {before['p99']:.3f} ms",
    )
    table.add(
        "before",
        f"overhead per step, same: after {result['after']}",
        f"p50 {after['p50']:.3f} ms, p99 {after['p99']:.3f} ms",
        "p50 <= 0.25 ms, p99 <= 1 ms",
        after["p50"] <= before_after.STEP_TARGET_P50 and after["p99"] <= before_after.STEP_TARGET_P99,
    )
    table.add(
        "before",
        f"overhead per step, {against} (same run)",
        f"p50 {100 * steps['p50_ratio']:.1f} %, p99 {100 * steps['p99_ratio']:.1f} %",
        "<= 60 %",
        steps["p50_ratio"] <= before_after.STEP_TARGET_RATIO,
    )
    variants_done = rest["variants"]
    for name, row in variants_done.items():
        table.add(
            "before",
            f"REST 3-node executions/s, {name} (1 server x 2 workers x 1 thread, wrk 4 connections)",
            f"{row['rate']:.0f}/s, p50 {row['p50_ms']:.1f} ms, p99 {row['p99_ms']:.1f} ms, {row['errors']} errors, "
            f"servers' CPU {row['server_cpu_ms']:.2f} ms per execution",
            *(("p99 <= 50 ms", row["p99_ms"] <= before_after.REST_P99_TARGET) if name == "after-sqlite" else ()),
        )
    if "cpu_ratio" in rest:
        table.add(
            "before",
            f"REST servers' CPU per execution, SQLite, {against}",
            f"{100 * rest['cpu_ratio']:.1f} %",
            "<= 75 %",
            rest["cpu_ratio"] <= before_after.CPU_TARGET_RATIO,
        )
        table.add(
            "before",
            f"REST throughput, SQLite, {against}",
            f"{rest['rate_ratio']:.2f}x",
            ">= 1.3x",
            rest["rate_ratio"] >= before_after.RATE_TARGET_RATIO,
        )
    if "after_postgres_ratio" in rest:
        table.add(
            "before",
            "REST throughput, PostgreSQL / SQLite (this tree, same run)",
            f"{100 * rest['after_postgres_ratio']:.1f} %",
            ">= 75 %",
            rest["after_postgres_ratio"] >= before_after.POSTGRES_TARGET_RATIO,
        )

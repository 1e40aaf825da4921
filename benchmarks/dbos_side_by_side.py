"""Side by side with DBOS Transact: durable steps on SQLite and on PostgreSQL, same run.

    .venv/bin/python -m benchmarks.dbos_side_by_side [--rounds 4] [--executions 50] [--install]
        [--postgres-url postgresql://postgres@127.0.0.1:5432/flowker_bench] [--backends sqlite,sqlite-wal,postgresql]

The workload of :mod:`benchmarks.peer`: a trigger, 10 HTTP calls to one local stub (the
asyncio keep-alive stub of :mod:`benchmarks.api`, one process shared by both engines), an
output. Flowker runs it through the real ExecutionService (``benchmarks/step_child.py``:
every step row and audit entry committed); DBOS runs a ``@DBOS.workflow`` of 10
``@DBOS.step`` calls (``benchmarks/peer_dbos.py``: the input, each step's output and the
result checkpointed in its system database). Per-step overhead = (wall time of one run -
time inside the 10 HTTP calls) / 12 steps, measured the same way in both.

Each engine and backend is a subprocess of its own, kept alive across rounds; rounds
interleave them all so the machine's drift falls on each alike. Backends:

* ``sqlite``: each engine with its own SQLite settings. Flowker's are WAL with
  ``synchronous=NORMAL`` (a commit survives the process, not a power cut: no fsync per
  commit); DBOS's are SQLite's defaults, the rollback journal and ``synchronous=FULL``
  (fsyncs on every commit), so its figure follows the disk;
* ``sqlite-wal``: DBOS with Flowker's settings (the same Flowker figure): the engines'
  own costs without the fsyncs;
* ``postgresql``: Flowker in a fresh schema of ``--postgres-url`` (dropped after), DBOS in
  the database ``flowker_bench_dbos`` on the same server, dropped and created anew for
  each run. Both commit with ``synchronous_commit=on`` (a WAL flush per commit).

DBOS lives in its own virtualenv (``benchmarks/.dbos-venv``, git-ignored), created with
``--install`` from ``benchmarks/requirements-dbos.txt``. Target (issue 18): Flowker's
per-step overhead at most one fifth of DBOS's, on each backend.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import venv
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import before_tree  # noqa: E402
from benchmarks.rounds import Figures, LineChild, load_average, round_order  # noqa: E402

HERE = ROOT / "benchmarks"
DBOS_VENV = HERE / ".dbos-venv"
DBOS_SCRIPT = HERE / "peer_dbos.py"
REQUIREMENTS = HERE / "requirements-dbos.txt"
DBOS_DATABASE = "flowker_bench_dbos"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/flowker_bench"
TARGET_TIMES_LOWER = 5.0


def dbos_python(install: bool) -> Path | None:
    python = DBOS_VENV / "bin" / "python"
    if python.exists():
        return python
    if not install:
        return None
    venv.EnvBuilder(with_pip=True).create(DBOS_VENV)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)], check=True, timeout=1800)
    return python


def dbos_environment() -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DBOS_", "FLOWKER_", "OTEL_"))}
    env.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost", PYTHONDONTWRITEBYTECODE="1")
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        env.pop(name, None)
    return env


def fresh_dbos_database(postgres_url: str) -> str:
    """``flowker_bench_dbos`` dropped and created on the server of ``postgres_url``; its URL."""
    import psycopg2

    parts = urlsplit(postgres_url)
    connection = psycopg2.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5432,
        user=parts.username or "postgres",
        dbname="postgres",
    )
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{DBOS_DATABASE}" WITH (FORCE)')
            cursor.execute(f'CREATE DATABASE "{DBOS_DATABASE}"')
    finally:
        connection.close()
    return urlunsplit((parts.scheme, parts.netloc, f"/{DBOS_DATABASE}", "", ""))


def flowker_side_of(backend: str) -> str:
    """Flowker's side for a backend: sqlite-wal differs from sqlite only on DBOS's side."""
    return "flowker-postgresql" if backend == "postgresql" else "flowker-sqlite"


def run(args, log=print) -> dict:
    from benchmarks import api as api_bench
    from benchmarks.before_after import ensure_database, step_child
    from benchmarks.overhead import ten_calls_workflow

    python = dbos_python(args.install)
    if python is None:
        raise SystemExit(f"DBOS is not installed: --install (creates {DBOS_VENV.relative_to(ROOT)})")
    backends = [name.strip() for name in args.backends.split(",") if name.strip()]
    flowker = before_tree.current()
    stub, port = api_bench.start_stub()
    stub_url = f"http://127.0.0.1:{port}"
    children: dict[str, LineChild] = {}
    figures: dict[str, Figures] = {}
    engine = "dbos"
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="flowker-dbos-") as scratch:
        stack.callback(lambda: (stub.terminate(), stub.join(timeout=10)))
        for backend in backends:
            if backend == "postgresql":
                ensure_database(args.postgres_url)
                flowker_url = stack.enter_context(api_bench.FreshPostgresSchema(args.postgres_url))
                dbos_url = fresh_dbos_database(args.postgres_url)
            else:
                flowker_url, dbos_url = None, f"sqlite:///{scratch}/dbos-{backend}.sqlite"
            flowker_side = flowker_side_of(backend)
            if flowker_side not in children:
                child, _ = step_child(flowker, stub_url, {"ten-calls": ten_calls_workflow()}, flowker_url)
                stack.callback(child.stop)
                children[flowker_side] = child
            peer = LineChild([str(python), "-P", str(DBOS_SCRIPT)], dbos_environment(), scratch)
            stack.callback(peer.stop)
            answer = peer.ask(
                {"op": "setup", "database_url": dbos_url, "stub_url": stub_url, "wal": backend == "sqlite-wal"}
            )
            engine = answer["engine"]
            children[f"dbos-{backend}"] = peer
            journal = f", SQLite journal_mode={answer['journal_mode']}" if answer.get("journal_mode") else ""
            log(f"  {engine} on {backend}: launched in {answer['startup_seconds']:.2f} s{journal}")
        requests = {
            name: ({"op": "round", "workflow": "ten-calls"} if name.startswith("flowker") else {"op": "round"})
            for name in children
        }
        for name, child in children.items():
            child.ask({**requests[name], "executions": args.warmup})
            figures[name] = Figures(name)
        for number in range(args.rounds):
            for name in round_order(list(children), number):
                answer = children[name].ask({**requests[name], "executions": args.executions})
                figures[name].add_round(answer["samples"], answer["cpu_ms"], answer["seconds"])
    log(
        f"per-step overhead, trigger + 10 HTTP calls + output (12 steps), {args.rounds} alternating rounds x "
        f"{args.executions} executions per engine and backend; Flowker {flowker.commit}, {engine}:"
    )
    results: dict = {"engine": engine, "flowker": flowker.commit, "backends": {}}
    for backend in backends:
        ours, theirs = figures[flowker_side_of(backend)], figures[f"dbos-{backend}"]
        times = theirs.p50 / ours.p50
        log(f"  {backend}: Flowker p50 {ours.p50:.3f} ms, p99 {ours.p99:.3f} ms (rounds' p50: {ours.rounds_text()})")
        log(
            f"  {backend}: {engine} p50 {theirs.p50:.3f} ms, p99 {theirs.p99:.3f} ms (rounds' p50: {theirs.rounds_text()})"
        )
        log(
            f"  {backend}: Flowker / DBOS p50 {100 * ours.p50 / theirs.p50:.1f} % ({times:.1f}x lower), "
            f"p99 {100 * ours.p99 / theirs.p99:.1f} %  target <= {100 / TARGET_TIMES_LOWER:.0f} %: "
            f"{'met' if times >= TARGET_TIMES_LOWER else 'NOT met'}"
        )
        results["backends"][backend] = {"flowker": ours.as_dict(), "dbos": theirs.as_dict(), "times_lower": times}
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--executions", type=int, default=50, help="executions per round, engine and backend")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--backends", default="sqlite,sqlite-wal,postgresql")
    parser.add_argument("--postgres-url", default=os.environ.get("FLOWKER_BENCH_POSTGRES_URL") or DEFAULT_POSTGRES)
    parser.add_argument("--install", action="store_true", help=f"create {DBOS_VENV.name} and install DBOS")
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args(argv)
    log = print
    log(f"{os.cpu_count()} CPUs, load average {load_average()}")
    results = run(args, log)
    log(f"load average at the end {load_average()}")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

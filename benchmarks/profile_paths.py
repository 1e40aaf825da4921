"""Where the time of a step and of a REST execution goes: cProfile, in one process.

    .venv/bin/python -m benchmarks.profile_paths --path steps [--database sqlite|postgresql] [--executions 300]
    .venv/bin/python -m benchmarks.profile_paths --path rest  [--database sqlite|postgresql] [--executions 1500]
    .venv/bin/python -m benchmarks.profile_paths --path served [--database sqlite|postgresql] [--seconds 15]

* ``steps``: the 10-call HTTP chain of ``benchmarks/peer.py`` (12 steps) through the real
  ExecutionService, as ``benchmarks/step_child.py`` runs it;
* ``rest``: ``POST /v1/workflows/{id}/executions`` of the REST benchmark's 3-node workflow
  through the whole Falcon app (middleware, authentication, the run, the answer) with
  falcon's TestClient: no gunicorn, no socket to the client, one thread;
* ``served``: the REST benchmark as it runs (``flowker serve``, 2 gthread workers x 1
  thread, wrk with 4 connections), its workers sampled by ``py-spy`` (``pip install
  py-spy``; on-CPU samples only, nonblocking): the share of the workers' CPU in each
  function (own) and under each of Flowker's stages (inclusive).

Both call the stub of ``benchmarks/api.py`` in its own process. PostgreSQL runs in a fresh
schema of ``--postgres-url``. Printed, per execution: wall and CPU time, then the profile's
own time (tottime) summed by area (SQLite/PostgreSQL driver, peewee, the audit chain, the
recorder, the HTTP client, ...), then the functions with the most own time and the
cumulative time of Flowker's main stages. cProfile roughly doubles the cost of Python
function calls, so read shares, not absolute times.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

API_KEY = "profile-api-key-0123456789"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/flowker_bench"

# (area, test on "file:function") in order: the first match names a function's area.
AREAS = (
    ("SQLite (C: execute, commit)", lambda f, n: f == "~" and "sqlite3" in n),
    ("PostgreSQL driver (C: execute, commit, round trips)", lambda f, n: f == "~" and "psycopg2" in n),
    ("peewee", lambda f, n: "/peewee.py" in f or "/playhouse/" in f),
    ("flowker/audit", lambda f, n: "/flowker/audit/" in f),
    ("flowker/runner/records.py", lambda f, n: f.endswith("/flowker/runner/records.py")),
    ("flowker/runner/executor_client.py + executors.py", lambda f, n: "/flowker/runner/executor" in f),
    ("flowker/runner/engine.py + graph.py", lambda f, n: "/flowker/runner/engine.py" in f or "/graph.py" in f),
    ("flowker/runner/service.py", lambda f, n: f.endswith("/flowker/runner/service.py")),
    ("flowker/runner (other)", lambda f, n: "/flowker/runner/" in f),
    ("flowker/security (redaction, http)", lambda f, n: "/flowker/security/" in f),
    ("flowker/storage", lambda f, n: "/flowker/storage/" in f),
    ("flowker/expressions + CEL", lambda f, n: "/flowker/expressions" in f or "cel" in f.lower()),
    ("flowker/api (middleware, resources)", lambda f, n: "/flowker/api/" in f),
    ("flowker (other)", lambda f, n: "/flowker/" in f),
    ("falcon", lambda f, n: "/falcon/" in f),
    ("requests + urllib3", lambda f, n: "/requests/" in f or "/urllib3/" in f),
    ("http.client + socket + ssl", lambda f, n: "/http/client.py" in f or "socket" in n or "/socket.py" in f),
    ("json (encode, decode)", lambda f, n: "/json/" in f or "json" in n),
    ("uuid, datetime, hashlib, hmac", lambda f, n: any(k in f + n for k in ("uuid", "datetime", "hashlib", "hmac"))),
    ("threading, locks, queue", lambda f, n: any(k in f + n for k in ("threading", "lock", "queue", "Condition"))),
)

STAGES = (
    "service.py:execute",
    "service.py:start",
    "service.py:_run_loaded",
    "engine.py:run",
    "records.py:flush",
    "records.py:finish",
    "records.py:_prepared_pending",
    "records.py:audit_batch",
    "chain.py:append_many",
    "chain.py:prepare",
    "database.py:write_transaction",
    "executor_client.py:call",
    "executor_client.py:_send",
    "executors.py:resolve",
    "redaction.py:scrub_text",
    "executions.py:on_post",
    "middleware.py:process_request",
    "middleware.py:process_response",
)


def new_profile(args) -> cProfile.Profile:
    """Wall-clock by default; ``--cpu``: this thread's CPU time (waits for the stub, the
    database server or a lock cost nothing)."""
    return cProfile.Profile(time.thread_time) if args.cpu else cProfile.Profile()


def area_of(filename: str, name: str) -> str:
    for area, test in AREAS:
        if test(filename, name):
            return area
    return "other"


SAVE_TO: list[str] = []  # --save: where the raw profile goes (pstats format)


def report(profile: cProfile.Profile, executions: int, wall: float, cpu: float, top: int) -> None:
    if SAVE_TO:
        profile.dump_stats(SAVE_TO[0])
    stats = pstats.Stats(profile)
    total = sum(row[2] for row in stats.stats.values())  # tottime
    print(
        f"per execution: wall {1000 * wall / executions:.2f} ms, CPU {1000 * cpu / executions:.2f} ms "
        f"(profiled; {executions} executions); profile total {1000 * total / executions:.2f} ms "
        "(the profile's clock: wall, or this thread's CPU with --cpu)"
    )
    by_area: dict[str, float] = defaultdict(float)
    for (filename, _line, name), row in stats.stats.items():
        by_area[area_of(filename, name)] += row[2]
    print("\nown time by area (ms per execution, share):")
    for area, seconds in sorted(by_area.items(), key=lambda item: -item[1]):
        print(f"  {1000 * seconds / executions:7.3f} ms  {100 * seconds / total:5.1f} %  {area}")
    print(f"\ntop {top} functions by own time (ms per execution, calls per execution):")
    rows = sorted(stats.stats.items(), key=lambda item: -item[1][2])[:top]
    for (filename, line, name), row in rows:
        where = filename if filename == "~" else "/".join(Path(filename).parts[-3:])
        print(f"  {1000 * row[2] / executions:7.3f} ms  {row[1] / executions:6.1f}x  {where}:{line}:{name}")
    print("\ncumulative time of Flowker's stages (ms per execution, calls per execution):")
    for stage in STAGES:
        module, name = stage.split(":")
        found = [
            row for (filename, _line, fn), row in stats.stats.items() if filename.endswith("/" + module) and fn == name
        ]
        if found:
            cumulative = sum(row[3] for row in found)
            calls = sum(row[1] for row in found)
            print(f"  {1000 * cumulative / executions:7.3f} ms  {calls / executions:6.1f}x  {stage}")


def profile_steps(database_url: str | None, stub_url: str, args) -> None:
    from benchmarks import overhead
    from benchmarks import runner as runner_bench
    from flowker.audit.chain import SYSTEM_ACTOR

    with overhead.service_on(stub_url, database_url) as service:
        spec = overhead.ten_calls_workflow()
        workflow = runner_bench.store(spec)
        runner_bench.measure(service, workflow, args.warmup, 0)
        profile = new_profile(args)
        wall, cpu = time.perf_counter(), time.process_time()
        profile.enable()
        for number in range(args.executions):
            service.execute(workflow.id, {"orderId": f"p-{number}", "amount": number}, actor=SYSTEM_ACTOR)
        profile.disable()
        report(profile, args.executions, time.perf_counter() - wall, time.process_time() - cpu, args.top)


def rest_workflow_in_process(client, stub_port: int) -> str:
    """Store and activate the REST benchmark's 3-node workflow (and its stub executor)
    through a falcon TestClient; answers the path that starts its executions."""
    from benchmarks.api import rest_workflow, stub_executor

    assert client.simulate_post("/v1/executors", json=stub_executor(stub_port)).status_code == 201
    workflow = rest_workflow()
    made = client.simulate_post("/v1/workflows", json=workflow)
    assert made.status_code == 201, made.text
    workflow_id = made.json["workflowId"]
    assert client.simulate_post(f"/v1/workflows/{workflow_id}/activate").status_code == 200
    return f"/v1/workflows/{workflow_id}/executions"


def profile_rest(database_url: str, stub_port: int, args) -> None:
    import falcon.testing

    from flowker.api.app import create_app
    from flowker.settings import Settings
    from flowker.storage.database import bind_database
    from flowker.storage.migrations import upgrade

    os.environ["BENCHMARK_STUB_TOKEN"] = "benchmark-stub-token"
    database = bind_database(database_url)
    upgrade(database)
    settings = Settings.from_mapping({"database_url": database_url, "api_keys": f"bench:{API_KEY}"})
    app = create_app(settings, log_requests=False)
    try:
        client = falcon.testing.TestClient(app, headers={"X-API-Key": API_KEY})
        path = rest_workflow_in_process(client, stub_port)

        def post(number: int) -> None:
            answer = client.simulate_post(path, json={"inputData": {"orderId": f"p-{number}", "amount": number}})
            if answer.status_code != 201 or answer.json["status"] != "completed":
                raise SystemExit(f"execution failed: {answer.status_code} {answer.text[:300]}")

        for number in range(args.warmup):
            post(number)
        profile = new_profile(args)
        wall, cpu = time.perf_counter(), time.process_time()
        profile.enable()
        for number in range(args.executions):
            post(args.warmup + number)
        profile.disable()
        report(profile, args.executions, time.perf_counter() - wall, time.process_time() - cpu, args.top)
    finally:
        app.state.close()


def _frame_name(frame: str) -> str:
    """``function (path/to/file.py:line)`` -> ``dir/file.py:function``."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    return "/".join(Path(path).parts[-2:]) + ":" + name


def profile_served(database_url: str, stub_port: int, args) -> None:
    import shutil
    import subprocess
    import threading

    from benchmarks import api as api_bench

    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        raise SystemExit("py-spy is not installed (pip install py-spy)")
    server = api_bench.Server(database_url, 2, 1)
    try:
        api_bench.wait_ready(server.url)
        workflow_id = api_bench.create_workflow(server.url, stub_port)
        api_bench.Load(server.url, workflow_id, 300, 60).run(4)
        wrk = api_bench.find_wrk()
        raw = Path(tempfile.mkdtemp(prefix="flowker-spy-")) / "stacks.txt"
        load = threading.Thread(
            target=lambda: results.append(api_bench.run_wrk(server.url, workflow_id, args.seconds + 2, 4, wrk=wrk))
        )
        results: list = []
        load.start()
        time.sleep(1)
        subprocess.run(
            [spy, "record", "--pid", str(server.process.pid), "--subprocesses", "--nonblocking", "--rate", "250"]
            + ["--duration", str(int(args.seconds)), "--format", "raw", "--output", str(raw)],
            check=True,
            capture_output=True,
        )
        load.join()
    finally:
        server.stop()
    done = results[0].completed if results else 0
    own: dict[str, int] = defaultdict(int)
    inclusive: dict[str, int] = defaultdict(int)
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = [_frame_name(frame) for frame in stack.split(";") if frame and not frame.startswith("process ")]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    rate = results[0].completed / results[0].seconds if results else 0.0
    print(f"served: {rate:.0f} executions/s under py-spy ({done} in the load), {total} on-CPU samples of the workers")
    print(f"\ntop {args.top} functions by own on-CPU samples (share of the workers' CPU):")
    for name, count in sorted(own.items(), key=lambda item: -item[1])[: args.top]:
        print(f"  {100 * count / total:5.1f} %  {name}")
    print("\ninclusive share of Flowker's stages and the main libraries:")
    wanted = [stage.split(":") for stage in STAGES] + [
        ["gthread.py", "handle"],
        ["gunicorn_worker.py", "handle"],
        ["app.py", "__call__"],
        ["sessions.py", "send"],
        ["executions.py", "start_execution"],
        ["middleware.py", "process_request"],
        ["access.py", "process_response"],
    ]
    for module, function in wanted:
        count = sum(
            value
            for name, value in inclusive.items()
            if name.partition(":")[0].endswith(module) and name.partition(":")[2].rsplit(".", 1)[-1] == function
        )
        if count:
            print(f"  {100 * count / total:5.1f} %  {module}:{function}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--path", choices=("steps", "rest", "served"), default="steps")
    parser.add_argument("--seconds", type=float, default=15.0, help="served: seconds sampled")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--postgres-url", default=os.environ.get("FLOWKER_BENCH_POSTGRES_URL") or DEFAULT_POSTGRES)
    parser.add_argument("--executions", type=int, default=None, help="profiled (steps 300, rest 1500)")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--cpu", action="store_true", help="steps, rest: profile CPU time, not wall time")
    parser.add_argument("--save", help="also write the raw profile here (pstats; snakeviz, gprof2dot)")
    args = parser.parse_args(argv)
    SAVE_TO[:] = [args.save] if args.save else []
    args.executions = args.executions or (300 if args.path == "steps" else 1500)

    from benchmarks import api as api_bench
    from benchmarks.before_after import ensure_database

    print(f"profile of {args.path} on {args.database}; load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="flowker-profile-") as scratch:
        stub, port = api_bench.start_stub()
        stack.callback(lambda: (stub.terminate(), stub.join(timeout=10)))
        if args.database == "postgresql":
            ensure_database(args.postgres_url)
            database_url = stack.enter_context(api_bench.FreshPostgresSchema(args.postgres_url))
        else:
            database_url = f"sqlite:///{scratch}/profile.db"
        if args.path == "steps":
            profile_steps(database_url, f"http://127.0.0.1:{port}", args)
        elif args.path == "served":
            profile_served(database_url, port, args)
        else:
            profile_rest(database_url, port, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

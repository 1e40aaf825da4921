"""What logs, metrics and traces cost REST throughput (DESIGN §14, §17): all on vs all off.

    .venv/bin/python benchmarks/observability_cost.py [--seconds 8] [--rounds 3]
        [--generator auto|wrk|python] [--concurrency 4] [--workers 2] [--threads 1]
        [--together [--cpu-limit CPUS]]

The same workload as ``benchmarks/api.py`` (its helpers: the stub executor process, the
``flowker serve`` processes, the 3-node workflow, wrk or the Python client), run once per
variant chosen (by default :data:`DEFAULT_VARIANTS`; ``--variants`` picks among
:data:`VARIANTS`), each on a fresh SQLite database and server, in alternating rounds
(off, on, off, on, ...) so that a machine whose speed drifts treats both alike.
The "on" variant sends its traces to a local OTLP/HTTP receiver (a separate process on
127.0.0.1 that decodes each export and counts the spans, so it is seen that they arrive).

Printed per variant: completed executions/s over all its rounds, p50/p99 latency (wrk),
the servers' CPU ms per execution, spans received; then the ratio on/off for throughput
and CPU, over all rounds and round by round (median and range). Target: all on >= 90 % of
off's throughput, in the same run. ``--together`` runs each variant's server at the same time
as an off server (wrk on both, half the connections each): on a machine shared with other
jobs both then see the same neighbours, and the CPU per execution compares round by round. "off" is everything off (:data:`ALL_OFF`): Flowker's
defaults are not (metrics on, text lines at INFO: the "defaults" variant).
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import multiprocessing
import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.api import (  # noqa: E402
    Load,
    Server,
    create_workflow,
    find_wrk,
    percentile,
    process_tree,
    run_wrk,
    start_stub,
    wait_ready,
)
from benchmarks.load_tools import CpuLimit, cpu_seconds  # noqa: E402

RECEIVER = "{receiver}"  # replaced with the local OTLP receiver's URL
# Everything on: JSON logs at INFO, metrics, traces of every run.
ALL_ON = {
    "FLOWKER_LOG_FORMAT": "json",
    "FLOWKER_LOG_LEVEL": "INFO",
    "FLOWKER_METRICS": "on",
    "OTEL_EXPORTER_OTLP_ENDPOINT": RECEIVER,
    "OTEL_SERVICE_NAME": "flowker-benchmark",
}
# Everything off: metrics off, no INFO lines (the access and execution lines), no traces.
# (The defaults are not off: metrics on, text lines at INFO - the "defaults" variant.)
ALL_OFF = {"FLOWKER_METRICS": "off", "FLOWKER_LOG_LEVEL": "WARNING"}
# Each variant's environment for `flowker serve`, on top of benchmarks/api.py's (which drops
# every inherited FLOWKER_* and OTEL_* variable). Add a switch here as observability grows.
# "off" and "on" are compared against the target; the others are printed beside them
# ("on-sampled-10%": everything on, one run in ten traced: the lever docs/tracing.md names).
VARIANTS: dict[str, dict[str, str]] = {
    "off": ALL_OFF,
    "defaults": {},
    "on": ALL_ON,
    "on-sampled-10%": {
        **ALL_ON,
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.1",
    },
    # One part at a time (not run by default: --variants off,logs,metrics,traces): where the cost is.
    "logs": {"FLOWKER_LOG_FORMAT": "json", "FLOWKER_LOG_LEVEL": "INFO", "FLOWKER_METRICS": "off"},
    "metrics": {**ALL_OFF, "FLOWKER_METRICS": "on"},
    "traces": {**ALL_OFF, **{key: value for key, value in ALL_ON.items() if key.startswith("OTEL_")}},
    # Against "defaults" (text access lines at INFO): what the access line itself costs.
    "warnings-only": {"FLOWKER_LOG_LEVEL": "WARNING"},
}
DEFAULT_VARIANTS = ("off", "on", "on-sampled-10%")
TARGET_RATIO = 0.90
CAP_BOUND = 0.95  # --cpu-limit: the share of its cap each server must use for a verdict


# --------------------------------------------------------------------------- the OTLP receiver


def _run_receiver(port_sender, span_count) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
        ExportTraceServiceResponse,
    )

    answer = ExportTraceServiceResponse().SerializeToString()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            spans = sum(len(scope.spans) for resource in request.resource_spans for scope in resource.scope_spans)
            with span_count.get_lock():
                span_count.value += spans
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    port_sender.send(server.server_address[1])
    server.serve_forever(poll_interval=0.2)


def start_receiver():
    """(process, url, span counter) of an OTLP/HTTP trace receiver in its own process."""
    receiver, sender = multiprocessing.Pipe(duplex=False)
    spans = multiprocessing.Value("q", 0)
    process = multiprocessing.Process(target=_run_receiver, args=(sender, spans), daemon=True)
    process.start()
    if not receiver.poll(30):
        process.terminate()
        raise SystemExit("the OTLP receiver did not start")
    return process, f"http://127.0.0.1:{receiver.recv()}", spans


# --------------------------------------------------------------------------- one measurement


@dataclass
class Totals:
    completed: int = 0
    errors: int = 0
    seconds: float = 0.0
    server_cpu: float = 0.0
    spans: int = 0
    p50: list = field(default_factory=list)
    p99: list = field(default_factory=list)
    rounds: list = field(default_factory=list)  # (executions/s, CPU ms per execution) of each round
    beside: list = field(default_factory=list)  # --together: off's rounds, run at the same time as these

    @property
    def rate(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0

    @property
    def cpu_ms(self) -> float:
        return 1000.0 * self.server_cpu / self.completed if self.completed else 0.0

    def cap_share(self, cpu_limit: float) -> float:
        """The share of its ``--cpu-limit`` cap the server used over all its rounds."""
        return self.server_cpu / (self.seconds * cpu_limit) if self.seconds and cpu_limit else 0.0


def measure(variant_env: dict, stub_port: int, args, wrk: str | None) -> tuple[int, int, float, float, list]:
    """One round of one variant: (completed, errors, seconds, server CPU seconds, [p50, p99])."""
    folder = tempfile.mkdtemp(prefix="flowker-obs-bench-")
    server = Server(f"sqlite:///{folder}/flowker.db", args.workers, args.threads, variant_env)
    try:
        wait_ready(server.url)
        workflow_id = create_workflow(server.url, stub_port)
        Load(server.url, workflow_id, args.warmup, 60).run(args.concurrency)
        pids = process_tree(server.process.pid)
        cpu_before = cpu_seconds(pids)
        if wrk is not None:
            result = run_wrk(server.url, workflow_id, args.seconds, args.concurrency, wrk=wrk)
            done, errors, seconds = result.completed, result.errors, result.seconds
            latency = [result.latencies_ms["p50"], result.latencies_ms["p99"]]
        else:
            load = Load(server.url, workflow_id, 10**9, args.seconds)
            seconds = load.run(args.concurrency)
            done, errors = len(load.latencies), len(load.errors)
            latency = [1000 * percentile(load.latencies, q) for q in (0.5, 0.99)] if done else []
        used = cpu_seconds(pids) - cpu_before
        return done, errors, seconds, used, latency
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


def measure_together(env_off: dict, env_variant: dict, stub_port: int, args, wrk: str) -> tuple[tuple, tuple]:
    with contextlib.ExitStack() as stack:  # the CPU limits go after the servers have stopped
        return _measure_together(stack, env_off, env_variant, stub_port, args, wrk)


def _measure_together(stack, env_off: dict, env_variant: dict, stub_port: int, args, wrk: str) -> tuple[tuple, tuple]:
    """One round of ``off`` and a variant at the same time, each its own server and wrk (half
    the connections each): both see the same neighbours, so their CPU per execution compares
    even when the machine's load swings. Returns each one's (completed, errors, seconds, CPU, [p50, p99])."""
    folders = [tempfile.mkdtemp(prefix="flowker-obs-bench-") for _ in range(2)]
    servers = []
    # --cpu-limit: each server (master and workers) in a cgroup of its own, capped alike.
    limits = [stack.enter_context(CpuLimit(args.cpu_limit)) for _ in range(2)] if args.cpu_limit else []
    try:
        for folder, env in zip(folders, (env_off, env_variant)):
            servers.append(Server(f"sqlite:///{folder}/flowker.db", args.workers, args.threads, env))
        workflows = []
        for server in servers:
            wait_ready(server.url)
            workflows.append(create_workflow(server.url, stub_port))
            Load(server.url, workflows[-1], args.warmup, 60).run(args.concurrency)
        pids = [process_tree(server.process.pid) for server in servers]
        for limit, tree in zip(limits, pids):
            limit.add(tree)
        before = [cpu_seconds(tree) for tree in pids]
        results: list = [None, None]
        connections = max(1, args.concurrency // 2)

        def load(index: int) -> None:
            results[index] = run_wrk(servers[index].url, workflows[index], args.seconds, connections, wrk=wrk)

        threads = [threading.Thread(target=load, args=(index,)) for index in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        used = [cpu_seconds(tree) - cpu for tree, cpu in zip(pids, before)]
        off, variant = (
            (
                result.completed,
                result.errors,
                result.seconds,
                cpu,
                [result.latencies_ms["p50"], result.latencies_ms["p99"]],
            )
            for result, cpu in zip(results, used)
        )
        return off, variant
    finally:
        for server in servers:
            server.stop()
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)


def add(total: Totals, measured: tuple) -> None:
    done, errors, seconds, cpu, latency = measured
    total.completed += done
    total.errors += errors
    total.seconds += seconds
    total.server_cpu += cpu
    total.rounds.append((done / seconds if seconds else 0.0, 1000.0 * cpu / done if done else 0.0))
    if latency:
        total.p50.append(latency[0])
        total.p99.append(latency[1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="load per round and variant")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--generator", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--variants", default=",".join(DEFAULT_VARIANTS), help="which of VARIANTS to run, comma-separated"
    )
    parser.add_argument(
        "--together",
        action="store_true",
        help="run each variant's server at the same time as an off server (wrk on both, half the "
        "connections each) instead of one after the other: both see the same neighbours",
    )
    parser.add_argument(
        "--cpu-limit",
        type=float,
        default=0.0,
        help="with --together: cap each of the two servers at this many CPUs (a cgroup each, "
        "e.g. 0.6 on 2 cores), so both get the same CPU and their throughputs compare as their "
        "costs do; each variant prints how much of its cap its server used over all its rounds",
    )
    args = parser.parse_args(argv)
    if args.cpu_limit and not args.together:
        raise SystemExit("--cpu-limit goes with --together")
    chosen = [name.strip() for name in args.variants.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(VARIANTS))
    if unknown or "off" not in chosen:
        raise SystemExit(f"--variants: choose among {', '.join(VARIANTS)}; off is needed")

    wrk = None
    if args.generator in ("auto", "wrk"):
        wrk = find_wrk()
        if wrk is None and args.generator == "wrk":
            raise SystemExit("wrk is not installed and could not be installed (apt-get install wrk)")
    load_before = os.getloadavg()[0]
    stub, stub_port = start_stub()
    receiver, receiver_url, spans = start_receiver()
    totals = {name: Totals() for name in chosen}
    started = time.monotonic()
    try:
        if args.together and wrk is None:
            raise SystemExit("--together needs wrk")
        for _round in range(args.rounds):
            for name in chosen:
                if args.together and name == "off":
                    continue  # measured beside each of the others
                env = {key: value.replace(RECEIVER, receiver_url) for key, value in VARIANTS[name].items()}
                spans_before = spans.value
                if args.together:
                    assert wrk is not None
                    off_measured, measured = measure_together(VARIANTS["off"], env, stub_port, args, wrk)
                    add(totals["off"], off_measured)
                    totals[name].beside.append(totals["off"].rounds[-1])
                else:
                    measured = measure(env, stub_port, args, wrk)
                add(totals[name], measured)
                totals[name].spans += spans.value - spans_before  # the server flushed them as it stopped
    finally:
        stub.terminate()
        receiver.terminate()
        stub.join(timeout=10)
        receiver.join(timeout=10)

    client = f"wrk, {args.concurrency} connections" if wrk else f"Python client, {args.concurrency} threads"
    print(
        f"observability cost: flowker serve, {args.workers} gthread workers x {args.threads} threads, SQLite; "
        f"{client}; {args.rounds} rounds x {args.seconds:g} s per variant, alternating; "
        f"{os.cpu_count()} CPUs; load average before: {load_before:.2f}; {time.monotonic() - started:.0f} s"
    )
    for name, total in totals.items():
        settings = ", ".join(f"{key}={value}" for key, value in VARIANTS[name].items()) or "nothing set"
        latency_text = (
            f", p50 {sorted(total.p50)[len(total.p50) // 2]:.1f} ms, p99 {sorted(total.p99)[len(total.p99) // 2]:.1f} ms"
            if total.p50
            else ""
        )
        print(
            f"  {name}: {total.rate:.1f} executions/s{latency_text}, servers' CPU {total.cpu_ms:.2f} ms per execution, "
            f"{total.errors} errors, {total.spans} spans received  ({settings})"
        )
        if args.cpu_limit and total.seconds:
            print(f"    used {100 * total.cap_share(args.cpu_limit):.1f} % of its {args.cpu_limit:g}-CPU cap")
        if name != "off" and totals["off"].rate:
            off = totals["off"]
            print(
                f"    / off: throughput {100 * total.rate / off.rate:.1f} %, "
                f"CPU per execution {100 * total.cpu_ms / off.cpu_ms:.1f} %"
            )
    medians: dict[str, float] = {}
    for name, total in totals.items():
        if name == "off":
            continue
        # Round i of a variant against round i of off (run one after the other, or at the same
        # time with --together): the neighbours' load drifts less within a pair than over the run.
        off_rounds = total.beside or totals["off"].rounds
        throughput = [mine[0] / off[0] for mine, off in zip(total.rounds, off_rounds) if off[0]]
        cpu = [mine[1] / off[1] for mine, off in zip(total.rounds, off_rounds) if off[1]]
        if throughput and cpu:
            medians[name] = median(throughput)
            print(
                f"  {name} / off, round by round: throughput median {100 * median(throughput):.1f} % "
                f"(min {100 * min(throughput):.1f}, max {100 * max(throughput):.1f}), "
                f"CPU per execution median {100 * median(cpu):.1f} % (min {100 * min(cpu):.1f}, max {100 * max(cpu):.1f})"
            )
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if "on" not in totals:
        return 0 if not any(total.errors for total in totals.values()) else 1
    off, on = totals["off"], totals["on"]
    ratio = on.rate / off.rate if off.rate else 0.0
    cpu_ratio = on.cpu_ms / off.cpu_ms if off.cpu_ms else 0.0
    # Both the total and the median of the rounds: a bimodal round (benchmarks/README.md)
    # swings the total either way; the median alone can hide a real tail.
    round_median = medians.get("on", 0.0)
    met = ratio >= TARGET_RATIO and round_median >= TARGET_RATIO
    if args.cpu_limit:
        # Capped servers compare only while both are held by their caps: a server that left
        # CPU unused waited on something else (the load generator, the stub), not its cost.
        if min(total.cap_share(args.cpu_limit) for total in (off, on)) < CAP_BOUND:
            print(f"note: a server used under {100 * CAP_BOUND:.0f} % of its cap: not CPU-bound, no verdict")
            met = False
    print(
        f"all on / off: throughput {100 * ratio:.1f} % over all rounds, median {100 * round_median:.1f} % "
        f"round by round; CPU per execution {100 * cpu_ratio:.1f} % "
        f"(target: throughput >= {100 * TARGET_RATIO:.0f} %, both): {'met' if met else 'NOT met'}"
    )
    if on.spans == 0:
        print("note: the 'on' variant exported no spans: traces were not on")
    return 0 if not any(total.errors for total in totals.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

"""The lean OTLP encoder's cost per span (flowker/tracing_export.py), and a check of its bytes.

    .venv/bin/python -m benchmarks.span_encoding [--executions 100] [--callgrind]

Builds the spans of ``--executions`` traced executions as Flowker's tracing makes them
(flowker.tracing: one ``flowker.execution`` span under an incoming remote parent, two
``flowker.step`` spans, two CLIENT calls ``POST``/``GET``; LeanSpans), checks that
:func:`flowker.tracing_export.encode_spans` writes exactly the SDK encoder's bytes for them,
then times the exporter's encoder (its caches warmed by a first batch, as a running exporter's)
on 7 more batches: best of several rounds, µs per span of process time. ``--callgrind`` also counts
instructions per span: the same process under ``valgrind --tool=callgrind`` encoding the
first of 5 batches (of runs all different: new ids and URLs, as an exporter's batches) and
then 2 or 4 more; the difference of the totals over the spans of the 2 extra batches.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHILD_FLAG = "--child"


def build_spans(executions: int, first: int = 0) -> list:
    """The finished spans of ``executions`` runs (numbered from ``first``: their ids and URLs
    are the run's own), made by :class:`flowker.tracing.Tracing`."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from flowker.tracing import Tracing

    memory = InMemorySpanExporter()
    tracing = Tracing({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}, exporter=memory).start()
    try:
        for number in range(first, first + executions):
            execution_id = f"0190b8a2-1f7c-7b1e-9a43-{number:012x}"
            traceparent = f"00-{number + 1:032x}-{number + 7:016x}-01"
            parent = tracing.extract({"traceparent": traceparent}.get)
            with tracing.execution(execution_id, parent):
                for node, method in (("score", "POST"), ("fetch", "GET")):
                    with tracing.step(node, "executor", "payments", execution_id):
                        url = f"http://127.0.0.1:8080/{node}/{number}"
                        with tracing.client("stub", method, url, {"q": "1"}, str, 1) as call:
                            call.headers({})
                            status = 200 if method == "POST" or number % 10 else 503
                            call.set("http.response.status_code", status)
                            if status >= 400:
                                call.failed(str(status))
    finally:
        tracing.shutdown()
    return list(memory.get_finished_spans())


def check_bytes(spans: list) -> bool:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode_spans

    from flowker.tracing_export import encode_spans

    return encode_spans(spans) == sdk_encode_spans(spans).SerializePartialToString()


def batches_of(executions: int, count: int) -> list[list]:
    """``count`` batches of the spans of ``executions`` runs each, no two runs alike."""
    return [build_spans(executions, executions * number) for number in range(count)]


def time_per_span(batches: list[list], rounds: int = 7) -> float:
    """µs of process time per span encoding ``batches[1:]`` with a fresh encoder warmed by
    ``batches[0]`` (the exporter's caches outlive a batch; new runs bring new ids), best of ``rounds``."""
    from flowker.tracing_export import _Encoder

    best = float("inf")
    for _ in range(rounds):
        encoder = _Encoder()
        encoder.request(batches[0])
        started = time.process_time()
        for spans in batches[1:]:
            encoder.request(spans)
        best = min(best, time.process_time() - started)
    return best / sum(len(spans) for spans in batches[1:]) * 1e6


def child(executions: int, rounds: int) -> None:
    """The measured process: build 5 batches, warm the encoder with the first, encode ``rounds`` more."""
    from flowker.tracing_export import _Encoder

    batches = batches_of(executions, 5)
    encoder = _Encoder()
    for spans in batches[: 1 + rounds]:
        encoder.request(spans)


def instructions(executions: int, rounds: int) -> int:
    from benchmarks.load_tools import callgrind_instructions

    return callgrind_instructions(["-m", "benchmarks.span_encoding", CHILD_FLAG, str(executions), str(rounds)], ROOT)


def main(argv=None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] == [CHILD_FLAG]:
        child(int(arguments[1]), int(arguments[2]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--executions", type=int, default=100)
    parser.add_argument("--callgrind", action="store_true", help="also count instructions per span (valgrind)")
    args = parser.parse_args(arguments)
    batches = batches_of(args.executions, 8)
    spans = batches[1]
    print(f"batches of {len(spans)} spans ({args.executions} executions)")
    same = all(check_bytes(spans) for spans in batches[:2])
    print(f"bytes identical to the SDK encoder's: {same}")
    print(f"encoding: {time_per_span(batches):.2f} µs per span (process time, 7 batches, best of 7)")
    if args.callgrind:
        if shutil.which("valgrind") is None:
            raise SystemExit("valgrind is not installed")
        few, many = instructions(args.executions, 2), instructions(args.executions, 4)
        print(f"encoding: {(many - few) / (2 * len(spans)):,.0f} instructions per span (callgrind, 4 - 2 rounds)")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())

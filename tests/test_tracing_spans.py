"""flowker.tracing_spans: what the lean spans promise besides being cheap.

A plugin's own spans nest under Flowker's step (Flowker's spans are OpenTelemetry's current
span while they run) and the context is put back exactly; a LeanSpan handed to the
processor reads and exports as the SDK ReadableSpan a copy of it would, and stays as it
ended; the ``traceparent``/``tracestate`` written for an executor are the propagator's."""

from __future__ import annotations

import contextvars
import logging
import random

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider, sampling
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import INVALID_SPAN_CONTEXT, SpanContext, StatusCode, TraceFlags, TraceState
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from flowker import tracing_spans
from flowker.tracing import Tracing
from flowker.tracing_batch import SpanBatch
from flowker.tracing_export import encode_spans
from flowker.tracing_spans import LeanSpan

# ReadableSpan's read-only view: what the processor and the exporter read.
READ_VIEW = (
    "name",
    "context",
    "parent",
    "kind",
    "resource",
    "instrumentation_scope",
    "attributes",
    "status",
    "start_time",
    "end_time",
    "events",
    "links",
    "dropped_attributes",
    "dropped_events",
    "dropped_links",
)


@pytest.fixture
def tracing():
    exporter = InMemorySpanExporter()
    started = Tracing({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, exporter=exporter).start()
    started.exporter = exporter  # type: ignore[attr-defined]
    try:
        yield started
    finally:
        started.shutdown()


def test_a_plugins_own_span_nests_under_the_step_and_the_context_is_put_back(tracing):
    plugin_spans = InMemorySpanExporter()
    plugin_provider = TracerProvider()  # a plugin's own SDK, as OpenTelemetry instrumentation would have
    plugin_provider.add_span_processor(SimpleSpanProcessor(plugin_spans))
    plugin_tracer = plugin_provider.get_tracer("a-plugin")
    before = otel_context.get_current()
    with tracing.execution("e-1"):
        with tracing.step("work", "action", "wf", "e-1"):
            step_span = trace.get_current_span()
            with plugin_tracer.start_as_current_span("plugin.work"):
                with tracing.client("svc", "GET", "http://127.0.0.1:9/", None, str, 1) as call:
                    sent = call.headers({})
            assert trace.get_current_span() is step_span  # the plugin's span is gone again
        execution_span = trace.get_current_span()
    assert otel_context.get_current() is before
    tracing.shutdown()
    (plugin_span,) = plugin_spans.get_finished_spans()
    client, step, execution = tracing.exporter.get_finished_spans()
    assert isinstance(step_span, LeanSpan) and step_span.context == step.context
    assert execution_span.context == execution.context
    assert plugin_span.parent == step.context  # under the step, in the same trace
    assert plugin_span.context.trace_id == execution.context.trace_id
    # Flowker's call made inside the plugin's span sits under it, as any span would.
    assert client.parent == plugin_span.context
    assert sent["traceparent"] == f"00-{client.context.trace_id:032x}-{client.context.span_id:016x}-03"


def test_a_context_that_cannot_be_put_back_is_logged_not_raised(tracing, caplog):
    step = tracing.step("n", "action", "wf", "e-1")
    step.__enter__()
    with caplog.at_level(logging.ERROR, logger="opentelemetry.context"):
        contextvars.copy_context().run(step.__exit__, None, None, None)  # another context: reset fails
    assert "Failed to detach context" in caplog.text
    otel_context.detach(step._token)  # put back in the context it was entered in
    tracing.shutdown()
    assert [span.name for span in tracing.exporter.get_finished_spans()] == ["flowker.step"]


def test_lean_spans_read_and_export_as_the_readable_span_copies_the_sdk_would_make(tracing):
    parent = tracing.extract({"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}.get)
    with tracing.execution("e-1", parent) as run:
        run.set("flowker.workflow.name", "wf")
        with tracing.step("call", "executor", "wf", "e-1"):
            with tracing.client("svc", "POST", "http://127.0.0.1:9/x", {"q": "1"}, str, 2) as call:
                call.failed("503")
        with pytest.raises(RuntimeError), tracing.step("out", "action", "wf", "e-1"):
            raise RuntimeError("no")
    tracing.shutdown()
    ended = tracing.exporter.get_finished_spans()
    assert len(ended) == 4 and all(isinstance(span, LeanSpan) for span in ended)
    copies = []
    for span in ended:
        for name in READ_VIEW:  # the fast read view agrees with ReadableSpan's own getters
            assert getattr(span, name) == getattr(ReadableSpan, name).fget(span), name
        copy = ReadableSpan(
            name=span.name,
            context=span.context,
            parent=span.parent,
            resource=span.resource,
            attributes=dict(span.attributes),
            kind=span.kind,
            status=span.status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )
        assert span.to_json() == copy.to_json()
        copies.append(copy)
    assert encode_spans(ended) == encode_spans(copies)
    client = ended[0]
    assert client.status.status_code is StatusCode.ERROR and client.attributes["error.type"] == "503"
    # Ended: nothing changes it any more.
    client.set_attribute("late", 1)
    client.set_status(StatusCode.OK)
    client.update_name("renamed")
    client.end()
    assert "late" not in client.attributes and client.status.status_code is StatusCode.ERROR
    assert client.name == client._name == "POST" and client.end_time == client._end_time
    assert encode_spans([client]) == encode_spans([copies[0]])


@pytest.mark.parametrize(
    "span_context",
    [
        SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, False, TraceFlags(1)),
        SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, False, TraceFlags(0)),
        SpanContext(1, 2, True, TraceFlags(3), TraceState([("vendor", "a=1"), ("other", "x")])),
        INVALID_SPAN_CONTEXT,
    ],
)
def test_the_trace_context_written_for_an_executor_is_the_propagators(span_context):
    ours: dict = {}
    tracing_spans.inject(ours, span_context)
    theirs: dict = {}
    TraceContextTextMapPropagator().inject(theirs, trace.set_span_in_context(trace.NonRecordingSpan(span_context)))
    assert ours == theirs


def test_the_context_is_read_directly_only_from_the_default_runtime_context(monkeypatch):
    variable = tracing_spans._runtime_variable()
    assert variable is not None and variable.get() is otel_context.get_current()

    class OtherRuntime:  # what OTEL_PYTHON_CONTEXT could load instead
        def get_current(self):
            return otel_context.Context()

    monkeypatch.setattr(otel_context, "_RUNTIME_CONTEXT", OtherRuntime())
    assert tracing_spans._runtime_variable() is None


def test_a_calls_server_address_and_port_are_right_and_the_kept_ones_stay_bounded(tracing):
    from flowker.tracing import SERVER_CACHE_SIZE

    urls = [f"https://svc-{number}.example:{8000 + number}/pay" for number in range(SERVER_CACHE_SIZE + 10)]
    with tracing.execution("e-1"):
        with tracing.step("pay", "executor", "wf", "e-1"):
            for url in [*urls, "https://default.example/pay", "http://plain.example/x", urls[0]]:
                with tracing.client("svc", "POST", url, None, str, 1):
                    pass
    tracing.shutdown()
    calls = [span for span in tracing.exporter.get_finished_spans() if span.name == "POST"]
    assert len(calls) == len(urls) + 3
    for span, url in zip(calls, urls):
        number = int(url.split("-")[1].split(".")[0])
        assert (span.attributes["server.address"], span.attributes["server.port"]) == (
            f"svc-{number}.example",
            8000 + number,
        )
    assert [(span.attributes["server.address"], span.attributes["server.port"]) for span in calls[-3:]] == [
        ("default.example", 443),
        ("plain.example", 80),
        ("svc-0.example", 8000),
    ]
    assert 0 < len(tracing._servers) <= SERVER_CACHE_SIZE


@pytest.mark.parametrize(
    "sampler",
    [
        sampling.DEFAULT_ON,
        sampling.ALWAYS_ON,
        sampling.ALWAYS_OFF,
        sampling.DEFAULT_OFF,
        sampling.TraceIdRatioBased(0.5),
        sampling.ParentBased(sampling.TraceIdRatioBased(0.5)),
    ],
    ids=["parentbased_always_on", "always_on", "always_off", "parentbased_always_off", "ratio", "parentbased_ratio"],
)
@pytest.mark.parametrize("with_parent", [False, True], ids=["root", "remote-parent"])
def test_a_runs_span_is_decided_as_the_sdks_start_span_decides(sampler, with_parent):
    """start_root answers what Tracer.start_span would (ids drawn alike, seeded), with the
    default sampler's shortcut for a run without a parent included."""
    provider = TracerProvider(sampler=sampler)
    tracer = provider.get_tracer("flowker-test")
    batch = SpanBatch(InMemorySpanExporter(), {})
    try:
        for seed in range(20):  # ratio samplers: some traces in, some out
            if with_parent:
                carrier = {"traceparent": f"00-{seed + 1:032x}-00000000000000{seed + 1:02x}-0{seed % 2}"}
                context = TraceContextTextMapPropagator().extract(carrier)
            else:
                context = otel_context.Context()
            random.seed(seed)
            lean = tracing_spans.start_root(tracer, batch, "flowker.execution", context, {"flowker.execution.id": "e"})
            random.seed(seed)
            sdk = tracer.start_span("flowker.execution", context=context, attributes={"flowker.execution.id": "e"})
            assert tuple(lean.get_span_context()) == tuple(sdk.get_span_context()), seed
            assert lean.is_recording() == sdk.is_recording()
            if sdk.is_recording():
                assert isinstance(lean, LeanSpan) and dict(lean.attributes) == dict(sdk.attributes)
                assert lean.parent == sdk.parent
    finally:
        batch.shutdown()
        provider.shutdown()


def test_a_child_span_fills_every_field_a_run_span_does(tracing):
    with tracing.execution("e-1") as run, tracing.step("n", "action", "wf", "e-1") as step:
        for name in LeanSpan.__slots__:
            assert hasattr(run, name) == hasattr(step, name), name
            if hasattr(run, name) and name != "parent":
                assert type(getattr(run, name)) is type(getattr(step, name)), name
        assert step.parent == run.context and step.resource is run.resource
    assert run.end_time >= step.end_time > step.start_time >= run.start_time

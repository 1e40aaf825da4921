"""flowker.tracing_export: the lean OTLP encoder writes what the SDK's encoder writes.

Spans made by the real SDK (every attribute value type Flowker and the OTel API allow,
a remote parent, a trace state, events, links, each status and kind) are encoded both
ways; the bytes must be the same, and opentelemetry-proto's ExportTraceServiceRequest must
decode ours into the same message. The exporter is then run against a real OTLP/HTTP
receiver on 127.0.0.1 with its OTEL_* settings (endpoint, headers, compression)."""

from __future__ import annotations

import gzip

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from flowker.local_server import LocalHTTPServer, RecordedRequest
from flowker.tracing_export import LeanOTLPSpanExporter, encode_spans

ATTRIBUTES = {
    "text": "héllo wörld",
    "empty": "",
    "true": True,
    "false": False,
    "zero": 0,
    "small": 7,
    "big": 2**62 + 12345,
    "negative": -3,
    "most negative": -(2**63),
    "float": 3.25,
    "negative float": -0.5,
    "texts": ("a", "b", ""),
    "ints": [1, -2, 300],
    "floats": (1.5, 0.0),
    "bools": [True, False],
    "flowker.execution.id": "0190b8a2-1f7c-7b1e-9a43-4a7f3f6a1b2c",
}


def _spans(resource_attributes=None):
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create(resource_attributes or {"service.name": "flowker-test"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("flowker", "1.2.3")
    other = provider.get_tracer("another.scope")
    parent = TraceContextTextMapPropagator().extract(
        {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tracestate": "vendor=value,x=y"}
    )
    with tracer.start_as_current_span("flowker.execution", context=parent, attributes=ATTRIBUTES) as execution:
        execution.add_event("an event", {"n": 1, "s": "x"})
        execution.add_event("a bare event")
        with tracer.start_as_current_span("flowker.step", attributes={"flowker.node.id": "a"}) as step:
            step.set_status(Status(StatusCode.ERROR, "refused"))
            with tracer.start_as_current_span(
                "POST",
                kind=SpanKind.CLIENT,
                attributes={"http.request.method": "POST", "server.port": 8080},
                links=[Link(execution.get_span_context(), {"why": "retry"})],
            ) as client:
                client.set_status(Status(StatusCode.OK))
        with other.start_as_current_span("consumer", kind=SpanKind.CONSUMER):
            pass
    new_trace = tracer.start_span("root", kind=SpanKind.SERVER, attributes={"only": "me"})
    new_trace.end()
    for kind in (SpanKind.PRODUCER, SpanKind.INTERNAL):
        tracer.start_span("k", kind=kind).end()
    provider.shutdown()
    return memory.get_finished_spans()


def test_the_bytes_are_the_sdk_encoders_and_decode_to_the_same_message():
    spans = _spans()
    assert len(spans) == 7
    ours = encode_spans(spans)
    theirs = sdk_encode_spans(spans)
    decoded = ExportTraceServiceRequest()
    decoded.ParseFromString(ours)
    assert decoded == theirs
    assert ours == theirs.SerializeToString()


def test_what_a_receiver_reads_from_the_lean_bytes():
    spans = _spans({"service.name": "flowker-test", "deployment": "ci"})
    decoded = ExportTraceServiceRequest()
    decoded.ParseFromString(encode_spans(spans))
    (resource_spans,) = decoded.resource_spans
    resource = {item.key: item.value.string_value for item in resource_spans.resource.attributes}
    assert resource["service.name"] == "flowker-test" and resource["deployment"] == "ci"
    scopes = {scope.scope.name: scope for scope in resource_spans.scope_spans}
    assert set(scopes) == {"flowker", "another.scope"} and scopes["flowker"].scope.version == "1.2.3"
    by_name = {span.name: span for span in scopes["flowker"].spans}
    execution, step, client = by_name["flowker.execution"], by_name["flowker.step"], by_name["POST"]
    assert execution.trace_id.hex() == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert execution.parent_span_id.hex() == "00f067aa0ba902b7"
    assert execution.trace_state == "vendor=value,x=y"
    assert execution.flags == 0x300  # the parent is remote
    assert step.parent_span_id == execution.span_id and client.parent_span_id == step.span_id
    assert step.flags == 0x100
    assert 0 < execution.start_time_unix_nano <= step.start_time_unix_nano <= step.end_time_unix_nano
    values = {item.key: item.value for item in execution.attributes}
    assert values["text"].string_value == "héllo wörld"
    assert values["empty"].HasField("string_value") and values["false"].HasField("bool_value")
    assert values["zero"].HasField("int_value") and values["most negative"].int_value == -(2**63)
    assert values["negative"].int_value == -3 and values["big"].int_value == 2**62 + 12345
    assert values["float"].double_value == 3.25
    assert [v.int_value for v in values["ints"].array_value.values] == [1, -2, 300]
    assert [v.string_value for v in values["texts"].array_value.values] == ["a", "b", ""]
    assert [event.name for event in execution.events] == ["an event", "a bare event"]
    assert step.status.code == 2 and step.status.message == "refused"  # STATUS_CODE_ERROR
    assert client.status.code == 1 and client.kind == 3  # OK; SPAN_KIND_CLIENT
    assert client.links[0].span_id == execution.span_id
    assert {item.key: item.value.int_value for item in client.attributes}["server.port"] == 8080


def test_a_value_the_encoder_cannot_write_is_left_out_not_the_batch():
    (span,) = [span for span in _spans() if span.name == "root"]
    span._attributes = {"fine": "yes", "odd": object()}  # past the SDK's own checks
    decoded = ExportTraceServiceRequest()
    decoded.ParseFromString(encode_spans([span]))
    attributes = decoded.resource_spans[0].scope_spans[0].spans[0].attributes
    assert [item.key for item in attributes] == ["fine"]


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_the_exporter_sends_them_with_its_otel_settings(monkeypatch, compression):
    requests: list[RecordedRequest] = []

    def answer(request: RecordedRequest):
        requests.append(request)
        return 200, {"Content-Type": "application/x-protobuf"}, b""

    spans = _spans()
    with LocalHTTPServer(answer) as server:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", server.url)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=acme")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", compression)
        exporter = LeanOTLPSpanExporter()
        try:
            assert exporter.export(spans) is SpanExportResult.SUCCESS
        finally:
            exporter.shutdown()
        assert exporter.export(spans) is SpanExportResult.FAILURE  # shut down: nothing sent
    (request,) = requests
    assert request.method == "POST" and request.path == "/v1/traces"
    assert request.header("x-tenant") == "acme"
    body = request.body
    if compression == "gzip":
        assert request.header("Content-Encoding") == "gzip"
        body = gzip.decompress(body)
    else:
        assert not request.header("Content-Encoding")
    assert body == sdk_encode_spans(spans).SerializeToString()


def test_step_and_call_spans_are_lean_children_exported_like_the_sdks():
    from flowker.tracing import Tracing
    from flowker.tracing_spans import LeanSpan

    memory = InMemorySpanExporter()
    tracing = Tracing({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}, exporter=memory).start()
    try:
        with tracing.execution("e-1") as execution:
            with tracing.step("score", "executor", "payments", "e-1") as step:
                assert isinstance(step, LeanSpan)  # the span is its own handle
                with tracing.client("stub", "POST", "http://127.0.0.1:8080/score", {"q": "1"}, str, 2) as call:
                    headers = call.headers({"traceparent": "stale"})
                call.set("ignored", None)
            with pytest.raises(RuntimeError), tracing.step("out", "action", "payments", "e-1"):
                raise RuntimeError("a message that must not be exported")
    finally:
        tracing.shutdown()
    finished = memory.get_finished_spans()
    spans = {span.attributes.get("flowker.node.id", span.name): span for span in finished}
    run, score, post, out = spans["flowker.execution"], spans["score"], spans["POST"], spans["out"]
    trace_id = run.context.trace_id
    assert {span.context.trace_id for span in spans.values()} == {trace_id} and execution.trace_id
    assert score.parent.span_id == run.context.span_id and post.parent.span_id == score.context.span_id
    assert headers["traceparent"].split("-")[2] == f"{post.context.span_id:016x}"
    assert post.kind is SpanKind.CLIENT and post.attributes["http.request.resend_count"] == 1
    assert post.attributes["url.full"] == "http://127.0.0.1:8080/score?q=1" and "ignored" not in post.attributes
    assert out.status.status_code is StatusCode.ERROR and out.attributes["error.type"] == "RuntimeError"
    assert score.end_time >= post.end_time >= post.start_time >= score.start_time >= run.start_time
    decoded = ExportTraceServiceRequest()
    decoded.ParseFromString(encode_spans(finished))
    (resource_spans,) = decoded.resource_spans
    (scope_spans,) = resource_spans.scope_spans  # one scope: the children share the execution's
    assert len(scope_spans.spans) == 4 and "must not" not in str(decoded)

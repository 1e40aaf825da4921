"""flowker.tracing_export: the lean OTLP encoder writes what the SDK's encoder writes.

Spans made by the real SDK (every attribute value type Flowker and the OTel API allow,
a remote parent, a trace state, events, links, each status and kind) are encoded both
ways; the bytes must be the same, and opentelemetry-proto's ExportTraceServiceRequest must
decode ours into the same message. The exporter is then run against a real OTLP/HTTP
receiver on 127.0.0.1 with its OTEL_* settings (endpoint, headers, compression)."""

from __future__ import annotations

import base64
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
from flowker.tracing_export import LeanOTLPSpanExporter, _Encoder, encode_spans

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


# -- the lean encoder's fast path and caches: the bytes still the SDK encoder's -------------


def _sdk_bytes(spans) -> bytes:
    return sdk_encode_spans(spans).SerializeToString()


def _lean_spans(executions=3, tracestate=None, values=()):
    """LeanSpans as Flowker's tracing makes them: each run under a remote parent, two steps,
    a client call each (the second failing with error.type); ``values`` set on the steps."""
    from flowker.tracing import Tracing

    memory = InMemorySpanExporter()
    tracing = Tracing({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}, exporter=memory).start()
    try:
        for number in range(executions):
            headers = {"traceparent": f"00-{number + 1:032x}-{number + 7:016x}-01"}
            if tracestate:
                headers["tracestate"] = tracestate
            with tracing.execution(f"e-{number}", tracing.extract(headers.get)):
                for node, method in (("score", "POST"), ("fetch", "GET")):
                    with tracing.step(node, "executor", "payments", f"e-{number}") as step:
                        for name, value in values:
                            step.set(name, value)
                        url = f"https://api.example.com/{node}/{number}"
                        with tracing.client("stub", method, url, {"q": "é"}, str, 1 + number % 2) as call:
                            call.set("http.response.status_code", 200 if method == "POST" else 503)
                            if method == "GET":
                                call.failed("503")
    finally:
        tracing.shutdown()
    return list(memory.get_finished_spans())


def test_lean_spans_are_encoded_as_the_sdk_encodes_them():
    from flowker.tracing_spans import LeanSpan

    spans = _lean_spans()
    assert len(spans) == 15 and all(isinstance(span, LeanSpan) for span in spans)
    assert {span.parent.is_remote for span in spans if span.name == "flowker.execution"} == {True}
    failed = [span for span in spans if span.name == "GET"]
    assert failed[0].status.status_code is StatusCode.ERROR and failed[0].attributes["error.type"] == "503"
    assert encode_spans(spans) == _sdk_bytes(spans)


def test_lean_spans_with_a_trace_state_take_the_general_path_to_the_same_bytes():
    spans = _lean_spans(2, tracestate="vendor=value,x=y")
    assert all(span.context.trace_state for span in spans)
    ours = encode_spans(spans)
    assert ours == _sdk_bytes(spans) and b"vendor=value,x=y" in ours


def test_a_large_batch_with_long_values_and_multi_byte_sizes():
    long_text = "ü" * 150  # 300 bytes: two-byte sizes at every level
    values = [
        ("negative", -5),
        ("most negative", -(2**63)),
        ("big", 2**63 - 1),
        ("long", long_text),
        ("key " + "k" * 130, "v"),  # a long key with a short value
    ]
    values += [(chr(97 + n), "x" * (115 + n)) for n in range(16)]  # sizes either side of one byte
    spans = _lean_spans(120, values=values)  # 600 spans: the group's size a three-byte varint
    assert len(spans) == 600
    encoder = _Encoder()
    for _ in range(2):  # the second time from the caches
        assert encoder.request(spans) == _sdk_bytes(spans)


def test_equal_values_of_other_types_never_share_a_cache_entry():
    encoder = _Encoder()
    for value in (1, True, 1.0, "1", 0, False, 0.0, "", b"1", -1, "True"):
        spans = _lean_spans(1, values=[("v", value), ("flowker.node.id", value)])
        assert encoder.request(spans) == _sdk_bytes(spans), value
    spans = _lean_spans(1, values=[("v", 1)])
    assert encoder.request(spans) == _sdk_bytes(spans)  # 1 after True, 1.0 and "1": still an int


def test_values_of_every_type_on_lean_and_sdk_spans(monkeypatch):
    monkeypatch.setattr("flowker.tracing_export._PAIR_CACHE_MAX", 5)  # the caches cleared often
    odd_values = {
        "bytes": b"\x00\xffraw",
        "mapping": {"a": 1, "b": [True, 2.5], "c": {"d": "e"}},
        "list": [1, "two", 3.0],
        "tuple of lists": ([1], [2]),
        "float": -0.0,
        "bool": True,
    }
    lean = _lean_spans(2, values=list(odd_values.items()))
    sdk = [span for span in _spans() if span.name == "root"]
    sdk[0]._attributes = dict(odd_values)  # past the SDK's own checks, as ReadableSpan allows
    encoder = _Encoder()
    for spans in (lean, sdk, lean + sdk, sdk + lean):
        assert encoder.request(spans) == _sdk_bytes(spans)


def test_several_resources_and_scopes_interleaved_in_one_batch():
    lean = _lean_spans(2)
    sdk = _spans({"service.name": "other", "deployment": "ci"})
    spans = [item for pair in zip(lean, sdk) for item in pair] + lean[len(sdk) :]
    assert len({id(span.resource) for span in spans}) == 2
    assert len({id(span.instrumentation_scope) for span in spans}) == 3
    assert encode_spans(spans) == _sdk_bytes(spans)


def _recording_server(requests: list[RecordedRequest]) -> LocalHTTPServer:
    def answer(request: RecordedRequest):
        requests.append(request)
        return 200, {"Content-Type": "application/x-protobuf"}, b""

    return LocalHTTPServer(answer)


@pytest.mark.parametrize("bypassed", [False, True], ids=["through the proxy", "NO_PROXY"])
def test_the_exporter_takes_proxy_and_netrc_login_from_the_environment_once(monkeypatch, tmp_path, bypassed):
    through_proxy: list[RecordedRequest] = []
    direct: list[RecordedRequest] = []
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login otel password netrc-s3cret\n")
    netrc.chmod(0o600)
    spans = _spans()
    with _recording_server(through_proxy) as proxy, _recording_server(direct) as collector:
        for name in ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        if bypassed:
            monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        monkeypatch.setenv("NETRC", str(netrc))
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
        exporter = LeanOTLPSpanExporter()
        try:
            assert exporter.export(spans) is SpanExportResult.SUCCESS
            # Read once, when the exporter was made: a later change of the variables is not seen.
            monkeypatch.setenv("NO_PROXY", "*" if not bypassed else "")
            assert exporter.export(spans) is SpanExportResult.SUCCESS
        finally:
            exporter.shutdown()
        expected_path = "/v1/traces" if bypassed else f"{collector.url}/v1/traces"  # a proxy is sent the whole URL
    received, idle = (direct, through_proxy) if bypassed else (through_proxy, direct)
    assert len(received) == 2 and not idle
    login = "Basic " + base64.b64encode(b"otel:netrc-s3cret").decode()
    for request in received:
        assert request.method == "POST" and request.path == expected_path
        assert request.header("Authorization") == login
        assert request.body == sdk_encode_spans(spans).SerializeToString()

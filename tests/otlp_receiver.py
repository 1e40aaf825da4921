"""A local OTLP/HTTP trace receiver for the tests: what a collector would get from Flowker.

``with OtlpReceiver() as receiver:`` serves ``POST /v1/traces`` on 127.0.0.1 (a
:class:`flowker.local_server.LocalHTTPServer`), decodes each ``ExportTraceServiceRequest``
(protobuf, as the OTLP/HTTP exporter sends it) with ``opentelemetry-proto`` and keeps its
spans as :class:`ReceivedSpan`; ``receiver.wait_for(predicate)`` polls them, bounded.
"""

from __future__ import annotations

import gzip
import threading
import time
from dataclasses import dataclass, field

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from flowker.local_server import LocalHTTPServer, RecordedRequest

TRACES_PATH = "/v1/traces"
KINDS = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}


@dataclass
class ReceivedSpan:
    name: str
    trace_id: str  # 32 hex digits
    span_id: str  # 16 hex digits
    parent_span_id: str  # "" for a root span
    kind: str
    attributes: dict
    status_code: int  # 0 unset, 1 ok, 2 error
    resource: dict = field(default_factory=dict)

    def values(self) -> list[str]:
        """Every attribute value of the span and its resource, as text."""
        return [str(value) for value in [*self.attributes.values(), *self.resource.values()]]


def _value(any_value):
    kind = any_value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_value(item) for item in any_value.array_value.values]
    if kind == "kvlist_value":
        return {item.key: _value(item.value) for item in any_value.kvlist_value.values}
    return getattr(any_value, kind)


def _attributes(key_values) -> dict:
    return {item.key: _value(item.value) for item in key_values}


def decode(body: bytes) -> list[ReceivedSpan]:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        name=span.name,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        kind=KINDS.get(span.kind, str(span.kind)),
                        attributes=_attributes(span.attributes),
                        status_code=span.status.code,
                        resource=resource,
                    )
                )
    return spans


class OtlpReceiver:
    """The receiver; ``url`` is what OTEL_EXPORTER_OTLP_ENDPOINT names."""

    def __init__(self):
        self.spans: list[ReceivedSpan] = []
        self.bodies: list[bytes] = []  # raw requests, for the canary check
        self._lock = threading.Lock()
        self._server = LocalHTTPServer(self._handle)

    def _handle(self, request: RecordedRequest):
        if request.method != "POST" or request.path != TRACES_PATH:
            return 404, {}, b""
        body = request.body
        if (request.header("Content-Encoding") or "").lower() == "gzip":
            body = gzip.decompress(body)
        try:
            spans = decode(body)
        except Exception:  # noqa: BLE001 - a malformed export is refused, as a collector would
            return 400, {}, b""
        with self._lock:
            self.bodies.append(body)
            self.spans.extend(spans)
        return 200, {"Content-Type": "application/x-protobuf"}, ExportTraceServiceResponse().SerializeToString()

    @property
    def url(self) -> str:
        return self._server.url

    def received(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self.spans)

    def wait_for(self, predicate, what: str, timeout: float = 20.0) -> list[ReceivedSpan]:
        """Poll until ``predicate(spans)`` holds; the spans then."""
        deadline = time.monotonic() + timeout
        while True:
            spans = self.received()
            if predicate(spans):
                return spans
            if time.monotonic() > deadline:
                names = sorted({(span.name, span.trace_id) for span in spans})
                raise AssertionError(f"timed out waiting for {what}; spans received: {names}")
            time.sleep(0.05)

    def __enter__(self) -> "OtlpReceiver":
        self._server.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.stop()

"""A lean OTLP/HTTP span exporter: the export request's protobuf bytes written directly.

The SDK's exporter builds an ``opentelemetry-proto`` message object per span, attribute
and value, then serializes them: 25 to 70 µs per span, most of the tracing cost of a run
(benchmarks/README.md, observability_cost). :func:`encode_spans` writes the same
``ExportTraceServiceRequest`` bytes (field order and proto3 default omission as the
SDK's, so a receiver sees the same message; tests/test_tracing_export.py decodes both
and compares them) with varints, length-delimited fields and fixed64 times, and encodes
each resource and instrumentation scope once per batch.

Flowker's own spans (:class:`flowker.tracing_spans.LeanSpan`: no events, links or trace
state) take a short path inline in :meth:`_Encoder.request`, some 19 k instructions per
span against 51 k before (benchmarks/span_encoding.py): their slots read
directly, the ids in one ``struct`` pack (the trace id field once per trace), the name and
kind with the times in another, the unset status and flags one constant, and each
attribute whose value repeats (node ids and types, methods, hosts, ports) one cached
``KeyValue`` field. Any other span - the SDK's, or a LeanSpan with a trace state - is
written field by field as before.

:class:`LeanOTLPSpanExporter` is the SDK's ``OTLPSpanExporter`` - its endpoint, headers,
timeout, compression, TLS and retries from the ``OTEL_*`` variables, its HTTP client -
with only the encoding replaced.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import requests
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import SpanExportResult

from requests.utils import get_netrc_auth

from flowker.tracing_spans import UNSET_STATUS, LeanClientSpan, LeanSpan

_logger = logging.getLogger(__name__)

_FIXED64 = struct.Struct("<Q").pack
_FIXED32 = struct.Struct("<I").pack
_DOUBLE = struct.Struct("<d").pack
# A LeanSpan's ids in one call: the trace id field, then tag, length and big-endian id of
# fields 2 (span id) [and 4 (parent span id)].
_ROOT_IDS = struct.Struct(">18sHQ").pack
_CHILD_IDS = struct.Struct(">18sHQHQ").pack
# Span.flags: the SDK always says whether the parent is remote (SpanFlags in trace.proto).
_FLAGS_HAS_IS_REMOTE = 0x100
_FLAGS_IS_REMOTE = 0x200
# Wire tags: (field number << 3) | wire type (0 varint, 1 fixed64, 2 length-delimited, 5 fixed32).
# A session of the operator's own making (a credential provider's): used as it is.
_CREDENTIAL_PROVIDER_VARIABLES = (
    "OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER",
    "OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER",
)
_KEY_CACHE_MAX = 512  # encoded attribute keys and span names kept (a small fixed set in practice)
_PAIR_CACHE_MAX = 4096  # encoded (key, value) attributes kept
_PAIR_VALUE_MAX = 200  # longer strings (URLs with ids) are not kept
_KINDS = {value: b"\x30" + bytes((value + 1,)) for value in range(5)}
_REMOTE_PARENT_FLAGS = b"\x85\x01" + struct.pack("<I", _FLAGS_HAS_IS_REMOTE | _FLAGS_IS_REMOTE)
_LOCAL_PARENT_FLAGS = b"\x85\x01" + struct.pack("<I", _FLAGS_HAS_IS_REMOTE)
_LEAN_TYPES = (LeanSpan, LeanClientSpan)  # no events, links or dropped counts: the fast path
_STATUS_UNSET = b"\x7a\x00"  # an empty Status, as the SDK writes it
_UNSET_LOCAL, _UNSET_REMOTE = _STATUS_UNSET + _LOCAL_PARENT_FLAGS, _STATUS_UNSET + _REMOTE_PARENT_FLAGS
_KEPT_TYPES = (str, int)  # the attribute values kept encoded (exact types: not bool)
_NO_VALUES: dict = {}  # a key with no values kept (never written)
_ATTRIBUTE_TAGS = (0x0A, 0x1A, 0x22, 0x4A)  # resource or scope, event, link, span attributes


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int64: two's complement, ten bytes
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# The varints of the lengths spans and attributes have: a list index, not a call.
_SIZES = [_varint(size) for size in range(4096)]
_SIZES_MAX = len(_SIZES)


def _field(tag: int, payload: bytes) -> bytes:
    """A length-delimited field (tag already shifted with wire type 2)."""
    size = len(payload)
    return bytes((tag, size)) + payload if size < 0x80 else bytes((tag,)) + _varint(size) + payload


def _string(tag: int, text: str | None) -> bytes:
    """A proto3 string field: omitted when empty, as the SDK's serializer does."""
    if not text:
        return b""
    return _field(tag, text.encode("utf-8"))


def _any_value(value: Any) -> bytes:
    """An ``AnyValue`` message's bytes (its oneof member is written even when default)."""
    if isinstance(value, bool):
        return b"\x10" + (b"\x01" if value else b"\x00")
    if isinstance(value, str):
        data = value.encode("utf-8")
        return b"\x0a" + _varint(len(data)) + data
    if isinstance(value, int):
        return b"\x18" + _varint(value)
    if isinstance(value, float):
        return b"\x21" + _DOUBLE(value)
    if isinstance(value, bytes):
        return b"\x3a" + _varint(len(value)) + value
    if isinstance(value, Sequence):
        return _field(0x2A, b"".join(_field(0x0A, _any_value(item)) for item in value))
    if isinstance(value, Mapping):
        pairs = b"".join(_field(0x0A, _key_value(str(key), item)) for key, item in value.items())
        return _field(0x32, pairs)
    if value is None:
        return b""
    raise TypeError(f"invalid attribute value type {type(value).__name__}")


def _key_value(key: str, value: Any) -> bytes:
    return _string(0x0A, key) + _field(0x12, _any_value(value))


def _status(status) -> bytes:
    code = status.status_code.value
    if code or status.description:
        body = _string(0x12, status.description)
        if code:
            body += b"\x18" + _varint(code)
        return _field(0x7A, body)
    return _STATUS_UNSET


class _Encoder:
    """Encodes batches; remembers encoded attributes whose values repeat (bounded caches)."""

    def __init__(self):
        self._keys: dict[str, bytes] = {}
        # tag -> key -> value -> the whole KeyValue field: node types, workflow and executor
        # names, methods, hosts repeat from span to span; long ids are not kept. Only str
        # and int (not bool, float) values are kept and looked up, so True, 1 and 1.0 (equal,
        # encoded differently) never meet.
        self._pairs: dict[int, dict[str, dict[Any, bytes]]] = {tag: {} for tag in _ATTRIBUTE_TAGS}
        self._pair_count = 0
        # span name -> (pack of its name and kind fields and the times, kind, name and kind fields)
        self._names: dict[str, tuple[Any, Any, bytes]] = {}

    def _key(self, key: str) -> bytes:
        encoded = self._keys.get(key)
        if encoded is None:
            encoded = _string(0x0A, key)
            if len(self._keys) < _KEY_CACHE_MAX:
                self._keys[key] = encoded
        return encoded

    def _pair(self, tag: int, key: str, value: Any) -> bytes | None:
        """One ``KeyValue`` field, kept when its value may repeat; None when it cannot be encoded."""
        kind = type(value)
        try:
            key_field = self._keys.get(key) or self._key(key)
            if kind is str:
                data = value.encode()
                size, key_size = len(data), len(key_field)
                if size + key_size < 124:  # every size one byte (the usual): no varint to compute
                    sizes = _SIZES
                    pair_size, value_size = sizes[key_size + size + 4], sizes[size + 2]
                    encoded = b"".join(
                        (sizes[tag], pair_size, key_field, b"\x12", value_size, b"\x0a", sizes[size], data)
                    )
                else:
                    encoded = _field(tag, key_field + _field(0x12, b"\x0a" + _varint(size) + data))
                if size > _PAIR_VALUE_MAX:
                    return encoded
            else:
                encoded = _field(tag, key_field + _field(0x12, _any_value(value)))
                if kind is not int:  # only str and int kept: True == 1, their encodings differ
                    return encoded
        except Exception as error:  # one bad attribute must not lose the batch
            _logger.warning("Failed to encode span attribute %s: %s", key, error)
            return None
        if self._pair_count >= _PAIR_CACHE_MAX:
            for pairs in self._pairs.values():
                pairs.clear()  # bounded; values that repeat come back at once
            self._pair_count = 0
        values = self._pairs[tag].get(key)
        if values is None:
            values = self._pairs[tag][key] = {}
        values[value] = encoded
        self._pair_count += 1
        return encoded

    def attributes(self, tag: int, attributes: Mapping[str, Any] | None) -> bytes:
        """Repeated ``KeyValue`` fields; a value that cannot be encoded is left out (as the SDK does)."""
        if not attributes:
            return b""
        parts = []
        by_key = self._pairs[tag]
        for key, value in attributes.items():
            if type(value) in _KEPT_TYPES:
                encoded = by_key.get(key, _NO_VALUES).get(value)
                if encoded is not None:
                    parts.append(encoded)
                    continue
            encoded = self._pair(tag, key, value)
            if encoded is not None:
                parts.append(encoded)
        return b"".join(parts)

    def span(self, span) -> bytes:
        context = span.get_span_context()
        parent = span.parent
        out = [
            b"\x0a\x10",
            context.trace_id.to_bytes(16, "big"),
            b"\x12\x08",
            context.span_id.to_bytes(8, "big"),
        ]
        trace_state = context.trace_state
        if trace_state:
            out.append(_string(0x1A, ",".join(f"{key}={value}" for key, value in trace_state.items())))
        if parent is not None:
            out.append(b"\x22\x08")
            out.append(parent.span_id.to_bytes(8, "big"))
        out.append(_string(0x2A, span.name))
        out.append(_KINDS[span.kind.value])  # SDK SpanKind INTERNAL=0.. -> proto SPAN_KIND_INTERNAL=1..
        start, end = span.start_time, span.end_time
        if start:
            out.append(b"\x39" + _FIXED64(start))
        if end:
            out.append(b"\x41" + _FIXED64(end))
        out.append(self.attributes(0x4A, span.attributes))
        if span.dropped_attributes:
            out.append(b"\x50" + _varint(span.dropped_attributes))
        events = span.events
        for event in events:
            body = b""
            if event.timestamp:
                body += b"\x09" + _FIXED64(event.timestamp)
            body += _string(0x12, event.name) + self.attributes(0x1A, event.attributes)
            if event.dropped_attributes:
                body += b"\x20" + _varint(event.dropped_attributes)
            out.append(_field(0x5A, body))
        if events and span.dropped_events:
            out.append(b"\x60" + _varint(span.dropped_events))
        links = span.links
        for link in links:
            body = b"\x0a\x10" + link.context.trace_id.to_bytes(16, "big")
            body += b"\x12\x08" + link.context.span_id.to_bytes(8, "big")
            body += self.attributes(0x22, link.attributes)
            if link.dropped_attributes:
                body += b"\x28" + _varint(link.dropped_attributes)
            body += b"\x35" + _FIXED32(_flags(link.context))
            out.append(_field(0x6A, body))
        if links and span.dropped_links:
            out.append(b"\x70" + _varint(span.dropped_links))
        status = span.status
        if status is not None:
            out.append(_status(status))
        # Span.flags (field 16, fixed32: a two-byte tag)
        out.append(_REMOTE_PARENT_FLAGS if parent is not None and parent.is_remote else _LOCAL_PARENT_FLAGS)
        return b"".join(out)

    def scope(self, scope) -> bytes:
        if scope is None:
            return b""
        return _string(0x0A, scope.name) + _string(0x12, scope.version) + self.attributes(0x1A, scope.attributes)

    def request(self, spans: Sequence[Any]) -> bytes:
        """The ``ExportTraceServiceRequest`` bytes: spans grouped by resource, then by scope,
        in the order each first appears (as the SDK groups them)."""
        # Grouped by identity: a Resource's hash dumps its attributes as JSON (the SDK pays
        # that per span); the spans of one provider share one Resource object, and a batch's
        # spans mostly one scope too: the group is looked up only when either changes.
        groups: dict[int, tuple[Any, dict[int, tuple[Any, list[bytes]]]]] = {}
        last_resource = last_scope = empty_state = last_trace_id = None
        trace_field, encoded = b"", None
        names, span_pairs, pair, sizes = self._names, self._pairs[0x4A], self._pair, _SIZES
        for span in spans:
            resource, scope = span.resource, span.instrumentation_scope
            if resource is not last_resource or scope is not last_scope or encoded is None:
                last_resource, last_scope = resource, scope
                scope = scope or None
                _resource, scopes = groups.setdefault(id(resource), (resource, {}))
                encoded = scopes.setdefault(id(scope), (scope, []))[1]
            lean = False
            if type(span) in _LEAN_TYPES and (start := span.start_time) and (end := span.end_time):
                trace_id, span_id, _, _, trace_state, _ = span.context
                if trace_state is not empty_state and not trace_state:
                    empty_state = trace_state  # a span's is its parent's: mostly one object, read once
                lean = trace_state is empty_state
            if not lean:
                body = self.span(span)
            else:  # the usual span: slots read directly, its usual fields from caches
                if trace_id != last_trace_id:  # the spans of one execution come together
                    last_trace_id, trace_field = trace_id, b"\x0a\x10" + trace_id.to_bytes(16, "big")
                parent = span.parent
                if parent is None:
                    ids, remote = _ROOT_IDS(trace_field, 0x1208, span_id), False
                else:
                    ids, remote = _CHILD_IDS(trace_field, 0x1208, span_id, 0x2208, parent[1]), parent[2]
                name, kind = span.name, span.kind
                named = names.get(name)
                if named is None or named[1] is not kind:
                    field = _string(0x2A, name) + _KINDS[kind._value_]  # and the times after: one pack
                    named = (struct.Struct(f"<{len(field)}sBQBQ").pack, kind, field)
                    if len(names) < _KEY_CACHE_MAX:
                        names[name] = named
                parts = [ids, named[0](named[2], 0x39, start, 0x41, end)]
                for key, value in span._attributes.items():  # the dict its attributes are a view of
                    if type(value) in _KEPT_TYPES:
                        cached = span_pairs.get(key, _NO_VALUES).get(value)
                        if cached is not None:
                            parts.append(cached)
                            continue
                    cached = pair(0x4A, key, value)
                    if cached is not None:
                        parts.append(cached)
                status = span.status
                if status is UNSET_STATUS:
                    parts.append(_UNSET_REMOTE if remote else _UNSET_LOCAL)
                else:
                    parts += (_status(status), _REMOTE_PARENT_FLAGS if remote else _LOCAL_PARENT_FLAGS)
                body = b"".join(parts)
            size = len(body)
            encoded += (b"\x12", sizes[size] if size < _SIZES_MAX else _varint(size), body)  # ScopeSpans.spans
        # Each group's fields with their sizes in one list, joined once (the spans copied twice).
        out: list[bytes] = []
        for resource, scopes in groups.values():
            resource_parts = [_field(0x0A, self.attributes(0x0A, resource.attributes))]
            for scope, encoded in scopes.values():
                head = _field(0x0A, self.scope(scope))
                schema_url = _string(0x1A, getattr(scope, "schema_url", None))
                spans_field = b"".join(encoded)
                size = len(head) + len(spans_field) + len(schema_url)
                resource_parts += (b"\x12", _varint(size), head, spans_field, schema_url)
            resource_parts.append(_string(0x1A, resource.schema_url))
            out += (b"\x0a", _varint(sum(map(len, resource_parts))), *resource_parts)
        return b"".join(out)


def _flags(parent) -> int:
    if parent is not None and parent.is_remote:
        return _FLAGS_HAS_IS_REMOTE | _FLAGS_IS_REMOTE
    return _FLAGS_HAS_IS_REMOTE


def _settle_environment(session: requests.Session, endpoint: str | None) -> None:
    """Read once what ``requests`` reads from the environment on every request - proxies
    (``HTTPS_PROXY``, ``NO_PROXY``...), the CA bundle (``REQUESTS_CA_BUNDLE``), a ``.netrc``
    login - for the one URL the exporter posts to, and keep it in the session: a lookup
    per export walks ``os.environ`` twice and stats the netrc files (about a third of
    what a POST costs the export thread). The process's environment does not change."""
    if not endpoint:
        return
    settings = session.merge_environment_settings(endpoint, {}, None, None, None)
    session.proxies = settings["proxies"]
    session.verify = settings["verify"]
    session.cert = settings["cert"]
    if session.auth is None:
        session.auth = get_netrc_auth(endpoint)
    session.trust_env = False


def encode_spans(spans: Sequence[Any]) -> bytes:
    """The OTLP ``ExportTraceServiceRequest`` protobuf bytes of these SDK ``ReadableSpan``s."""
    return _Encoder().request(spans)


class LeanOTLPSpanExporter(OTLPSpanExporter):
    """The SDK's OTLP/HTTP exporter (settings, HTTP client, retries) with the lean encoder.

    Its ``export`` is the SDK's but for the encoding step; the exporter's own internal
    metrics (``OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED``) are not recorded. Should a
    future SDK drop the HTTP client this relies on, it exports as the SDK does."""

    def __init__(self, *args, **kwargs):
        settled = None
        if kwargs.get("session") is None and not any(map(os.environ.get, _CREDENTIAL_PROVIDER_VARIABLES)):
            settled = kwargs["session"] = requests.Session()
        super().__init__(*args, **kwargs)
        if settled is not None:
            _settle_environment(settled, getattr(self, "_endpoint", None))
        self._encoder = _Encoder()
        self._lean = callable(getattr(getattr(self, "_client", None), "export", None)) and hasattr(self, "_shutdown")

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        if not self._lean:
            return super().export(spans)
        if self._shutdown:
            _logger.warning("Exporter already shutdown, ignoring batch")
            return SpanExportResult.FAILURE
        try:
            body = self._encoder.request(spans)
        except Exception as error:
            _logger.error("Failed to encode span batch: %s", error)
            return SpanExportResult.FAILURE
        result = self._client.export(body)
        return SpanExportResult.SUCCESS if result.success else SpanExportResult.FAILURE

"""Lean spans: executions, steps and executor calls recorded without the SDK's per-span machinery.

The SDK's ``start_span`` and ``end`` cost 45 to 120 µs per span (attribute cleaning with a
lock per span, span limits, the read-only copy for the processor) - most of what tracing
every run costs once the export is lean (benchmarks/README.md, observability_cost). Flowker's
spans need none of that: their attributes are Flowker's own (a few strings and ints), they
carry no events or links. On end, a :class:`LeanSpan` hands the processor the same
:class:`ReadableSpan` the SDK would.

* :func:`start_root` - the execution's span - decides as the SDK's ``start_span`` does: the
  parent from the context (an incoming ``traceparent``, or the current span), the trace id
  (the parent's, else a new one), the tracer's sampler (``OTEL_TRACES_SAMPLER``), the flags
  and trace state it answers, the tracer's resource and instrumentation scope;
* :meth:`LeanSpan.child` - a step or call span - always sits under a recording span of the
  same process (the execution's): its trace id, flags and state are its parent's (every
  standard sampler decides alike for one trace), its resource and scope too (so the export
  groups them with the parent).

Imported only when tracing is on (it imports the SDK).
"""

from __future__ import annotations

import time
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)
_RANDOM_TRACE_ID = getattr(TraceFlags, "RANDOM_TRACE_ID", 0)  # W3C level 2 flag, newer SDKs set it


def start_root(tracer: Any, name: str, context: Any, attributes: dict[str, Any]) -> trace.Span:
    """A span named ``name`` in ``context`` (None: the current one), decided as the SDK's
    ``Tracer.start_span`` decides: a :class:`LeanSpan` when the sampler records it, else the
    SDK's :class:`NonRecordingSpan` (its trace still propagates, sampled flag off)."""
    current = trace.get_current_span(context).get_span_context()
    is_enabled = getattr(tracer, "_is_enabled", None)
    if is_enabled is not None and not is_enabled():
        return NonRecordingSpan(current)
    id_generator = tracer.id_generator
    parent: SpanContext | None = current
    if parent is None or not parent.is_valid:
        parent = None
        trace_id = id_generator.generate_trace_id()
        random_trace_id = _RANDOM_TRACE_ID and id_generator.is_trace_id_random()
    else:
        trace_id = parent.trace_id
        random_trace_id = _RANDOM_TRACE_ID and parent.trace_flags & _RANDOM_TRACE_ID
    decision = tracer.sampler.should_sample(context, trace_id, name, SpanKind.INTERNAL, attributes, ())
    flags = _SAMPLED if decision.decision.is_sampled() else _NOT_SAMPLED
    if random_trace_id:
        flags = TraceFlags(flags | _RANDOM_TRACE_ID)
    span_context = SpanContext(
        trace_id, id_generator.generate_span_id(), is_remote=False, trace_flags=flags, trace_state=decision.trace_state
    )
    if not decision.decision.is_recording():
        return NonRecordingSpan(span_context)
    return LeanSpan(
        name,
        span_context,
        parent,
        tracer.resource,
        tracer._instrumentation_scope,
        tracer.span_processor,
        SpanKind.INTERNAL,
        decision.attributes,
    )


class LeanSpan(trace.Span):
    """A recording span: ``context`` its own, ``parent`` its parent's (None for a root)."""

    @classmethod
    def child(cls, name: str, parent_span: Any, processor: Any, id_generator: Any, kind: SpanKind, attributes):
        """A span under ``parent_span`` (a recording LeanSpan or SDK span of this process)."""
        parent = parent_span.get_span_context()
        context = SpanContext(
            parent.trace_id,
            id_generator.generate_span_id(),
            is_remote=False,
            trace_flags=parent.trace_flags,
            trace_state=parent.trace_state,
        )
        return cls(
            name,
            context,
            parent,
            parent_span.resource,
            parent_span.instrumentation_scope,
            processor,
            kind,
            attributes,
        )

    def __init__(self, name, context, parent, resource, scope, processor, kind: SpanKind, attributes):
        self._name = name
        self._parent = parent
        self._context = context
        self._resource = resource
        self._scope = scope
        self._processor = processor
        self._kind = kind
        self._attributes: dict[str, Any] = dict(attributes)
        self._status = Status(StatusCode.UNSET)
        self._start = time.time_ns()
        self._end: int | None = None

    # What children and the propagator read (ReadableSpan's names).
    @property
    def resource(self):
        return self._resource

    @property
    def instrumentation_scope(self):
        return self._scope

    def get_span_context(self) -> SpanContext:
        return self._context

    def is_recording(self) -> bool:
        return self._end is None

    def set_attribute(self, key: str, value: Any) -> None:
        if self._end is None and value is not None:
            self._attributes[key] = value

    def set_attributes(self, attributes) -> None:
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def set_status(self, status, description: str | None = None) -> None:
        if self._end is not None or self._status.status_code is StatusCode.OK:
            return  # as the SDK: OK is final
        self._status = status if isinstance(status, Status) else Status(status, description)

    def add_event(self, name: str, attributes=None, timestamp: int | None = None) -> None:
        """Flowker's spans carry no events; an event asked for is not kept."""

    def record_exception(self, exception, attributes=None, timestamp=None, escaped: bool = False) -> None:
        """Never the message (it may hold a secret): failures are ``error.type`` attributes."""

    def update_name(self, name: str) -> None:
        if self._end is None:
            self._name = name

    def end(self, end_time: int | None = None) -> None:
        if self._end is not None:
            return
        self._end = end_time if end_time is not None else time.time_ns()
        self._processor.on_end(
            ReadableSpan(
                name=self._name,
                context=self._context,
                parent=self._parent,
                resource=self._resource,
                attributes=self._attributes,
                kind=self._kind,
                status=self._status,
                start_time=self._start,
                end_time=self._end,
                instrumentation_scope=self._scope,
            )
        )

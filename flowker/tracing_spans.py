"""Lean child spans: steps and executor calls recorded without the SDK's per-span machinery.

The SDK's ``start_span`` and ``end`` cost 45 to 120 µs per span (the sampler, attribute
cleaning with a lock per span, the read-only copy for the processor) - most of what tracing
every run costs once the export is lean (benchmarks/README.md, observability_cost). A step or
call span always sits under a recording span of the same process (the execution's), so it
needs none of that: its trace id, flags and state are its parent's (every standard sampler
decides alike for one trace), its resource and instrumentation scope too (so the export
groups them with the parent), its attributes are Flowker's own (strings and ints). On end,
it hands the processor the same :class:`ReadableSpan` the SDK would.

Imported only when tracing is on (it imports the SDK).
"""

from __future__ import annotations

import time
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode


class LeanSpan(trace.Span):
    """A recording span whose parent is ``parent_span`` (an SDK span or another LeanSpan)."""

    def __init__(self, name: str, parent_span: Any, processor: Any, id_generator: Any, kind: SpanKind, attributes):
        parent = parent_span.get_span_context()
        self._name = name
        self._parent = parent
        self._context = SpanContext(
            parent.trace_id,
            id_generator.generate_span_id(),
            is_remote=False,
            trace_flags=parent.trace_flags,
            trace_state=parent.trace_state,
        )
        self._resource = parent_span.resource
        self._scope = parent_span.instrumentation_scope
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

"""Lean spans: executions, steps and executor calls recorded without the SDK's per-span machinery.

The SDK's ``start_span`` and ``end`` cost 45 to 120 µs per span (attribute cleaning with a
lock per span, span limits, the read-only copy for the processor) - most of what tracing
every run costs once the export is lean (benchmarks/README.md, observability_cost). Flowker's
spans need none of that: their attributes are Flowker's own (a few strings and ints), they
carry no events or links. A :class:`LeanSpan` is itself the :class:`ReadableSpan` the SDK
would build on end (the same fields): on end it hands itself to the processor, no copy is
made; nothing changes it after.

* :func:`start_root` - the execution's span - decides as the SDK's ``start_span`` does: the
  parent from the context (an incoming ``traceparent``, or the current span), the trace id
  (the parent's, else a new one), the tracer's sampler (``OTEL_TRACES_SAMPLER``), the flags
  and trace state it answers, the tracer's resource and instrumentation scope;
* :meth:`LeanSpan.child` - a step or call span - always sits under a recording span of the
  same process (the execution's): its trace id, flags and state are its parent's (every
  standard sampler decides alike for one trace), its resource and scope too (so the export
  groups them with the parent).

The spans still go into OpenTelemetry's current context while they run (a plugin's own
spans nest under them); :data:`current_context`, :data:`attach` and :data:`reset` read and
set it through the context variable of the SDK's default runtime context directly (the
public ``get_current``/``attach``/``detach`` are two calls deep each), else through the
public functions when ``OTEL_PYTHON_CONTEXT`` chose another runtime context.

Imported only when tracing is on (it imports the SDK).
"""

from __future__ import annotations

import random
import time
from contextvars import ContextVar
from operator import attrgetter
from types import MappingProxyType
from typing import Any, Callable

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, StaticSampler
from opentelemetry.trace import (
    INVALID_SPAN,
    INVALID_SPAN_CONTEXT,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)

from flowker.tracing import error_type, full_url, sent_url, without_trace_headers

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)
UNSET_STATUS = Status(StatusCode.UNSET)  # every LeanSpan's until set (the exporter knows it by identity)
_ERROR = Status(StatusCode.ERROR)
_random_bits = random.getrandbits  # what the SDK's RandomIdGenerator draws span ids with
_SPAN_ID_MAX = 2**64 - 1
_new_tuple = tuple.__new__
_new_object = object.__new__
_RANDOM_TRACE_ID = getattr(TraceFlags, "RANDOM_TRACE_ID", 0)  # W3C level 2 flag, newer SDKs set it

# The key OpenTelemetry keeps the current span under (learnt through the public API).
(SPAN_KEY,) = trace.set_span_in_context(INVALID_SPAN, Context()).keys()
_set_in = dict.__setitem__  # a Context refuses item assignment; a fresh copy is ours to fill


def _runtime_variable() -> ContextVar | None:
    """The context variable behind ``opentelemetry.context.get_current``, when it is the
    default runtime context's (``OTEL_PYTHON_CONTEXT`` unset) and answers the same."""
    variable = getattr(getattr(otel_context, "_RUNTIME_CONTEXT", None), "_current_context", None)
    if isinstance(variable, ContextVar) and variable.get() is otel_context.get_current():
        return variable
    return None


current_context: Callable[[], Context]
attach: Callable[[Context], Any]
reset: Callable[[Any], None]
_VARIABLE = _runtime_variable()
if _VARIABLE is not None:
    current_context, attach, reset = _VARIABLE.get, _VARIABLE.set, _VARIABLE.reset
else:
    current_context, attach, reset = otel_context.get_current, otel_context.attach, otel_context.detach


def make_current(span: Any) -> Any:
    """Attach the current context with ``span`` as its span (what
    ``attach(set_span_in_context(span))`` does); the token :func:`restore` takes."""
    context = Context(current_context())
    _set_in(context, SPAN_KEY, span)
    return attach(context)


def restore(token: Any) -> None:
    """Put back the context :func:`make_current` replaced; a token that cannot be reset (used
    twice, another thread's) is logged by OpenTelemetry's ``detach``, not raised, as before."""
    try:
        reset(token)
    except Exception:  # noqa: BLE001 - detach tries again and logs what went wrong
        otel_context.detach(token)


def current_span() -> Any:
    """``trace.get_current_span()``, with one dictionary look-up when the span is a LeanSpan."""
    context = current_context()
    span = context.get(SPAN_KEY)
    return span if type(span) is LeanSpan else trace.get_current_span(context)


def inject(carrier: dict, span_context: SpanContext) -> None:
    """What ``TraceContextTextMapPropagator().inject`` writes for a span with ``span_context``:
    its W3C ``traceparent`` and, when it has one, ``tracestate``."""
    if span_context == INVALID_SPAN_CONTEXT:
        return
    trace_id, span_id, _, flags, state, _ = span_context
    carrier["traceparent"] = f"00-{trace_id:032x}-{span_id:016x}-{flags:02x}"
    if state:
        carrier["tracestate"] = state.to_header()


def start_root(tracer: Any, processor: Any, name: str, context: Any, attributes: dict[str, Any]) -> trace.Span:
    """A span named ``name`` in ``context`` (None: the current one), decided as the SDK's
    ``Tracer.start_span`` decides: a :class:`LeanSpan` when the sampler records it, else the
    SDK's :class:`NonRecordingSpan` (its trace still propagates, sampled flag off). Ended, it
    goes to ``processor`` (the tracer's). ``attributes`` becomes the span's own (not copied)."""
    if context is None:
        context = current_context()  # read once: for the parent and the sampler
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
    sampler = tracer.sampler
    if parent is None and _samples_every_root(sampler):
        # The default sampler (parentbased_always_on) or always_on, for a run with no parent:
        # what its should_sample answers - record and sample, the attributes as given, no
        # trace state - without its calls and result object.
        recording, flags, state = True, _SAMPLED, None
    else:
        decision = sampler.should_sample(context, trace_id, name, SpanKind.INTERNAL, attributes, ())
        recording, state = decision.decision.is_recording(), decision.trace_state
        flags = _SAMPLED if decision.decision.is_sampled() else _NOT_SAMPLED
        attributes = dict(decision.attributes)
    if random_trace_id:
        flags = TraceFlags(flags | _RANDOM_TRACE_ID)
    span_context = SpanContext(
        trace_id, id_generator.generate_span_id(), is_remote=False, trace_flags=flags, trace_state=state
    )
    if not recording:
        return NonRecordingSpan(span_context)
    return LeanSpan.made(
        name,
        span_context,
        parent,
        tracer.resource,
        tracer._instrumentation_scope,
        processor,
        SpanKind.INTERNAL,
        attributes,
    )


def _samples_every_root(sampler: Any) -> bool:
    """Whether ``sampler`` records and samples every span without a parent, as the SDK's
    ``ALWAYS_ON`` and ``ParentBased(ALWAYS_ON)`` (the default) do."""
    if type(sampler) is ParentBased:
        sampler = sampler._root
    return type(sampler) is StaticSampler and sampler._decision is Decision.RECORD_AND_SAMPLE


class LeanSpan(trace.Span, ReadableSpan):
    """A recording span: ``context`` its own, ``parent`` its parent's (None for a root).

    It is the :class:`ReadableSpan` the processor gets: its private fields are ReadableSpan's
    (``to_json`` works), and its read-only view (``name``, ``context``, ``status``...) is
    plain slots rather than ReadableSpan's properties - the exporter reads some thirteen per
    span, and a property is a Python call each; ``attributes``, which the exporter does not
    read, is a view made when asked for. After :meth:`end` nothing changes either."""

    __slots__ = (
        "name",
        "context",
        "parent",
        "kind",
        "resource",
        "instrumentation_scope",
        "status",
        "start_time",
        "end_time",
        "_attributes",
        "_processor",
        "_token",
    )
    name: str
    context: SpanContext
    parent: SpanContext | None
    kind: SpanKind
    resource: Any
    instrumentation_scope: Any
    status: Status
    start_time: int
    end_time: int | None
    _attributes: dict[str, Any]  # the span's own (ReadableSpan's is a Mapping)
    _processor: Any  # the span batch its end queues it in
    events: tuple = ()
    links: tuple = ()
    dropped_attributes = dropped_events = dropped_links = 0  # no limits: nothing is dropped

    @classmethod
    def child(cls, name: str, parent_span: Any, processor: Any, id_generator: Any, kind: SpanKind, attributes):
        """A span under ``parent_span`` (a recording LeanSpan or SDK span of this process);
        ``attributes`` becomes the span's own (not copied)."""
        # The usual parent (an execution or step) is a LeanSpan: its context read directly.
        parent = parent_span.context if type(parent_span) is LeanSpan else parent_span.get_span_context()
        resource, scope = parent_span.resource, parent_span.instrumentation_scope
        trace_id, _, _, flags, state, _ = parent
        # The SDK's RandomIdGenerator draws from the same generator (without two calls);
        # 0 is not a span id: it asks the generator again, as the SDK does.
        span_id = _random_bits(64) if type(id_generator) is RandomIdGenerator else 0
        if not span_id:
            span_id = id_generator.generate_span_id()
        # SpanContext's __new__ (a Python call) only adds whether the ids are valid; the
        # trace id is a valid parent's.
        context = _new_tuple(SpanContext, (trace_id, span_id, False, flags, state, 0 < span_id <= _SPAN_ID_MAX))
        return cls.made(name, context, parent, resource, scope, processor, kind, attributes)

    @classmethod
    def made(cls, name, context, parent, resource, scope, processor, kind: SpanKind, attributes: dict):
        """A started span (``attributes`` its own, not copied): the one way a LeanSpan is
        made, without a type call's ``__new__`` and ``__init__`` (ReadableSpan's
        ``__init__`` is not run: its fields are the slots set here)."""
        span = _new_object(cls)
        span.start_time = time.time_ns()
        span.end_time = None
        span.name = name
        span.context = context
        span.parent = parent
        span.resource = resource
        span.instrumentation_scope = scope
        span.kind = kind
        span._attributes = attributes
        span.status = UNSET_STATUS
        span._processor = processor
        return span

    # ReadableSpan's own methods (to_json...) read its private fields: here the same slots.
    _name = property(attrgetter("name"))
    _context = property(attrgetter("context"))
    _parent = property(attrgetter("parent"))
    _resource = property(attrgetter("resource"))
    _instrumentation_scope = property(attrgetter("instrumentation_scope"))
    _kind = property(attrgetter("kind"))
    _status = property(attrgetter("status"))
    _start_time = property(attrgetter("start_time"))
    _end_time = property(attrgetter("end_time"))
    _events = _links = ()
    _instrumentation_info = None

    @property
    def attributes(self) -> Any:
        """A read-only view, as ReadableSpan's, made when read (the exporter reads
        ``_attributes``): one object fewer per span kept until its export."""
        return MappingProxyType(self._attributes)

    def get_span_context(self) -> SpanContext:
        return self.context

    # -- Flowker's span handle (flowker.tracing): the span itself, no wrapper ----------

    @property
    def trace_id(self) -> str | None:
        """The trace id a result shows, when the trace is sampled (exported)."""
        context = self.context
        return f"{context.trace_id:032x}" if context.trace_flags & 1 else None

    def set(self, name: str, value: Any) -> None:
        if value is not None and self.end_time is None:
            self._attributes[name] = value

    def failed(self, error_type: str) -> None:
        if self.end_time is None:
            self._attributes["error.type"] = error_type
            self.set_status(_ERROR)

    def __enter__(self) -> "LeanSpan":
        """The span becomes OpenTelemetry's current span until the block ends."""
        context = Context(current_context())
        _set_in(context, SPAN_KEY, self)
        self._token = attach(context)
        return self

    def __exit__(self, exc_type, exc, _traceback) -> None:
        """Ends the span; an exception leaving the block marks it failed with ``error.type``
        (its code, else its class), never with its message."""
        try:
            if exc is not None:
                self.failed(error_type(exc))
        finally:
            try:
                reset(self._token)  # restore(), inline: a frame less per span
            except Exception:  # noqa: BLE001 - detach tries again and logs what went wrong
                otel_context.detach(self._token)
            self.end()

    def is_recording(self) -> bool:
        return self.end_time is None

    def set_attribute(self, key: str, value: Any) -> None:
        if self.end_time is None and value is not None:
            self._attributes[key] = value

    def set_attributes(self, attributes) -> None:
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def set_status(self, status, description: str | None = None) -> None:
        if self.end_time is not None or self.status.status_code is StatusCode.OK:
            return  # as the SDK: OK is final
        self.status = status if isinstance(status, Status) else Status(status, description)

    def add_event(self, name: str, attributes=None, timestamp: int | None = None) -> None:
        """Flowker's spans carry no events; an event asked for is not kept."""

    def record_exception(self, exception, attributes=None, timestamp=None, escaped: bool = False) -> None:
        """Never the message (it may hold a secret): failures are ``error.type`` attributes."""

    def update_name(self, name: str) -> None:
        if self.end_time is None:
            self.name = name

    def end(self, end_time: int | None = None) -> None:
        if self.end_time is not None:
            return
        self.end_time = end_time if end_time is not None else time.time_ns()
        if self.context[3] & 1:  # sampled (a RECORD_ONLY span is not exported, as with the SDK's processors)
            self._processor.add(self)


class LeanClientSpan(LeanSpan):
    """One executor call attempt (HTTP client semantic conventions); see
    :class:`flowker.tracing.ClientSpan`, whose handle this is, for a recording parent."""

    __slots__ = ("_redact_url", "_url", "_query")

    def expect(self, redact_url: Callable[[str], str], url: str, query: dict | None) -> "LeanClientSpan":
        self._redact_url = redact_url
        self._url, self._query = url, query
        return self

    def headers(self, headers: dict) -> dict:
        """``headers`` plus this attempt's ``traceparent`` (and ``tracestate``)."""
        carried = without_trace_headers(headers)
        inject(carried, self.context)
        return carried

    def answered(self, response) -> None:
        status = response.status_code
        self._url, self._query = sent_url(response, self._url, self._query)
        self.set("http.response.status_code", status)
        if status >= 400:
            self.failed(str(status))

    def __exit__(self, exc_type, exc, traceback) -> None:
        self.set("url.full", self._redact_url(full_url(self._url, self._query)))
        super().__exit__(exc_type, exc, traceback)

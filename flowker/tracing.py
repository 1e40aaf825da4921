"""OpenTelemetry traces (DESIGN §14): spans per execution, step and executor call attempt.

Configured only by the standard ``OTEL_*`` variables, captured in
``Settings.otel_environment``; off unless ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (and ``OTEL_SDK_DISABLED`` / ``OTEL_TRACES_EXPORTER=none``
do not turn it off). Off, :func:`tracing_from_settings` answers :data:`NO_TRACING`, whose
methods do nothing and import nothing: the cost is one method call per step.

On, a :class:`Tracing` builds its SDK parts (a ``TracerProvider``; the span batch of
:mod:`flowker.tracing_batch` in place of the SDK's ``BatchSpanProcessor``; the OTLP/HTTP
protobuf exporter - the SDK's, with :mod:`flowker.tracing_export`'s lean encoder; they read
the other ``OTEL_*`` variables: sampler, batch delay, headers, timeout, resource attributes)
on :meth:`Tracing.start` or the first span, whichever comes first - never at import, and in each gunicorn worker after the
fork (``post_fork``). Nothing is set as the process's global tracer provider: the runner
gets this object from the runtime. :meth:`Tracing.shutdown` exports what is left.

Spans (their parents through the OpenTelemetry context of the running thread):

* ``flowker.execution``: one run; its parent is the W3C ``traceparent`` of the REST or
  webhook request that started it (:meth:`Tracing.extract`), else a new trace;
* ``flowker.step``: one node that ran (skipped nodes have none), under the execution;
* ``{METHOD}``, kind CLIENT: one executor call attempt, under its step, with the HTTP
  client semantic conventions; its ``traceparent`` goes to the executor (:meth:`ClientSpan.headers`).

No span carries a secret: URLs go through the project's redactor, errors are recorded as
``error.type`` (an error code, a status code or an exception class), never as messages.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Mapping
from urllib.parse import urlencode, urlsplit

from flowker.errors import ConfigurationError

TRACE_CONTEXT_HEADERS = ("traceparent", "tracestate")
TRACER_NAME = "flowker"
DEFAULT_SERVICE_NAME = "flowker"
SERVER_CACHE_SIZE = 256  # URLs whose server address and port are kept
_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_PROTOCOL_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")


def otel_environment(environ: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The ``OTEL_*`` variables of ``environ``, sorted (what Settings keeps)."""
    return tuple(sorted((name, value) for name, value in environ.items() if name.startswith("OTEL_")))


def traces_enabled(environ: Mapping[str, str]) -> bool:
    """Whether these ``OTEL_*`` variables turn traces on; ConfigurationError when they ask
    for something Flowker does not do (another exporter or protocol, a malformed endpoint)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = [part.strip().lower() for part in environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")]
    if exporters == ["none"]:
        return False
    unsupported = [name for name in exporters if name not in ("otlp", "")]
    if unsupported:
        raise ConfigurationError(
            f"OTEL_TRACES_EXPORTER={','.join(unsupported)}: Flowker exports traces with otlp (OTLP over HTTP) "
            "or not at all (none)"
        )
    endpoint_variable = next((name for name in _ENDPOINT_VARIABLES if environ.get(name, "").strip()), None)
    if endpoint_variable is None:
        return False
    endpoint = environ[endpoint_variable].strip()
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"{endpoint_variable} must be an http:// or https:// URL")
    for name in _PROTOCOL_VARIABLES:
        protocol = environ.get(name, "").strip()
        if protocol and protocol != "http/protobuf":
            raise ConfigurationError(f"{name}={protocol}: Flowker exports traces over http/protobuf only")
        if protocol:
            break
    return True


def tracing_from_settings(settings) -> "Tracing | DisabledTracing":
    """:data:`NO_TRACING`, or a :class:`Tracing` not started yet (no thread, no connection)."""
    environ = dict(getattr(settings, "otel_environment", ()) or ())
    return Tracing(environ) if traces_enabled(environ) else NO_TRACING


# --------------------------------------------------------------------------- off


class _NoSpan:
    """Every span handle when tracing is off: a context manager that records nothing."""

    trace_id: str | None = None

    def __enter__(self) -> "_NoSpan":
        return self

    def __exit__(self, *exc_info) -> None:
        return None

    def set(self, name: str, value: Any) -> None:
        pass

    def failed(self, error_type: str) -> None:
        pass

    def headers(self, headers: dict) -> dict:
        return headers

    def answered(self, response) -> None:
        pass


_NO_SPAN = _NoSpan()


class DisabledTracing:
    """Traces off: no SDK is imported or set up; every span is the same inert object."""

    enabled = False

    def start(self) -> "DisabledTracing":
        return self

    def shutdown(self) -> None:
        pass

    def extract(self, get_header: Callable[[str], str | None]) -> None:
        return None

    def execution(self, execution_id: str, parent: Any = None) -> _NoSpan:
        return _NO_SPAN

    def step(self, node_id: str, node_type: str, workflow_name: str, execution_id: str) -> _NoSpan:
        return _NO_SPAN

    def client(self, executor: str, method: str, url: str, query: dict | None, redact_url, attempt: int) -> _NoSpan:
        return _NO_SPAN


NO_TRACING = DisabledTracing()


# --------------------------------------------------------------------------- on


class _Span:
    """A started span, made current for the ``with`` block; ended when it exits.

    An exception leaving the block marks the span failed with ``error.type`` (its
    ``code`` - a Flowker error code - else its class), never with its message."""

    def __init__(self, span, otel):
        self._span = span
        self._otel = otel
        self._token = None

    @property
    def trace_id(self) -> str | None:
        context = self._span.get_span_context()
        return f"{context.trace_id:032x}" if context.trace_flags.sampled else None

    def set(self, name: str, value: Any) -> None:
        if value is not None:
            self._span.set_attribute(name, value)

    def failed(self, error_type: str) -> None:
        self._span.set_attribute("error.type", error_type)
        self._span.set_status(self._otel.StatusCode.ERROR)

    def __enter__(self):
        self._token = self._otel.make_current(self._span)
        return self

    def __exit__(self, exc_type, exc, _traceback) -> None:
        try:
            if exc is not None:
                self.failed(error_type(exc))
        finally:
            self._otel.restore(self._token)
            self._span.end()


class ClientSpan(_Span):
    """One executor call attempt (HTTP client semantic conventions).

    ``url.full`` is the URL as sent, with the query parameters the auth added, through
    the redactor: set from the answer, or from the URL and query when none came."""

    def __init__(self, span, otel, redact_url, url: str, query: dict | None):
        super().__init__(span, otel)
        self._redact_url = redact_url
        self._url, self._query = url, query

    def headers(self, headers: dict) -> dict:
        """``headers`` plus this attempt's ``traceparent`` (and ``tracestate``)."""
        carried = without_trace_headers(headers)
        self._otel.inject(carried, self._span.get_span_context())
        return carried

    def answered(self, response) -> None:
        status = response.status_code
        self._url, self._query = sent_url(response, self._url, self._query)
        self._span.set_attribute("http.response.status_code", status)
        if status >= 400:
            self.failed(str(status))

    def __exit__(self, exc_type, exc, traceback) -> None:
        self._span.set_attribute("url.full", self._redact_url(full_url(self._url, self._query)))
        super().__exit__(exc_type, exc, traceback)


def without_trace_headers(headers: dict) -> dict:
    """A copy of ``headers`` without the ``traceparent``/``tracestate`` a workflow set: the
    attempt's own replace them, so the service sees exactly one."""
    return {name: value for name, value in headers.items() if name.lower() not in TRACE_CONTEXT_HEADERS}


def sent_url(response, url: str, query: dict | None) -> tuple[str, dict | None]:
    """The URL the first request of ``response`` went to (auth query parameters included),
    else ``url`` and ``query`` as they were."""
    first = response.history[0] if response.history else response
    if first.request is not None and first.request.url:
        return first.request.url, None
    return url, query


def full_url(url: str, query: dict | None) -> str:
    """The URL with the query parameters an auth added (what ``url.full`` shows, redacted)."""
    if query:
        return f"{url}{'&' if '?' in url else '?'}{urlencode(query, doseq=True)}"
    return url


class _PropagatingSpan(_NoSpan):
    """An unsampled trace's executor call: no span, but its ``traceparent`` goes along
    (sampled flag off) so the service's spans, if it keeps any, join the same trace."""

    def __init__(self, otel, parent):
        self._otel = otel
        self._parent = parent  # the step's (or execution's) span context

    def headers(self, headers: dict) -> dict:
        carried = without_trace_headers(headers)
        self._otel.inject(carried, self._parent)
        return carried


class _Otel:
    """The OpenTelemetry names the spans use, imported once when tracing starts."""

    def __init__(self):
        from opentelemetry.trace import SpanKind, StatusCode
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        from flowker import tracing_spans

        self.SpanKind, self.StatusCode = SpanKind, StatusCode
        self.propagator = TraceContextTextMapPropagator()  # reads an incoming traceparent
        # OpenTelemetry's current context, read and set directly (flowker.tracing_spans).
        self.make_current, self.restore = tracing_spans.make_current, tracing_spans.restore
        self.current_span, self.inject = tracing_spans.current_span, tracing_spans.inject
        self.LeanSpan, self.start_root = tracing_spans.LeanSpan, tracing_spans.start_root
        self.LeanClientSpan = tracing_spans.LeanClientSpan
        self.current_context, self.SPAN_KEY = tracing_spans.current_context, tracing_spans.SPAN_KEY


class Tracing:
    """Traces on: the SDK parts of this process, built on :meth:`start` or the first span."""

    enabled = True

    def __init__(self, environ: Mapping[str, str], *, exporter=None):
        self._environ = dict(environ)
        self._exporter = exporter  # tests may hand one in; default: OTLP/HTTP from OTEL_*
        self._lock = threading.Lock()
        self._provider: Any = None
        self._tracer: Any = None
        self._processor: Any = None  # the tracer's only span processor, handed ended spans directly
        self._otel: _Otel | None = None
        self._stopped = False
        self._servers: dict[str, tuple[str, int]] = {}  # url -> (server.address, server.port)

    def start(self) -> "Tracing":
        """Build the tracer provider, its batch processor (a thread) and the exporter now."""
        with self._lock:
            if self._tracer is None and not self._stopped:
                self._build()
        return self

    def _build(self) -> None:
        from opentelemetry.sdk.resources import OTELResourceDetector, Resource
        from opentelemetry.sdk.trace import TracerProvider

        from flowker import __version__
        from flowker.tracing_batch import SpanBatch
        from flowker.tracing_export import LeanOTLPSpanExporter

        # service.name defaults to "flowker"; OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win.
        resource = Resource.create({"service.name": DEFAULT_SERVICE_NAME, "service.version": __version__}).merge(
            OTELResourceDetector().detect()
        )
        provider = TracerProvider(resource=resource, shutdown_on_exit=False)  # sampler: OTEL_TRACES_SAMPLER
        processor = SpanBatch(self._exporter or LeanOTLPSpanExporter(), self._environ)
        provider.add_span_processor(processor)
        self._otel = _Otel()
        self._processor = processor
        self._provider = provider
        self._tracer = provider.get_tracer(TRACER_NAME, __version__)

    def _started(self):
        tracer = self._tracer
        if tracer is None:
            tracer = self.start()._tracer
        return tracer

    def shutdown(self) -> None:
        """Export the spans still queued (bounded by ``OTEL_BSP_EXPORT_TIMEOUT``) and stop."""
        with self._lock:
            provider, self._provider, self._tracer = self._provider, None, None
            self._stopped = True
        if provider is not None:
            provider.shutdown()

    # -- spans --------------------------------------------------------------------

    def extract(self, get_header: Callable[[str], str | None]) -> Any:
        """The context of an incoming ``traceparent`` (W3C), or None when there is none."""
        traceparent = get_header("traceparent")
        if not traceparent:
            return None
        if self._started() is None:
            return None
        carrier = {"traceparent": traceparent}
        tracestate = get_header("tracestate")
        if tracestate:
            carrier["tracestate"] = tracestate
        assert self._otel is not None  # set with the tracer
        return self._otel.propagator.extract(carrier)

    def execution(self, execution_id: str, parent: Any = None) -> Any:
        """The run's span: a recording LeanSpan is its own handle; an unsampled one is wrapped."""
        tracer = self._started()
        if tracer is None:  # shut down: the process is ending
            return _NO_SPAN
        otel = self._otel
        assert otel is not None
        span = otel.start_root(
            tracer, self._processor, "flowker.execution", parent, {"flowker.execution.id": execution_id}
        )
        return span if type(span) is otel.LeanSpan else _Span(span, otel)

    def _child_parent(self) -> tuple[_Otel, Any, Any, bool] | None:
        """(names, tracer, parent, whether the parent records) for a step or call: the
        running LeanSpan of the execution or step (one look-up, the usual case), else
        OpenTelemetry's current span; None once shut down."""
        otel, tracer = self._otel, self._tracer
        if otel is not None and tracer is not None:
            parent = otel.current_context().get(otel.SPAN_KEY)
            if type(parent) is otel.LeanSpan and parent.end_time is None:
                return otel, tracer, parent, True
        tracer = self._started()
        if tracer is None:
            return None
        otel = self._otel
        assert otel is not None  # set with the tracer
        parent = otel.current_span()
        return otel, tracer, parent, parent.is_recording()

    def step(self, node_id: str, node_type: str, workflow_name: str, execution_id: str) -> Any:
        found = self._child_parent()
        if found is None:
            return _NO_SPAN
        otel, tracer, parent, recording = found
        if not recording and parent.get_span_context().is_valid:
            return _NO_SPAN  # a trace the sampler dropped: its spans would record nothing
        attributes = {
            "flowker.node.id": node_id,
            "flowker.node.type": node_type,
            "flowker.workflow.name": workflow_name,
            "flowker.execution.id": execution_id,
        }
        if recording:  # the lean path (flowker.tracing_spans): the span is its own handle
            return otel.LeanSpan.child(
                "flowker.step", parent, self._processor, tracer.id_generator, otel.SpanKind.INTERNAL, attributes
            )
        return _Span(tracer.start_span("flowker.step", attributes=attributes), otel)

    def client(self, executor: str, method: str, url: str, query: dict | None, redact_url, attempt: int) -> Any:
        found = self._child_parent()
        if found is None:
            return _NO_SPAN
        otel, tracer, parent, recording = found
        if not recording and parent.get_span_context().is_valid:
            return _PropagatingSpan(otel, parent.get_span_context())  # the service learns the trace, unsampled
        address, port = self._servers.get(url) or self._server_of(url)
        attributes: dict[str, Any] = {
            "http.request.method": method,
            "server.address": address,
            "server.port": port,
            "flowker.executor.name": executor,
        }
        if attempt > 1:
            attributes["http.request.resend_count"] = attempt - 1
        if recording:
            lean = otel.LeanClientSpan.child(
                method, parent, self._processor, tracer.id_generator, otel.SpanKind.CLIENT, attributes
            )
            return lean.expect(redact_url, url, query)
        span = tracer.start_span(method, kind=otel.SpanKind.CLIENT, attributes=attributes)
        return ClientSpan(span, otel, redact_url, url, query)

    def _server_of(self, url: str) -> tuple[str, int]:
        """``server.address`` and ``server.port`` of ``url``, kept: an executor's URLs repeat."""
        parts = urlsplit(url)
        found = (parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))
        if len(self._servers) >= SERVER_CACHE_SIZE:
            self._servers.clear()  # bounded; the URLs in use come back at once
        self._servers[url] = found
        return found


def error_type(exc: BaseException) -> str:
    """A low-cardinality name for what went wrong: an error code, an HTTP status, else a class."""
    code = getattr(exc, "code", None)
    if isinstance(code, str) and code:
        return str(code)
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if isinstance(status, int):
        return str(status)
    if getattr(exc, "timeout", False) or "Timeout" in type(exc).__name__:
        return "timeout"
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"

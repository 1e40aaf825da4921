"""Prometheus metrics (DESIGN §14), right across gunicorn workers.

:class:`Metrics` is what a process records with; the composition root
(:class:`flowker.runtime.Runtime`) builds one from the settings and hands it to the
execution service, the audit log and the API. ``FLOWKER_METRICS=off`` gives one that
records nothing (a benchmark's "off" side).

Two modes:

* **One process** (tests, ``flowker run``): each :class:`Metrics` has its own registry.
* **Several processes** (``flowker serve``; ``flowker worker`` processes joining it): the
  values live in files of one directory, one file per process and kind
  (prometheus-client's multiprocess mode), and an exposition sums them. A process writes
  its recordings there in batches, at most ``FLUSH_SECONDS`` late, and all of them before it
  reads the files itself (:mod:`flowker.observability.metric_writes`). ``flowker serve``
  makes a fresh private directory (:meth:`MetricsDirectory.create`), marks each exited
  worker dead and removes the directory when it stops; another process on the same host
  joins it with :func:`join_metrics_directory` before it builds its runtime.

Labels are bounded: workflow, executor and endpoint names, node types, route templates,
known methods and outcomes; never an id or a raw path.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess, values

from flowker.errors import ConfigurationError
from flowker.observability.metric_writes import counted_and_timed, recorder, write_pending

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus-client's own variable
# What generate_latest writes: the classic text format, which every Prometheus reads.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

EXECUTION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
CALL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# circuitbreaker's state names -> the gauge's value (DESIGN §14: 0 closed, 1 half-open, 2 open).
BREAKER_STATE_VALUES = {"closed": 0, "half_open": 1, "open": 2}
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED_ROUTE = "unmatched"  # requests no route took (unknown URLs)

# Every metric name Flowker exports (tests check dashboards and docs use only these).
METRIC_NAMES = (
    "flowker_executions_total",
    "flowker_execution_duration_seconds",
    "flowker_steps_total",
    "flowker_executor_calls_total",
    "flowker_executor_call_duration_seconds",
    "flowker_executor_retries_total",
    "flowker_circuit_breaker_state",
    "flowker_http_requests_total",
    "flowker_http_request_duration_seconds",
    "flowker_audit_appends_total",
    "flowker_audit_verifications_total",
    "flowker_queue_depth",
    "flowker_queue_oldest_age_seconds",
)


class _Instruments:
    """The metric objects, registered in ``registry`` (None: the multiprocess files only)."""

    def __init__(self, registry: CollectorRegistry | None):
        self.executions = Counter(
            "flowker_executions_total",
            "Executions ended, by workflow and status.",
            ("workflow", "status"),
            registry=registry,
        )
        self.execution_seconds = Histogram(
            "flowker_execution_duration_seconds",
            "Execution duration from start to end.",
            ("workflow",),
            buckets=EXECUTION_BUCKETS,
            registry=registry,
        )
        self.steps = Counter(
            "flowker_steps_total",
            "Steps settled, by workflow, node type and status.",
            ("workflow", "node_type", "status"),
            registry=registry,
        )
        self.executor_calls = Counter(
            "flowker_executor_calls_total",
            "Executor call attempts, by outcome (success, http_error, retryable_status, network_error, error, "
            "circuit_open: refused without a network call).",
            ("executor", "endpoint", "outcome"),
            registry=registry,
        )
        self.executor_call_seconds = Histogram(
            "flowker_executor_call_duration_seconds",
            "Duration of one executor call attempt.",
            ("executor", "endpoint"),
            buckets=CALL_BUCKETS,
            registry=registry,
        )
        self.executor_retries = Counter(
            "flowker_executor_retries_total",
            "Executor call attempts beyond the first.",
            ("executor",),
            registry=registry,
        )
        self.breaker_state = Gauge(
            "flowker_circuit_breaker_state",
            "Circuit breaker state as last seen: 0 closed, 1 half-open, 2 open.",
            ("executor",),
            multiprocess_mode="mostrecent",
            registry=registry,
        )
        self.http_requests = Counter(
            "flowker_http_requests_total",
            "HTTP requests answered, by method, route template and status.",
            ("method", "route", "status"),
            registry=registry,
        )
        self.http_seconds = Histogram(
            "flowker_http_request_duration_seconds",
            "HTTP request duration, by method and route template.",
            ("method", "route"),
            buckets=HTTP_BUCKETS,
            registry=registry,
        )
        self.audit_appends = Counter(
            "flowker_audit_appends_total", "Entries appended to the audit chain.", registry=registry
        )
        self.audit_verifications = Counter(
            "flowker_audit_verifications_total",
            "Audit chain verifications over the API, by result (valid, invalid).",
            ("result",),
            registry=registry,
        )
        # Read from the database by every queue worker every few seconds: the most recent
        # reading of any process is the queue's (multiprocess mode "mostrecent").
        self.queue_depth = Gauge(
            "flowker_queue_depth",
            "Executions waiting in the queue (status queued), as last read by a queue worker.",
            multiprocess_mode="mostrecent",
            registry=registry,
        )
        self.queue_oldest_age = Gauge(
            "flowker_queue_oldest_age_seconds",
            "How long the oldest queued execution has waited (0 when none waits), as last read by a queue worker.",
            multiprocess_mode="mostrecent",
            registry=registry,
        )


# Multiprocess mode: the values are in this process's files, keyed by metric and labels; two
# instrument sets in one process would each hold a copy and overwrite the other's writes.
# So the process has one set (built on first use), shared by its runtimes.
_process_instruments: dict[int, _Instruments] = {}
_process_lock = threading.Lock()


def _instruments_of_this_process() -> _Instruments:
    with _process_lock:
        found = _process_instruments.get(os.getpid())
        if found is None:
            _use_multiprocess_values()
            found = _process_instruments[os.getpid()] = _Instruments(None)
        return found


def _use_multiprocess_values() -> None:
    """prometheus-client picks file-backed values when it is imported with the variable
    set; a process that imported it earlier (or joins later) is switched here."""
    if not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.MultiProcessValue()


def _use_process_values() -> None:
    """Back to values in memory (a process that left its directory: ``flowker serve`` run
    in-process by a test, then other runtimes)."""
    if getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.MutexValue


def multiprocess_directory() -> str | None:
    """The directory of this process's multiprocess metrics, if it joined one."""
    return os.environ.get(MULTIPROCESS_ENV) or None


def join_metrics_directory(path: str) -> None:
    """Record this process's metrics in ``path`` (a directory another process, usually
    ``flowker serve``, made), with every other process there. Call before building the
    runtime; ``flowker worker`` processes use it to join their server's metrics."""
    if not os.path.isdir(path):
        raise ConfigurationError(f"metrics directory {path} does not exist (is its flowker serve running?)")
    os.environ[MULTIPROCESS_ENV] = path
    _use_multiprocess_values()


class Metrics:
    """What one process records; :meth:`exposition` is the Prometheus text of all it knows
    (in multiprocess mode: of every process of its directory)."""

    def __init__(self, instruments: _Instruments | None, registry: CollectorRegistry | None, directory: str | None):
        self._i = instruments
        self._registry = registry
        self.directory = directory

    @classmethod
    def from_settings(cls, settings) -> "Metrics":
        if not getattr(settings, "metrics", True):
            return cls.disabled()
        directory = multiprocess_directory()
        if directory:
            return cls(_instruments_of_this_process(), None, directory)
        _use_process_values()
        registry = CollectorRegistry(auto_describe=True)
        return cls(_Instruments(registry), registry, None)

    @classmethod
    def disabled(cls) -> "Metrics":
        return cls(None, None, None)

    @property
    def enabled(self) -> bool:
        return self._i is not None

    # -- recording --------------------------------------------------------------------

    def execution_ended(self, workflow: str, status: str, seconds: float | None) -> None:
        if self._i is None:
            return
        if seconds is None:  # no histogram series made (nor shown) for it
            recorder(self._i.executions, (workflow, status)).inc()
        else:
            counted_and_timed(self._i.executions, self._i.execution_seconds, (workflow, status)).record(
                max(0.0, seconds)
            )

    def step_settled(self, workflow: str, node_type: str, status: str) -> None:
        if self._i is not None:
            recorder(self._i.steps, (workflow, node_type, status)).inc()

    def executor_attempt(self, executor: str, endpoint: str, outcome: str, seconds: float | None) -> None:
        if self._i is None:
            return
        labels = (executor, endpoint, outcome)
        if seconds is None:  # refused by the breaker: no call, no duration
            recorder(self._i.executor_calls, labels).inc()
        else:
            counted_and_timed(self._i.executor_calls, self._i.executor_call_seconds, labels).record(max(0.0, seconds))

    def executor_retries(self, executor: str, count: int) -> None:
        if self._i is not None:
            # The child is made on the first call, so the series exists (at 0) for rate();
            # adding 0 would only be one more value write (a lock and a file write per call).
            child = recorder(self._i.executor_retries, (executor,))
            if count > 0:
                child.inc(count)

    def breaker_state(self, executor: str, state: str) -> None:
        if self._i is not None and state in BREAKER_STATE_VALUES:
            recorder(self._i.breaker_state, (executor,)).set(BREAKER_STATE_VALUES[state])

    def http_request(self, method: str, route: str | None, status: int, seconds: float) -> None:
        if self._i is None:
            return
        method = method if method in HTTP_METHODS else "other"
        route = route or UNMATCHED_ROUTE
        counted_and_timed(self._i.http_requests, self._i.http_seconds, (method, route, str(status))).record(
            max(0.0, seconds)
        )

    def audit_appended(self, count: int = 1) -> None:
        if self._i is not None and count > 0:
            recorder(self._i.audit_appends, ()).inc(count)

    def audit_verified(self, valid: bool) -> None:
        if self._i is not None:
            recorder(self._i.audit_verifications, ("valid" if valid else "invalid",)).inc()

    def queue_depth(self, depth: int, oldest_age_seconds: float | None = None) -> None:
        if self._i is not None:
            recorder(self._i.queue_depth, ()).set(depth)
            recorder(self._i.queue_oldest_age, ()).set(oldest_age_seconds or 0.0)

    # -- exposition -------------------------------------------------------------------

    def exposition(self) -> bytes:
        """The Prometheus text format (``CONTENT_TYPE``) of every value this process can see."""
        if self._i is None:
            return b"# metrics are off (FLOWKER_METRICS=off)\n"
        if self.directory is not None:
            return directory_exposition(self.directory)
        assert self._registry is not None  # one-process mode always has its registry
        return generate_latest(self._registry)


class _PendingWritesFirst:
    """Collected first: this process's pending recordings go into its files before they are
    read (flowker.observability.metric_writes), so its own show at once."""

    def collect(self) -> list:
        write_pending()
        return []


def directory_registry(path: str) -> CollectorRegistry:
    """A registry that reads (and sums) every process's values in ``path`` when collected."""
    registry = CollectorRegistry()
    registry.register(_PendingWritesFirst())  # type: ignore[arg-type] # a collector without metrics
    multiprocess.MultiProcessCollector(registry, path=path)
    return registry


def directory_exposition(path: str) -> bytes:
    return generate_latest(directory_registry(path))


SHARED_MEMORY = "/dev/shm"


def _values_folder(environ: Any = os.environ, shared_memory: str = SHARED_MEMORY) -> str | None:
    """Where the directory goes: ``TMPDIR`` when the operator set one, else the shared-memory
    file system (tmpfs) when there is one, else the default temporary folder.

    Every request writes its values into the workers' memory-mapped files. On a disk file
    system the kernel writes the dirty pages back every few seconds and the next write to
    each page faults again (system time in the request thread: about 6 % of the CPU per
    execution, benchmarks/README.md "observability_cost"); on tmpfs nothing is written back."""
    if environ.get("TMPDIR"):
        return None
    if os.path.isdir(shared_memory) and os.access(shared_memory, os.W_OK | os.X_OK):
        return shared_memory
    return None


@dataclass
class MetricsDirectory:
    """The multiprocess directory ``flowker serve`` owns: fresh and private (0700) at start,
    set in the environment its workers inherit, removed when it stops."""

    path: str

    @classmethod
    def create(cls, *, join: bool = True) -> "MetricsDirectory":
        """A new directory; ``join``: this process (and the children it forks) record there."""
        path = tempfile.mkdtemp(prefix="flowker-metrics-", dir=_values_folder())  # mode 0700, never reused
        if join:
            join_metrics_directory(path)
        return cls(path)

    def mark_dead(self, pid: int) -> None:
        """A worker exited: its gauges of the ``live*`` modes go (counters stay: they happened)."""
        multiprocess.mark_process_dead(pid, self.path)

    def remove(self) -> None:
        write_pending()  # this process's last recordings, into files about to go
        if os.environ.get(MULTIPROCESS_ENV) == self.path:
            del os.environ[MULTIPROCESS_ENV]
            _use_process_values()
            with _process_lock:
                _process_instruments.pop(os.getpid(), None)
        shutil.rmtree(self.path, ignore_errors=True)

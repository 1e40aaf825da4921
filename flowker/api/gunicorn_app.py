"""gunicorn, run from Python, for ``flowker serve``.

The master never holds a database connection while it forks: ``flowker serve``
migrates, applies specs and recovers interrupted executions before gunicorn starts,
then closes what it opened. Each worker builds its own app in :meth:`load` (no
preload), so its database binding and its execution threads are its own.

Shutdown on SIGTERM (gunicorn's master forwards it to every worker) is a drain:
readiness answers 503 at once so load balancers stop routing here and the queue worker
claims nothing more, the worker keeps serving for ``drain_seconds``, then stops
accepting and lets the requests in flight, synchronous runs included, and the queued
runs it had claimed finish within the graceful timeout. SIGINT and SIGQUIT
stay gunicorn's quick shutdown.
"""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gunicorn.app.base import BaseApplication

from flowker.observability.logs import logconfig
from flowker.observability.metric_writes import write_pending
from flowker.errors import ConfigurationError
from flowker.settings import Settings
from flowker.storage.database import close_database

if TYPE_CHECKING:
    from flowker.api.app import FlowkerApp
    from flowker.tracing import DisabledTracing, Tracing

logger = logging.getLogger("flowker.serve")

# Seconds a worker gets beyond the execution deadline before gunicorn calls it stuck.
WORKER_TIMEOUT_MARGIN = 30
# Seconds beyond drain + execution deadline before the master kills a stopping worker.
GRACEFUL_MARGIN = 10


@dataclass(frozen=True)
class ServeOptions:
    bind: str = "127.0.0.1:8000"
    workers: int = 2
    threads: int = 8
    certfile: str | None = None
    keyfile: str | None = None
    drain_seconds: float = 5.0
    # Flowker's own access line per request (gunicorn's access log stays off).
    access_log: bool = True
    # --metrics-bind: HOST:PORT of the keyless metrics listener in the master, and the
    # multiprocess directory every worker records in (flowker.observability.metrics).
    metrics_bind: str | None = None
    metrics_directory: str | None = None
    # Run threads of the queue worker each worker process starts (flowker.queue); 0: none
    # (`--no-worker`: queued runs are left to `flowker worker` processes).
    queue_concurrency: int = 0
    # Printed once the listening socket exists (the port is known even with :0).
    announce: object = None


def gunicorn_settings(settings: Settings, options: ServeOptions) -> dict:
    """The gunicorn configuration for these settings and options."""
    deadline = settings.execution_timeout_seconds
    return {
        "bind": [options.bind],
        "workers": options.workers,
        "threads": options.threads,
        # gthread, spreading new connections over the workers (flowker.api.gunicorn_worker).
        "worker_class": "flowker.api.gunicorn_worker.BalancedThreadWorker",
        # gthread workers heartbeat from their main loop, so a long run never trips
        # this; it is set above the execution deadline all the same.
        "timeout": int(deadline) + WORKER_TIMEOUT_MARGIN,
        "graceful_timeout": int(deadline + options.drain_seconds) + GRACEFUL_MARGIN,
        "keepalive": 5,
        # gunicorn's largest finite request line (long cursors and filters); longer ones get 414.
        "limit_request_line": 8190,
        "preload_app": False,
        # One control socket per user home would clash between several servers.
        "control_socket_disable": True,
        # gunicorn believes X-Forwarded-Proto only from these (default: localhost).
        "forwarded_allow_ips": ",".join(settings.trusted_proxies),
        "certfile": options.certfile,
        "keyfile": options.keyfile,
        "proc_name": "flowker",
        # Flowker writes the access line (route template, principal, request id); gunicorn's
        # own lines go through the same formatter and redactor (flowker.observability.logs).
        "accesslog": None,
        "errorlog": "-",
        "loglevel": settings.log_level.lower(),
        "logconfig_dict": logconfig(settings),
    }


class FlowkerApplication(BaseApplication):
    """gunicorn's application: configuration from Settings, the app built per worker."""

    def __init__(self, settings: Settings, options: ServeOptions, registry=None):
        from flowker.api.app import check_settings

        check_settings(settings)  # a bad setting stops the master here, not each worker after binding
        self.settings = settings
        self.options = options
        self.registry = registry
        self.app: FlowkerApp | None = None
        self.metrics_listener = None
        if options.metrics_bind:
            from flowker.observability.metrics_listener import MetricsListener

            if not options.metrics_directory:
                raise ConfigurationError("--metrics-bind needs metrics on (FLOWKER_METRICS is off)")
            self.metrics_listener = MetricsListener(options.metrics_bind, options.metrics_directory)
        # The worker's traces (flowker.tracing), set up after the fork (post_fork).
        self.tracing: Tracing | DisabledTracing | None = None
        super().__init__(prog="flowker serve")

    # --- gunicorn BaseApplication -------------------------------------------------

    def load_config(self) -> None:
        for name, value in gunicorn_settings(self.settings, self.options).items():
            if value is not None:
                self.cfg.set(name, value)
        self.cfg.set("when_ready", self.when_ready)
        self.cfg.set("post_fork", self.post_fork)
        self.cfg.set("post_worker_init", self.post_worker_init)
        self.cfg.set("worker_exit", self.worker_exit)
        self.cfg.set("child_exit", self.child_exit)
        self.cfg.set("on_exit", self.on_exit)

    def load(self):
        """Runs in each worker: its own database binding, execution service and queue worker."""
        from flowker.api.app import create_app

        self.app = create_app(
            self.settings,
            registry=self.registry,
            log_requests=self.options.access_log,
            tracing=self.tracing,
            queue_concurrency=self.options.queue_concurrency,
        )
        return self.app

    # --- hooks --------------------------------------------------------------------

    def when_ready(self, server) -> None:
        """Master, listening sockets bound, workers not yet forked."""
        metrics_address = self.metrics_listener.start() if self.metrics_listener is not None else None
        if callable(self.options.announce):
            addresses = [listener.sock.getsockname() for listener in server.LISTENERS]
            self.options.announce(addresses, metrics_address)

    def post_fork(self, server, worker) -> None:
        """Worker, just forked: the metrics listener serves from the master only, and the
        worker gets its own tracer provider and export thread (none crosses a fork)."""
        from flowker.tracing import tracing_from_settings

        if self.metrics_listener is not None:
            self.metrics_listener.close_after_fork()
        self.tracing = tracing_from_settings(self.settings).start()

    def child_exit(self, server, worker) -> None:
        """Master, a worker exited: its live gauges go; its counters stay in the sums."""
        if self.options.metrics_directory:
            from flowker.observability.metrics import MetricsDirectory

            MetricsDirectory(self.options.metrics_directory).mark_dead(worker.pid)

    def on_exit(self, server) -> None:
        """Master, stopping: the metrics listener stops with it."""
        if self.metrics_listener is not None:
            self.metrics_listener.stop()

    def post_worker_init(self, worker) -> None:
        """Worker, app loaded: SIGTERM now drains instead of stopping at once."""
        drain_seconds = self.options.drain_seconds
        # Runs of servers that died are failed by the live ones (flowker.runner.recovery).
        app = self.app
        assert app is not None  # gunicorn calls load() before this hook
        app.state.execution_service.start_sweeping()
        # The queue's depth in the metrics, from every worker process (flowker.queue.depth).
        app.state.start_queue_depth_sampling()
        worker.log.info("worker %s ready", worker.pid)

        def drain(signum, frame):
            state = app.state
            if state.is_draining:
                return
            state.start_draining()
            worker.log.info("draining for %.1fs: readiness now answers 503", drain_seconds)
            stop = threading.Timer(drain_seconds, worker.handle_exit, args=(signum, None))
            stop.daemon = True
            stop.start()

        signal.signal(signal.SIGTERM, drain)
        signal.siginterrupt(signal.SIGTERM, False)

    def worker_exit(self, server, worker) -> None:
        """Worker, after its last request: accepted async runs finish, then clean up."""
        state = getattr(self.app, "state", None)
        try:
            if state is not None:
                state.close()
        except Exception:  # noqa: BLE001 - a failing clean-up must not hide the exit
            logger.exception("worker clean-up failed")
        finally:
            if state is not None:
                close_database(state.database)
            if self.tracing is not None:
                self.tracing.shutdown()  # the spans of the last runs are exported
            # The last runs' metrics into the worker's files, before the master marks it dead
            # (atexit would too, unless a thread left running holds the exit up).
            write_pending()

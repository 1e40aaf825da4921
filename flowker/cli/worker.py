"""``flowker worker [--concurrency N] [--db URL]``: run queued executions without serving HTTP.

Migrates the database (as ``flowker serve`` does), then claims and runs queued
executions (:class:`flowker.queue.worker.QueueWorker`: ``FOR UPDATE SKIP LOCKED`` and
``LISTEN`` on PostgreSQL, a write transaction and a backoff on SQLite), at most
``--concurrency`` at once, and sweeps the expired leases of processes that died. Any
number of workers on any number of hosts share one PostgreSQL database; a workflow's
``concurrency`` holds across all of them.

SIGTERM or SIGINT stops claiming; runs in flight get ``--grace-seconds`` to end (a run
still going then is taken over by the other workers once its lease expires). Exit 0.
"""

from __future__ import annotations

import os
import signal
import threading

import click

from flowker.cli.common import DATABASE_HELP, announce_database, load_settings
from flowker.errors import ConfigurationError


@click.command()
@click.option(
    "--concurrency",
    type=click.IntRange(min=1, max=256),
    default=4,
    show_default=True,
    help="Executions this worker runs at once (one thread each).",
)
@click.option("--db", "database_url", metavar="URL|PATH", help=DATABASE_HELP)
@click.option(
    "--grace-seconds",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="On SIGTERM/SIGINT, seconds the runs in flight get to end.",
)
@click.option(
    "--metrics-bind",
    metavar="HOST:PORT",
    help="Serve this worker's Prometheus metrics without a key on this address (a private interface).",
)
@click.pass_context
def worker(ctx, concurrency, database_url, grace_seconds, metrics_bind):
    """Claim and run queued executions (no HTTP API)."""
    from flowker.api.app import check_settings
    from flowker.observability.logs import configure_logging

    settings = load_settings(ctx, database_url=database_url)
    check_settings(settings)
    configure_logging(settings)
    announce_database(ctx, settings, database_url)
    listener = metrics_directory = None
    if metrics_bind:
        from flowker.observability.metrics import MetricsDirectory
        from flowker.observability.metrics_listener import MetricsListener, parse_bind

        if not settings.metrics:
            raise ConfigurationError("--metrics-bind needs metrics on (FLOWKER_METRICS is off)")
        parse_bind(metrics_bind)
        metrics_directory = MetricsDirectory.create()  # joined before the runtime is built
        listener = MetricsListener(metrics_bind, metrics_directory.path)
    try:
        run_worker(settings, concurrency, grace_seconds, listener)
    finally:
        if metrics_directory is not None:
            metrics_directory.remove()


def run_worker(settings, concurrency: int, grace_seconds: float, listener=None) -> None:
    from flowker.queue.worker import QueueWorker
    from flowker.runtime import Runtime
    from flowker.storage.database import database_label
    from flowker.storage.migrations import upgrade

    stop = threading.Event()

    def request_stop(signum, frame):
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    runtime = Runtime.from_settings(settings)
    queue_worker = None
    try:
        upgrade(runtime.database)
        with runtime.bound(), runtime.database.connection_context():
            recovered = runtime.execution_service.recover_interrupted()
        if recovered:
            click.echo(f"Recovered {len(recovered)} interrupted execution(s)")
        if listener is not None:
            host, port = listener.start()
            click.echo(f"Metrics (no key) on http://{host}:{port}/metrics")
        queue_worker = QueueWorker(runtime.execution_service, concurrency=concurrency).start()
        click.echo(
            f"Flowker worker {os.getpid()} running up to {concurrency} queued execution(s) at once "
            f"on {database_label(settings.database_url)}"
        )
        while not stop.wait(0.5):
            pass
        click.echo("Stopping: no new claims; waiting for the runs in flight")
    finally:
        left = queue_worker.stop(grace_seconds) if queue_worker is not None else 0
        if listener is not None:
            listener.stop()
        runtime.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if left:
        click.echo(f"Stopped with {left} run(s) still in flight: other workers take them over when their lease expires")
    else:
        click.echo("Stopped")

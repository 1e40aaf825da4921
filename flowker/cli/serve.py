"""``flowker serve``: the REST API under gunicorn (gthread workers), each worker process
also working the queue (``--queue-concurrency`` runs at once) unless ``--no-worker``.

Start-up, in the master and once, before any worker is forked: API key check,
schema migrations, ``--specs`` applied, interrupted executions recovered. Every
connection opened for that is closed again, so no worker inherits one.
"""

from __future__ import annotations

import errno
import os
import sys

import click

from flowker.cli.common import DATABASE_HELP, load_settings
from flowker.errors import ConfigurationError


def default_workers() -> int:
    return max(2, os.cpu_count() or 1)


@click.command()
@click.option(
    "--bind", default="127.0.0.1:8000", show_default=True, help="HOST:PORT to listen on (port 0 picks a free one)."
)
@click.option(
    "--workers", type=click.IntRange(min=1), default=None, help="Worker processes (default: CPU count, at least 2)."
)
@click.option("--threads", type=click.IntRange(min=1), default=8, show_default=True, help="Threads per worker.")
@click.option(
    "--specs",
    "specs_dir",
    type=click.Path(exists=True, file_okay=False),
    help="Apply (and activate) this folder's specs at start.",
)
@click.option("--db", "database_url", metavar="URL|PATH", help=DATABASE_HELP)
@click.option(
    "--certfile", type=click.Path(exists=True, dir_okay=False), help="TLS certificate (PEM); needs --keyfile."
)
@click.option(
    "--keyfile", type=click.Path(exists=True, dir_okay=False), help="TLS private key (PEM); needs --certfile."
)
@click.option(
    "--drain-seconds",
    type=click.FloatRange(min=0),
    default=5.0,
    show_default=True,
    help="On SIGTERM, seconds readiness answers 503 before the workers stop accepting.",
)
@click.option(
    "--access-log/--no-access-log",
    default=True,
    show_default=True,
    help="One log line per request (method, route template, status, duration, request id, principal).",
)
@click.option(
    "--metrics-bind",
    metavar="HOST:PORT",
    help="Also serve the Prometheus metrics without a key on this address (a private interface for scrapers).",
)
@click.option(
    "--queue-concurrency",
    type=click.IntRange(min=1, max=256),
    default=4,
    show_default=True,
    help="Queued executions each worker process runs at once.",
)
@click.option(
    "--no-worker",
    is_flag=True,
    help="Run no queued executions here: leave them to `flowker worker` processes.",
)
@click.pass_context
def serve(
    ctx,
    bind,
    workers,
    threads,
    specs_dir,
    database_url,
    certfile,
    keyfile,
    drain_seconds,
    access_log,
    metrics_bind,
    queue_concurrency,
    no_worker,
):
    """Serve the REST API (gunicorn, gthread workers); each worker process also runs queued executions."""
    from flowker.api.app import check_settings
    from flowker.api.gunicorn_app import FlowkerApplication, ServeOptions
    from flowker.observability.metrics import MetricsDirectory
    from flowker.plugins import load_registry

    if bool(certfile) != bool(keyfile):
        raise click.UsageError("--certfile and --keyfile go together")
    settings = startup_settings(load_settings(ctx, database_url=database_url))
    # The TLS pair joins the files no secret reference may read.
    settings = settings.replace(
        tls_certfile=certfile and os.path.abspath(certfile), tls_keyfile=keyfile and os.path.abspath(keyfile)
    )
    check_settings(settings)  # every setting, before the database is touched or a port bound
    check_bind_free(bind)  # one line naming the port, not gunicorn's traceback and retries
    if metrics_bind:
        from flowker.observability.metrics_listener import parse_bind

        if not settings.metrics:
            raise ConfigurationError("--metrics-bind needs metrics on (FLOWKER_METRICS is off)")
        parse_bind(metrics_bind)
        check_bind_free(metrics_bind, "--metrics-bind")
    registry = load_registry(settings)
    # Every process of this server records its metrics in one fresh private directory.
    metrics_directory = MetricsDirectory.create() if settings.metrics else None
    try:
        prepare_database(settings, registry, specs_dir)
        workers = workers or default_workers()
        options = ServeOptions(
            bind=bind,
            workers=workers,
            threads=threads,
            certfile=certfile,
            keyfile=keyfile,
            drain_seconds=drain_seconds,
            access_log=access_log,
            metrics_bind=metrics_bind,
            metrics_directory=metrics_directory.path if metrics_directory is not None else None,
            queue_concurrency=0 if no_worker else queue_concurrency,
            announce=announcer(settings, "https" if certfile else "http", workers, threads),
        )
        FlowkerApplication(settings, options, registry).run()
    finally:
        if metrics_directory is not None:
            metrics_directory.remove()


def announcer(settings, scheme: str, workers: int, threads: int):
    """What the master prints once its sockets are bound (the ports are known even with :0)."""

    def announce(addresses, metrics_address=None):
        host, port = addresses[0][:2]
        base = f"{scheme}://{_url_host(host)}:{port}"
        click.echo(f"Flowker listening on {base} ({workers} workers x {threads} threads)")
        if metrics_address is not None:
            metrics_host, metrics_port = metrics_address
            click.echo(f"Metrics (no key) on http://{_url_host(metrics_host)}:{metrics_port}/metrics")
        if settings.api_key_generated:
            key = settings.api_keys[0].key
            click.echo(f"API key (generated for this run; set FLOWKER_API_KEYS to choose your own): {key}")
            click.echo(f"Try: curl -H 'X-API-Key: {key}' {base}/v1/workflows")

    return announce


def startup_settings(settings):
    """Production refuses to start without API keys; development generates one."""
    if settings.production:
        if not settings.api_keys:
            raise ConfigurationError("FLOWKER_API_KEYS is required in production; refusing to start")
        return settings
    return settings.with_generated_api_key()


def prepare_database(settings, registry, specs_dir=None) -> None:
    """Migrate, apply ``specs_dir`` and recover interrupted runs; then close everything.

    Runs in the gunicorn master before it forks: nothing here may stay connected.
    """
    from flowker.runtime import Runtime
    from flowker.storage.database import database_label
    from flowker.storage.migrations import LATEST_VERSION, upgrade

    runtime = Runtime.from_settings(settings, registry=registry)
    database = runtime.database
    try:
        applied = upgrade(database)
        where = database_label(settings.database_url)
        if applied:
            click.echo(f"Database {where}: applied migrations {', '.join(map(str, applied))}")
        else:
            click.echo(f"Database {where}: schema at version {LATEST_VERSION}")
        with database.connection_context():
            if specs_dir:
                from flowker.catalog.spec_sync import apply_local

                if not apply_local(settings, registry, specs_dir, activate=True, runtime=runtime, echo=click.echo):
                    sys.exit(1)
            recovered = runtime.execution_service.recover_interrupted()
        if recovered:
            click.echo(f"Recovered {len(recovered)} interrupted execution(s): {recovered.describe()}")
    finally:
        runtime.close()  # the service's threads and every connection: nothing crosses the fork


def check_bind_free(bind: str, option: str = "--bind") -> None:
    """Refuse, in one line, a ``HOST:PORT`` another process is listening on.

    Bound the way gunicorn binds (SO_REUSEADDR), so a port left in TIME_WAIT is not
    refused; the probe is closed at once and gunicorn binds for real just after.
    """
    import socket

    if bind.startswith(("unix:", "fd://")):
        return
    host, _, port_text = bind.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    if not port_text.isdigit() or int(port_text) == 0:
        return
    port = int(port_text)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConfigurationError(f"{option} {bind}: cannot resolve {host!r} ({exc.strerror})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot listen on {bind}: port {port} is {'in use' if exc.errno == errno.EADDRINUSE else exc.strerror}; "
                f"choose another with {option} HOST:PORT"
                + (" (scripts/quickstart.sh: FLOWKER_PORT)" if option == "--bind" else "")
            ) from None


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host

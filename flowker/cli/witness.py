"""``flowker witness serve``: keep the audit chain's signed checkpoints outside its database.

Run it on another host or volume than the database, and point ``FLOWKER_AUDIT_WITNESS``
at it. See :mod:`flowker.audit.witness_server` and docs/audit-chain.md.
"""

from __future__ import annotations

import signal
import threading

import click


def _split_bind(bind: str) -> tuple[str, int]:
    host, sep, port = bind.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise click.UsageError(f"--bind must be HOST:PORT, not {bind!r}")
    return host.strip("[]"), int(port)


@click.group()
def witness():
    """A witness service for the audit chain's signed checkpoints."""


@witness.command()
@click.option(
    "--dir",
    "directory",
    required=True,
    type=click.Path(file_okay=False),
    help="Where the witnessed checkpoints (append-only) and the witness's key are kept.",
)
@click.option(
    "--bind", default="127.0.0.1:8790", show_default=True, help="HOST:PORT to listen on (port 0 picks a free one)."
)
def serve(directory, bind):
    """Accept checkpoints that extend the last one held, countersign them, keep them."""
    from flowker.audit.witness_server import make_witness_server

    host, port = _split_bind(bind)
    try:
        server = make_witness_server(directory, host, port)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {bind}: {exc.strerror}") from None
    app = server.get_app()
    stop = threading.Event()

    def on_signal(signum, frame):  # shutdown() waits for serve_forever: call it elsewhere
        if not stop.is_set():
            stop.set()
            threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    actual_host, actual_port = server.server_address[:2]
    click.echo(
        f"witness listening on http://{actual_host}:{actual_port} (key id {app.key_id}, checkpoints in {app.log.path})",
        nl=True,
    )
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    click.echo("witness stopped")

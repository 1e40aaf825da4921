"""``flowker serve --metrics-bind HOST:PORT``: the metrics without a key, on a listener of their own.

A small threaded WSGI server in the gunicorn master, for scrapers on a private interface:
it reads the multiprocess directory every worker writes to (so one scrape covers them
all, workers that exited included) and touches no database. Workers close their inherited
copy of its socket right after the fork (:meth:`MetricsListener.close_after_fork`).
"""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_wsgi_server

from flowker.errors import ConfigurationError
from flowker.observability.metrics import directory_registry


def parse_bind(bind: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) -> (host, port); ConfigurationError otherwise."""
    host, sep, port_text = bind.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise ConfigurationError(f"--metrics-bind {bind!r}: expected HOST:PORT, such as 127.0.0.1:9464")
    return host, int(port_text)


class MetricsListener:
    def __init__(self, bind: str, directory: str):
        self.host, self.port = parse_bind(bind)
        self.directory = directory
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> tuple[str, int]:
        """Listen and serve from a daemon thread; returns the address bound (port 0 picks one)."""
        self._server, self._thread = start_wsgi_server(
            self.port, addr=self.host, registry=directory_registry(self.directory)
        )
        host, port = self._server.socket.getsockname()[:2]
        return host, port

    def close_after_fork(self) -> None:
        """In a forked worker: drop the inherited socket (the serving thread stayed in the master)."""
        if self._server is not None:
            self._server.socket.close()
            self._server = None

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

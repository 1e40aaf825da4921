"""Fixtures for the security tests: real local servers, traps on refused addresses,
a socket-connect recorder and a fake DNS for names (names only: numeric hosts resolve
for real, so nothing here can reach beyond 127.0.0.0/8)."""

from __future__ import annotations

import http.server
import select
import socket
import threading

import pytest

from network_fakes import install_connect_log, install_fake_dns
from security_helpers import PUBLIC


@pytest.fixture
def connect_log(monkeypatch):
    return install_connect_log(monkeypatch)


class Trap:
    """Listening sockets that must never see a connection."""

    def __init__(self):
        self.sockets: list[socket.socket] = []

    def listen(self, host: str, port: int = 0) -> int:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(16)
        sock.setblocking(False)
        self.sockets.append(sock)
        return sock.getsockname()[1]

    def connections(self) -> int:
        """How many connections arrived (accepted and closed here)."""
        count = 0
        for sock in self.sockets:
            for _ in range(100):  # bounded: a trap never sees more in a test
                readable, _, _ = select.select([sock], [], [], 0)
                if not readable:
                    break
                try:
                    conn, _ = sock.accept()
                except BlockingIOError:
                    break
                conn.close()
                count += 1
        return count

    def close(self):
        for sock in self.sockets:
            sock.close()


@pytest.fixture
def trap():
    traps = Trap()
    try:
        yield traps
    finally:
        traps.close()


class RecordingHandler(http.server.BaseHTTPRequestHandler):
    """Answers from ``server.routes`` (path -> callable(handler)) and records each request."""

    protocol_version = "HTTP/1.1"

    def _handle(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.requests.append(
            {"method": self.command, "path": self.path, "headers": dict(self.headers.items()), "body": body}
        )
        route = self.server.routes.get(self.path.split("?")[0])
        if route is None:
            self.reply(200, b'{"ok": true}', {"Content-Type": "application/json"})
        else:
            route(self)

    do_GET = do_POST = do_PUT = do_DELETE = _handle

    def reply(self, status: int, body: bytes = b"", headers: dict | None = None):
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class LocalServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, tls_context=None):
        self.httpd = http.server.ThreadingHTTPServer((host, port), RecordingHandler)
        self.httpd.daemon_threads = True
        self.httpd.requests = []
        self.httpd.routes = {}
        if tls_context is not None:
            self.httpd.socket = tls_context.wrap_socket(self.httpd.socket, server_side=True)
        self.host, self.port = host, self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def requests(self) -> list:
        return self.httpd.requests

    def route(self, path: str, handler) -> None:
        self.httpd.routes[path] = handler

    def url(self, path: str = "/", host: str | None = None, scheme: str = "http") -> str:
        return f"{scheme}://{host or self.host}:{self.port}{path}"

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def local_server():
    """Factory: ``local_server(host="127.0.0.1", port=0, tls_context=None)``; all stopped after."""
    servers = []

    def start(host: str = "127.0.0.1", port: int = 0, tls_context=None) -> LocalServer:
        server = LocalServer(host, port, tls_context)
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def fake_dns(monkeypatch):
    return install_fake_dns(monkeypatch)


@pytest.fixture
def session():
    """``session(policy=PUBLIC, **kwargs)``: a hardened session (new_session), closed at teardown."""
    from flowker.security.http import new_session

    sessions = []

    def make(policy=PUBLIC, **kwargs):
        made = new_session(policy, **kwargs)
        sessions.append(made)
        return made

    yield make
    for made in sessions:
        made.close()

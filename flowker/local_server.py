"""A small threaded HTTP server on 127.0.0.1 that records requests.

Used by the plugin author kit (:mod:`flowker.testing`), Flowker's own tests and the
benchmarks to stand in for external services. A handler maps each recorded request
to ``(status, headers, body)``; the server stops when its context exits.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from socketserver import ThreadingMixIn
from typing import Callable
from urllib.parse import parse_qsl
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

MAX_RECORDED_BODY = 10 * 1024 * 1024


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict
    headers: dict  # header names as sent, title-cased by WSGI (e.g. "Authorization")
    body: bytes
    query_string: str = ""

    def json(self):
        return json.loads(self.body or b"null")

    def header(self, name: str, default=None):
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return default


Response = tuple  # (status: int, headers: dict, body: bytes | str | dict | list)
Handler = Callable[[RecordedRequest], Response]


def json_ok(request: RecordedRequest) -> Response:
    return 200, {"Content-Type": "application/json"}, {"ok": True, "path": request.path}


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # keep test output clean
        pass


@dataclass
class LocalHTTPServer:
    """``with LocalHTTPServer(handler) as server: requests.get(server.url + "/x")``"""

    handler: Handler = json_ok
    host: str = "127.0.0.1"
    requests: list = field(default_factory=list)
    _server: _ThreadingServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the server is not started")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _wsgi_app(self, environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(min(length, MAX_RECORDED_BODY)) if length else b""
        headers = {
            key[5:].replace("_", "-").title(): value for key, value in environ.items() if key.startswith("HTTP_")
        }
        if environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = environ["CONTENT_TYPE"]
        recorded = RecordedRequest(
            method=environ["REQUEST_METHOD"],
            path=environ.get("PATH_INFO", "/"),
            query=dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)),
            headers=headers,
            body=body,
            query_string=environ.get("QUERY_STRING", ""),
        )
        with self._lock:
            self.requests.append(recorded)
        status, response_headers, payload = self.handler(recorded)
        if isinstance(payload, (dict, list)):
            payload = json.dumps(payload).encode()
            response_headers = {"Content-Type": "application/json", **response_headers}
        elif isinstance(payload, str):
            payload = payload.encode()
        start_response(f"{status} {_REASONS.get(status, 'Status')}", list(response_headers.items()))
        return [payload or b""]

    def start(self) -> "LocalHTTPServer":
        self._server = make_server(
            self.host, 0, self._wsgi_app, server_class=_ThreadingServer, handler_class=_QuietHandler
        )
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._server = None

    def __enter__(self) -> "LocalHTTPServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


_REASONS = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No Content",
    301: "Moved Permanently",
    302: "Found",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}

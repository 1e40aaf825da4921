"""``flowker witness serve``: a small witness service for the audit chain's checkpoints.

It keeps, in ``DIR``, an append-only fsync'ed file of the checkpoints it accepted
(``checkpoints.jsonl``, see :class:`flowker.audit.witness.WitnessLog`) and its own
Ed25519 key (``witness-key.pem``, made on first start, mode 0600). It refuses (409) a
checkpoint that does not extend the last one it holds, and countersigns each one it
accepts: the record it stores and returns carries ``witness = {keyId, witnessedAt,
statement, signature}``, where ``statement`` is the RFC 8785 canonical JSON of
``{"type": "flowker.audit.witness", "v": 1, "checkpointHash", "headHash", "sequence",
"witnessedAt", "keyId"}``.

Routes: ``POST /v1/checkpoints`` (a checkpoint as ``AuditLog`` sends it; 201 accepted, 200
already held, 409 refused, 400 malformed), ``GET /v1/checkpoints`` (every record, oldest
first, and the witness's public key), ``GET /v1/checkpoints/latest``, ``GET /v1/witness-key``
and ``GET /health``.
"""

from __future__ import annotations

import json
import os
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import rfc8785

from flowker.audit import checkpoints as cp
from flowker.audit.canonical import now_timestamp
from flowker.audit.witness import WitnessLog, WitnessRefused, WitnessUnavailable
from flowker.error_codes import ErrorCode

KEY_FILE = "witness-key.pem"
STATEMENT_TYPE = "flowker.audit.witness"
STATEMENT_VERSION = 1
MAX_BODY_BYTES = 64 * 1024


def load_or_create_key(directory: str):
    """The witness's Ed25519 key from ``DIR/witness-key.pem``, made (0600) when absent."""
    path = os.path.join(directory, KEY_FILE)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    if not os.path.exists(path):
        key = cp.generate_signing_key()
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return cp.load_signing_key(path)  # another process made it first
        with os.fdopen(descriptor, "w") as handle:
            handle.write(cp.private_key_pem(key))
            handle.flush()
            os.fsync(handle.fileno())
        return key
    return cp.load_signing_key(path)


def countersign(key, record: dict) -> dict:
    witnessed_at = now_timestamp()
    kid = cp.key_id(key)
    statement, signature = cp.sign_document(
        key,
        {
            "type": STATEMENT_TYPE,
            "v": STATEMENT_VERSION,
            "checkpointHash": record["checkpointHash"],
            "headHash": record["headHash"],
            "sequence": record["sequence"],
            "witnessedAt": witnessed_at,
            "keyId": kid,
        },
    )
    return {
        **record,
        "witness": {"keyId": kid, "witnessedAt": witnessed_at, "statement": statement, "signature": signature},
    }


def countersignature_problem(record: dict, witness_public_key) -> str | None:
    """None when ``record`` carries a valid countersignature of ``witness_public_key``
    over its own checkpoint hash, head hash and sequence."""
    witness = record.get("witness")
    if not isinstance(witness, dict):
        return "the record carries no countersignature"
    statement, signature, kid = witness.get("statement"), witness.get("signature"), witness.get("keyId")
    if not isinstance(statement, str) or not isinstance(signature, str) or not isinstance(kid, str):
        return "the countersignature is incomplete"
    problem = cp.signature_problem(cp.keys_by_id([witness_public_key]), kid, statement, signature)
    if problem:
        return f"countersignature: {problem}"
    fields = json.loads(statement)
    expected = {
        "type": STATEMENT_TYPE,
        "v": STATEMENT_VERSION,
        "checkpointHash": record.get("checkpointHash"),
        "headHash": record.get("headHash"),
        "sequence": record.get("sequence"),
        "witnessedAt": witness.get("witnessedAt"),
        "keyId": kid,
    }
    if rfc8785.dumps(fields) != rfc8785.dumps(expected):
        return "the countersigned statement does not match the record"
    return None


class WitnessApp:
    """The WSGI application."""

    def __init__(self, directory: str):
        self.log = WitnessLog(directory)
        self.key = load_or_create_key(directory)
        self.key_id = cp.key_id(self.key)
        self.public_key_pem = cp.public_key_pem(self.key)

    def __call__(self, environ, start_response):
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        try:
            status, body = self._route(method, path, environ)
        except WitnessRefused as exc:
            status, body = 409, exc.to_dict()
        except WitnessUnavailable as exc:
            status, body = 503, exc.to_dict()
        data = json.dumps(body, separators=(",", ":")).encode("utf-8")
        reason = {
            200: "OK",
            201: "Created",
            400: "Bad Request",
            404: "Not Found",
            405: "Method Not Allowed",
            409: "Conflict",
            413: "Payload Too Large",
            503: "Service Unavailable",
        }[status]
        start_response(f"{status} {reason}", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]

    def _route(self, method: str, path: str, environ) -> tuple[int, dict]:
        if path == "/v1/checkpoints" and method == "POST":
            return self._accept(environ)
        if method != "GET" and path in ("/v1/checkpoints", "/v1/checkpoints/latest", "/v1/witness-key", "/health"):
            return 405, _error(
                ErrorCode.METHOD_NOT_ALLOWED, "Method Not Allowed", f"method {method} is not allowed here"
            )
        if path == "/v1/checkpoints":
            return 200, {"checkpoints": self.log.records(), **self._identity()}
        if path == "/v1/checkpoints/latest":
            last = self.log.last()
            if last is None:
                return 404, _error(ErrorCode.AUDIT_WITNESS_EMPTY, "Not Found", "the witness holds no checkpoint yet")
            return 200, {"checkpoint": last}
        if path == "/v1/witness-key":
            return 200, self._identity()
        if path == "/health":
            return 200, {"status": "ok"}
        return 404, _error(ErrorCode.ROUTE_NOT_FOUND, "Not Found", f"no route for {method} {path[:200]}")

    def _identity(self) -> dict:
        return {"witnessKeyId": self.key_id, "witnessPublicKey": self.public_key_pem}

    def _accept(self, environ) -> tuple[int, dict]:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY_BYTES:
            return 413 if length > 0 else 400, _error(
                ErrorCode.INVALID_BODY, "Bad Request", f"send a JSON checkpoint of at most {MAX_BODY_BYTES} bytes"
            )
        try:
            record = json.loads(environ["wsgi.input"].read(length))
            checkpoint = cp.Checkpoint.from_dict(record)
            if (
                not isinstance(checkpoint.sequence, int)
                or isinstance(checkpoint.sequence, bool)
                or not all(
                    isinstance(value, str)
                    for value in (
                        checkpoint.head_hash,
                        checkpoint.key_id,
                        checkpoint.created_at,
                        checkpoint.statement,
                        checkpoint.signature,
                    )
                )
            ):
                raise TypeError("wrong field types")
        except (ValueError, KeyError, TypeError, AttributeError):
            return 400, _error(ErrorCode.INVALID_BODY, "Bad Request", "the body is not a checkpoint")
        held_before = self.log.last()
        stored = self.log.append(checkpoint, countersign=lambda r: countersign(self.key, r))
        already = held_before is not None and held_before.get("checkpointHash") == stored["checkpointHash"]
        return (200 if already else 201), {"checkpoint": stored}


def _error(code: str, title: str, message: str) -> dict:
    return {"code": code, "title": title, "message": message}


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # one line per request is noise for a witness
        pass


def make_witness_server(directory: str, host: str, port: int):
    """A threaded WSGI server of :class:`WitnessApp` (call ``serve_forever``/``shutdown``)."""
    return make_server(host, port, WitnessApp(directory), server_class=_ThreadingServer, handler_class=_QuietHandler)

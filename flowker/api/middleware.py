"""Request middleware, in the order the app installs it:

1. :class:`ClientMiddleware` - request id (echo ``X-Request-ID`` or make one) and the
   client address (``X-Forwarded-For``/``-Proto`` believed only from trusted proxies).
2. :class:`HttpsMiddleware` - production: plain HTTP refused, HSTS on every response.
3. :class:`CorsMiddleware` - configured origins only, never credentials, preflights answered here.
4. :class:`BodyLimitMiddleware` - 413 from ``Content-Length`` before anything reads the body.
5. :class:`flowker.api.authentication.AuthenticationMiddleware` - ``X-API-Key`` (configured
   keys, then stored ones) or a bearer token; sets the principal and the audit actor.
6. :class:`QueryParamsMiddleware` - unknown query parameters refused.
7. :class:`DatabaseMiddleware` - a connection per routed request (SQLite: kept per thread).
8. :class:`flowker.api.authentication.AuthorizationMiddleware` - the operation's role check (403).
"""

from __future__ import annotations

import ipaddress
import re
import uuid

import falcon
import peewee

from flowker.api.authentication import PUBLIC_PATHS, WEBHOOK_PREFIX
from flowker.api.errors import ApiError, too_large
from flowker.error_codes import ErrorCode
from flowker.storage.database import bind_context, unbind_context

# Probes answer over plain HTTP even in production: orchestrators probe pods directly.
PLAIN_HTTP_PATHS = PUBLIC_PATHS

HSTS_VALUE = "max-age=31536000; includeSubDomains"
CORS_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
CORS_ALLOWED_HEADERS = "Accept, Content-Type, X-API-Key, X-Request-ID, Idempotency-Key, Prefer, X-Webhook-Token"
CORS_EXPOSED_HEADERS = "X-Request-ID, X-Webhook-Workflow-ID, X-Webhook-Execution-ID, Retry-After, Location"
CORS_MAX_AGE = "3600"

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}\Z")


def parse_networks(entries) -> tuple:
    networks = []
    for entry in entries:
        networks.append(ipaddress.ip_network(entry.strip(), strict=False))
    return tuple(networks)


def _address(text: str):
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


def _in(networks, address) -> bool:
    return address is not None and any(address.version == net.version and address in net for net in networks)


class ClientMiddleware:
    """Request id and client address; the rest of the stack reads ``req.context``."""

    def __init__(self, trusted_proxies):
        self.trusted = parse_networks(trusted_proxies)

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        given = req.get_header("X-Request-ID")
        req.context.request_id = given if given and _REQUEST_ID.match(given) else uuid.uuid4().hex
        resp.set_header("X-Request-ID", req.context.request_id)
        peer = _address(req.remote_addr or "")
        req.context.via_trusted_proxy = _in(self.trusted, peer)
        req.context.client_ip = self._client_ip(req, peer)

    def _client_ip(self, req: falcon.Request, peer) -> str:
        fallback = str(peer) if peer is not None else "0.0.0.0"
        if not req.context.via_trusted_proxy:
            return fallback
        forwarded = req.get_header("X-Forwarded-For")
        if not forwarded:
            return fallback
        # The nearest 32 hops (the right end, appended by our proxies); anything further
        # left is the client's own claim. Only those are parsed: the header may be huge.
        hops = [_address(part) for part in forwarded.rsplit(",", 32)[-32:]]
        # Walk from the nearest hop back: the first address that is not one of our
        # proxies is the client; anything further left could be made up by it.
        for hop in reversed(hops):
            if hop is None:
                return fallback
            if not _in(self.trusted, hop):
                return str(hop)
        return str(hops[0]) if hops and hops[0] is not None else fallback


class HttpsMiddleware:
    """Production only: refuse plain HTTP (TLS in gunicorn or a trusted proxy's
    ``X-Forwarded-Proto: https``) and send HSTS on every response."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if req.path in PLAIN_HTTP_PATHS:
            return
        if req.scheme == "https":
            return
        if req.context.via_trusted_proxy and (req.get_header("X-Forwarded-Proto") or "").lower() == "https":
            return
        raise ApiError(
            ErrorCode.FORBIDDEN,
            "HTTPS is required in production: use https://, or send the request through a trusted "
            "proxy that sets X-Forwarded-Proto: https",
        )

    def process_response(self, req, resp, resource, req_succeeded) -> None:
        resp.set_header("Strict-Transport-Security", HSTS_VALUE)


class CorsMiddleware:
    """CORS for the configured origins. Credentials are never allowed (API keys are
    sent explicitly in a header, not by the browser)."""

    def __init__(self, allowed_origins):
        self.allow_any = "*" in allowed_origins
        self.allowed = frozenset(origin.rstrip("/") for origin in allowed_origins if origin != "*")

    def allows(self, origin: str) -> bool:
        # "null" is the origin of sandboxed frames, file:// pages and some redirects: any
        # page can make itself one, so "*" does not cover it (it must be listed by name).
        if origin == "null":
            return "null" in self.allowed
        return self.allow_any or origin.rstrip("/") in self.allowed

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        origin = req.get_header("Origin")
        if req.method != "OPTIONS" or not origin or not req.get_header("Access-Control-Request-Method"):
            return
        # A preflight: answered here, before authentication (browsers send no key on it).
        resp.complete = True
        resp.append_header("Vary", "Origin")
        if not self.allows(origin):
            resp.status = falcon.HTTP_403
            resp.media = {
                "code": ErrorCode.FORBIDDEN,
                "title": ErrorCode.FORBIDDEN.error_title,
                "message": "this origin is not allowed by the CORS policy (FLOWKER_CORS_ALLOWED_ORIGINS)",
            }
            return
        resp.status = falcon.HTTP_204
        resp.set_header("Access-Control-Allow-Origin", origin)
        resp.set_header("Access-Control-Allow-Methods", CORS_METHODS)
        resp.set_header("Access-Control-Allow-Headers", CORS_ALLOWED_HEADERS)
        resp.set_header("Access-Control-Max-Age", CORS_MAX_AGE)

    def process_response(self, req, resp, resource, req_succeeded) -> None:
        origin = req.get_header("Origin")
        if not origin or resp.get_header("Access-Control-Allow-Origin"):
            return
        if "origin" in (resp.get_header("Vary") or "").lower():
            return  # a preflight answered (or refused) in process_request
        resp.append_header("Vary", "Origin")
        if self.allows(origin):
            resp.set_header("Access-Control-Allow-Origin", origin)
            resp.set_header("Access-Control-Expose-Headers", CORS_EXPOSED_HEADERS)


class BodyLimitMiddleware:
    """413 before reading: a declared ``Content-Length`` over the limit stops the
    request here; bodies without one (chunked) are capped while read
    (:func:`flowker.api.bodies.read_body`)."""

    def __init__(self, max_body_bytes: int):
        self.limit = max_body_bytes

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.max_body_bytes = self.limit
        req.context.body_too_large_code = (
            ErrorCode.WEBHOOK_BODY_TOO_LARGE if req.path.startswith(WEBHOOK_PREFIX) else ErrorCode.BODY_TOO_LARGE
        )
        raw = req.get_header("Content-Length")
        if raw is None:
            return
        # Digits only: int() would also take "-1", "+5" or "1_000".
        if not (raw.isascii() and raw.strip().isdigit()):
            raise ApiError(ErrorCode.INVALID_BODY, "Content-Length is not a number")
        length = int(raw)
        if length > self.limit:
            # Close the connection: the unread body must not be taken for the next request.
            resp.set_header("Connection", "close")
            raise too_large(self.limit, req.context.body_too_large_code)


class DatabaseMiddleware:
    """A connection for every routed request.

    PostgreSQL: taken from the pool for the request and given back at its end. SQLite:
    each worker thread keeps its own connection open across requests (peewee keeps
    SQLite connections per thread), because opening one costs a schema read and closing
    the last one checkpoints the WAL: about 8 ms, more than a whole execution. A kept
    connection holds no transaction between requests, so it blocks nobody.

    Resources that never touch the database say ``uses_database = False``.
    """

    def __init__(self, database):
        self.database = database
        self.keep_open = isinstance(database, peewee.SqliteDatabase)

    def open_connection(self, req) -> None:
        """The request's connection and binding (also for middleware that reads before routing)."""
        if getattr(req.context, "database_binding_set", False):
            return
        req.context.database_binding_set = True
        # The models use this app's database for the request (two apps may share a process).
        req.context.database_binding = bind_context(self.database)
        req.context.opened_connection = self.database.connect(reuse_if_open=True)

    def process_resource(self, req, resp, resource, params) -> None:
        if resource is None or not getattr(resource, "uses_database", True):
            return
        self.open_connection(req)

    def process_response(self, req, resp, resource, req_succeeded) -> None:
        unbind_context(getattr(req.context, "database_binding", None))
        if not getattr(req.context, "opened_connection", False) or self.database.is_closed():
            return
        if self.keep_open and not self.database.in_transaction():
            return
        self.database.close()


class QueryParamsMiddleware:
    """Unknown query parameters are refused (400 FLK-0304), so a typo such as
    ``?stauts=draft`` does not silently return everything. ``allowed`` maps
    (route template, METHOD) to the names the operation takes; routes not in it
    (webhooks: their query is the run's input) take any."""

    def __init__(self, allowed: dict):
        self.allowed = allowed

    def process_request(self, req, resp) -> None:
        # PostgreSQL refuses NUL in text: an id, a filter or a webhook path holding one
        # would fail the query (a 500) instead of being a bad request.
        from flowker.api.errors import bad_query
        from flowker.errors import BadRequest

        if "\x00" in req.path:
            raise BadRequest("the URL path contains a NUL character (%00)", code=ErrorCode.INVALID_BODY)
        if "\x00" in req.query_string or any(
            "\x00" in name or "\x00" in str(value) for name, value in req.params.items()
        ):
            raise bad_query("the query string contains a NUL character (%00)")

    def process_resource(self, req, resp, resource, params) -> None:
        names = self.allowed.get((req.uri_template, req.method))
        if names is None:
            return
        repeated = sorted(name for name, value in req.params.items() if isinstance(value, list))
        if repeated:
            from flowker.api.errors import bad_query

            shown = ", ".join(repr(name[:50]) for name in repeated[:5])
            raise bad_query(f"query parameter(s) {shown} given more than once")
        unknown = sorted(set(req.params) - names)
        if unknown:
            from flowker.api.errors import bad_query

            shown = ", ".join(repr(name[:50]) for name in unknown[:5])
            known = ", ".join(sorted(names)) or "none"
            raise bad_query(f"unknown query parameter(s) {shown} (this route takes: {known})")

"""One access line and the HTTP metrics for every request (DESIGN §14).

:class:`AccessMiddleware` is the app's first middleware, so its ``process_response`` runs
last and sees the status every other part settled on, errors included. The route is the
template the request matched (``/v1/workflows/{workflow_id}``), ``unmatched`` for unknown
URLs: never the raw path, so neither the log's route field nor a metric label grows with
what clients send. It also stamps the request id on the audit actor, so every entry the
request appends carries it (metadata ``requestId``).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from typing import Any, Callable

import falcon

from flowker.observability.logs import ACCESS_LOGGER, SafeField, log_line
from flowker.observability.metrics import HTTP_METHODS, UNMATCHED_ROUTE

logger = logging.getLogger(ACCESS_LOGGER)
_CONVERTER = re.compile(r"\{(\w+):\w+\}")
# The standard methods and the app's route templates as the SafeFields a line carries, made
# once each rather than per request (the templates are the app's own: few).
_SAFE_METHODS = {method: SafeField(method) for method in HTTP_METHODS}
_safe_routes: dict[str, SafeField] = {}


class AccessMiddleware:
    def __init__(self, metrics, *, log_requests: bool = True):
        self.metrics = metrics
        self.log_requests = log_requests
        # The app's router (set by create_app): names the route of a request refused before
        # routing (401, 413, CORS), so it is not counted with the unknown URLs.
        self.find_route: Callable[[str], Any] | None = None

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.started_monotonic = time.monotonic()

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource, params) -> None:
        actor = getattr(req.context, "actor", None)
        request_id = getattr(req.context, "request_id", None)
        if request_id and dataclasses.is_dataclass(actor) and getattr(actor, "request_id", "") is None:
            req.context.actor = dataclasses.replace(actor, request_id=request_id)  # type: ignore[type-var]

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource, req_succeeded: bool) -> None:
        started = getattr(req.context, "started_monotonic", None)
        seconds = time.monotonic() - started if started is not None else 0.0
        route = _shown(req.uri_template) if req.uri_template else self._route_of(req.path)
        status = resp.status_code
        self.metrics.http_request(req.method, route, status, seconds)
        if not self.log_requests or not logger.isEnabledFor(logging.INFO):
            return
        actor = getattr(req.context, "actor", None)
        # Every request starts as the anonymous actor (the audit needs one). A 401 with no
        # authenticated principal (a missing or wrong credential) acted as no one, so its line
        # names no principal; one answered after authentication (a webhook's wrong
        # X-Webhook-Token) names who sent it.
        authenticated = getattr(req.context, "principal", None) is not None
        principal = getattr(actor, "id", None) if authenticated or status != 401 else None
        request_id = getattr(req.context, "request_id", None)
        if request_id and request_id != req.get_header("X-Request-ID"):
            request_id = SafeField(request_id)  # generated here (uuid4); a client's own id is scrubbed
        method = _SAFE_METHODS.get(req.method) or _method(req.method)
        # The route is a template of the app's own (or "unmatched"): no secret can be in it.
        # The message repeats for a route and status (its scrubbing is cached); the
        # duration and ids are fields.
        log_line(
            logger,
            logging.INFO,
            '"%s %s" %d',
            (method, route, status),
            {
                "method": method,
                "route": _safe_routes.get(route) or _safe_route(route),
                "status": status,
                "duration_ms": round(seconds * 1000.0, 3),
                "request_id": request_id,
                "principal": principal,
            },
        )

    def _route_of(self, path: str) -> str:
        found = self.find_route(path) if self.find_route is not None else None
        return _shown(found[3]) if found else UNMATCHED_ROUTE  # (resource, methods, params, template)


def _shown(template: str) -> str:
    """The template as the API document writes it: ``{path:path}`` -> ``{path}``."""
    return _CONVERTER.sub(r"{\1}", template) if ":" in template else template


def _safe_route(route: str) -> SafeField:
    """The route as a SafeField, kept for the next request (see _safe_routes)."""
    safe = _safe_routes[route] = SafeField(route)
    return safe


def _method(method: str) -> str:
    # gunicorn takes any token as a method: a line shows at most 16 characters of it.
    return method[:16]

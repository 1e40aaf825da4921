"""One error shape for every failure: ``{"code": "FLK-xxxx", "title": ..., "message": ...}``.

Three handlers are installed on the app: :class:`flowker.errors.FlowkerError` (the
project's deliberate errors, carrying their own status and FLK code), falcon's own
``HTTPError`` (unknown routes, wrong methods) and ``Exception`` (anything else, answered
with 500 FLK-9999 and no internals; the details go to the log only).
"""

from __future__ import annotations

import logging

import falcon

from flowker.errors import BadRequest, FlowkerError, PayloadTooLarge, ServiceUnavailable
from flowker.error_codes import ErrorCode

logger = logging.getLogger("flowker.api")


class ApiError(FlowkerError):
    """An error of the HTTP layer itself (media type, HTTPS, headers): its code says it all."""

    def __init__(self, code: ErrorCode, message: str, headers: dict | None = None):
        super().__init__(message, code=code)
        self.headers = headers or {}


def bad_query(message: str, code: ErrorCode = ErrorCode.INVALID_QUERY) -> BadRequest:
    return BadRequest(message, code=code)


def bad_body(message: str) -> BadRequest:
    return BadRequest(message, code=ErrorCode.INVALID_BODY)


def too_large(limit: int, code: str = ErrorCode.BODY_TOO_LARGE) -> PayloadTooLarge:
    return PayloadTooLarge(f"request body is larger than {limit} bytes", code=code)


def unsupported_media_type(content_type: str) -> ApiError:
    shown = content_type if len(content_type) <= 100 else content_type[:100] + "..."
    return ApiError(
        ErrorCode.UNSUPPORTED_MEDIA_TYPE,
        f"content type {shown!r} is not accepted: send application/json or application/yaml",
    )


def unavailable(message: str, code: str = ErrorCode.DRAINING, retry_after: int = 5) -> ServiceUnavailable:
    error = ServiceUnavailable(message, code=code)
    error.headers = {"Retry-After": str(retry_after)}
    return error


def _write(resp: falcon.Response, status: int, body: dict, headers: dict | None = None) -> None:
    resp.status = falcon.code_to_http_status(status)
    resp.media = body
    resp.content_type = falcon.MEDIA_JSON
    for name, value in (headers or {}).items():
        resp.set_header(name, value)


def handle_flowker_error(req: falcon.Request, resp: falcon.Response, error: FlowkerError, params) -> None:
    status = int(getattr(error, "http_status", 500) or 500)
    if status >= 500:
        logger.error("%s %s failed: %s %s", req.method, req.path, error.code, error.message)
    _write(resp, status, error.to_dict(), getattr(error, "headers", None))


# falcon's own errors by status; any other 4xx it raises (a malformed header, say) is a
# request it could not read (FLK-0001), any 5xx an internal error, both under falcon's status.
_HTTP_ERROR_CODES = {
    404: ErrorCode.ROUTE_NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    413: ErrorCode.BODY_TOO_LARGE,
    415: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
}


def handle_http_error(req: falcon.Request, resp: falcon.Response, error: falcon.HTTPError, params) -> None:
    """falcon's own errors (no route, wrong method, malformed request line) in our shape."""
    status = error.status_code
    code = _HTTP_ERROR_CODES.get(status, ErrorCode.INVALID_BODY if status < 500 else ErrorCode.INTERNAL)
    if status == 404:
        message = f"no route for {req.method} {_shown_path(req.path)}"
    elif status == 405:
        allowed = dict(error.headers or {}).get("Allow", "")  # falcon takes a dict or a list of pairs
        message = f"method {req.method} is not allowed here" + (f" (allowed: {allowed})" if allowed else "")
    else:
        message = error.description or error.title or "request failed"
    _write(resp, status, {"code": code, "title": code.error_title, "message": message}, dict(error.headers or {}))


def handle_unexpected(req: falcon.Request, resp: falcon.Response, error: Exception, params) -> None:
    """A bug or an outage: the client learns nothing about internals, the log learns it all."""
    request_id = getattr(req.context, "request_id", None) or "-"
    logger.exception("unhandled error in %s %s (request %s)", req.method, req.path, request_id)
    _write(
        resp,
        500,
        {
            "code": ErrorCode.INTERNAL,
            "title": ErrorCode.INTERNAL.error_title,
            "message": f"internal server error (request id {request_id})",
        },
    )


def _shown_path(path: str) -> str:
    return path if len(path) <= 200 else path[:200] + "..."


def install(app: falcon.App) -> None:
    # falcon picks the most specific handler by the exception's MRO.
    app.add_error_handler(Exception, handle_unexpected)
    app.add_error_handler(falcon.HTTPError, handle_http_error)
    app.add_error_handler(FlowkerError, handle_flowker_error)

"""The project's error hierarchy.

Every error Flowker raises on purpose derives from :class:`FlowkerError`. Each class
carries the HTTP status, FLK code and title the REST API answers with, and the exit
code the command line ends with, so one handler in each front end maps them all.
Messages must never contain secret values: callers build them from names, not values.
"""

from __future__ import annotations


class FlowkerError(Exception):
    """Base of every deliberate Flowker error."""

    http_status = 500
    code = "FLK-9999"
    title = "Internal Server Error"
    exit_code = 1

    def __init__(self, message: str, *, code: str | None = None, title: str | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if title is not None:
            self.title = title

    def to_dict(self) -> dict:
        return {"code": self.code, "title": self.title, "message": self.message}


class ConfigurationError(FlowkerError):
    """Settings or command-line usage are wrong: nothing was attempted."""

    code = "FLK-0003"
    title = "Configuration Error"
    exit_code = 2


class BadRequest(FlowkerError):
    http_status = 400
    code = "FLK-0001"
    title = "Bad Request"


class Unauthorized(FlowkerError):
    http_status = 401
    code = "FLK-0401"
    title = "Unauthorized"


class Forbidden(FlowkerError):
    http_status = 403
    code = "FLK-0403"
    title = "Forbidden"


class NotFound(FlowkerError):
    http_status = 404
    code = "FLK-0404"
    title = "Not Found"


class Conflict(FlowkerError):
    http_status = 409
    code = "FLK-0409"
    title = "Conflict"


class PayloadTooLarge(FlowkerError):
    http_status = 413
    code = "FLK-0413"
    title = "Payload Too Large"


class UnprocessableEntity(FlowkerError):
    http_status = 422
    code = "FLK-0422"
    title = "Unprocessable Entity"


class SpecError(UnprocessableEntity):
    """A spec (YAML file or REST body) is invalid; carries every problem found.

    ``problems`` is a list of :class:`flowker.spec.problems.Problem`.
    """

    code = "FLK-0120"
    title = "Invalid Specification"

    def __init__(self, problems, message: str | None = None):
        self.problems = list(problems)
        if message is None:
            message = "; ".join(p.format() for p in self.problems[:20])
            if len(self.problems) > 20:
                message += f"; and {len(self.problems) - 20} more"
        super().__init__(message)

    def to_dict(self) -> dict:
        body = super().to_dict()
        body["details"] = [p.to_dict() for p in self.problems]
        return body


class SecretReferenceSpecError(SpecError):
    """A spec being saved holds ``$file``/``$env`` references the server may not resolve
    (DESIGN §6); the same code as :class:`SecretReferenceRefusedError` at call time."""

    code = "FLK-0007"
    title = "Secret Reference Refused"


class TooManyRequests(FlowkerError):
    """Refused for now: the caller should retry after the ``Retry-After`` it is given."""

    http_status = 429
    code = "FLK-0429"
    title = "Too Many Requests"
    headers: dict[str, str] | None = None  # Retry-After


class ServiceUnavailable(FlowkerError):
    http_status = 503
    code = "FLK-0801"
    title = "Service Unavailable"
    headers: dict[str, str] | None = None  # e.g. Retry-After (flowker.api.errors.unavailable)


class CircuitOpenError(FlowkerError):
    """An executor's breaker is open: the step fails without a network call."""

    http_status = 503
    code = "FLK-0507"
    title = "Circuit Open"


class AuthTypeError(FlowkerError):
    """An auth type failed to produce credentials (token endpoint down, bad secret...)."""

    http_status = 502
    code = "FLK-0520"
    title = "Authentication Failed"


class ResolvedConfigError(UnprocessableEntity):
    """An auth config whose secrets, once resolved, do not fit the auth type's schema
    (a reference passes as a string when the spec is saved; its value is checked at call
    time). The message names the field and the rule, never the value."""

    code = "FLK-0521"
    title = "Resolved Auth Config Invalid"


class PluginError(ConfigurationError):
    """A plugin could not be loaded or clashes with another one."""

    code = "FLK-0004"
    title = "Plugin Error"


class SecretUnavailableError(ConfigurationError):
    """A secret reference could not be resolved (variable unset, file unreadable...).

    The message names the variable, file or field, never a value.
    """

    http_status = 500
    code = "FLK-0005"
    title = "Secret Unavailable"


class SecretReferenceRefusedError(SecretUnavailableError):
    """A ``$file``/``$env`` reference points where references may not: outside
    ``FLOWKER_SECRET_FILE_DIRS``, a name ``FLOWKER_SECRET_ENV_ALLOW`` does not allow, one of
    Flowker's own files, or not a regular file. Nothing was read or sent."""

    http_status = 422
    code = "FLK-0007"
    title = "Secret Reference Refused"


class SecretKeyError(ConfigurationError):
    """No usable key: literal secrets cannot be stored, or a stored one cannot be decrypted."""

    http_status = 500
    code = "FLK-0006"
    title = "Secret Key Error"


class SSRFBlockedError(UnprocessableEntity):
    """A URL or address the SSRF guard refuses (config time or call time); names the host only."""

    code = "FLK-0341"
    title = "Address Not Allowed"


class HostResolutionError(FlowkerError):
    """A host name did not resolve: a network failure, not a refusal."""

    http_status = 502
    code = "FLK-0342"
    title = "Host Not Resolved"


class ResponseTooLargeError(FlowkerError):
    """An upstream response body is larger than the configured cap."""

    http_status = 502
    code = "FLK-0343"
    title = "Response Too Large"


class OutputTooLargeError(FlowkerError):
    """A step's output, an action's output, an executor request or the final output is
    larger than FLOWKER_MAX_OUTPUT_BYTES (measured as compact UTF-8 JSON)."""

    http_status = 422
    code = "FLK-0512"
    title = "Output Too Large"


class AuditChainError(FlowkerError):
    """The audit chain failed verification or could not be appended to."""

    code = "FLK-0610"
    title = "Audit Chain Error"


# The errors of the security layer, by code: the OpenAPI document names them under the
# statuses they answer with (a tuple: no mutable module state).
SECURITY_ERRORS = (SecretUnavailableError, SecretReferenceRefusedError, SecretKeyError, SSRFBlockedError, HostResolutionError,
                   ResponseTooLargeError, CircuitOpenError, AuthTypeError)

"""The project's error hierarchy.

Every error Flowker raises on purpose derives from :class:`FlowkerError` and carries a
code of the catalog :class:`flowker.error_codes.ErrorCode`, which gives the HTTP status
and title the REST API answers with; the class gives the exit code the command line ends
with, so one handler in each front end maps them all. A raise names what went wrong with
its code (``NotFound(..., code=ErrorCode.WORKFLOW_NOT_FOUND)``); a class's ``code`` is
its default. Messages must never contain secret values: callers build them from names,
not values.
"""

from __future__ import annotations

from flowker.error_codes import ErrorCode, catalog_entry


class FlowkerError(Exception):
    """Base of every deliberate Flowker error."""

    code: str = ErrorCode.INTERNAL
    http_status: int = ErrorCode.INTERNAL.status
    title: str = ErrorCode.INTERNAL.error_title
    exit_code = 1

    def __init_subclass__(cls, **kwargs) -> None:
        # A class states its default code; the status and title come with it from the catalog.
        super().__init_subclass__(**kwargs)
        entry = catalog_entry(cls.code)
        if entry is not None:
            cls.http_status, cls.title = entry.status, entry.error_title

    def __init__(self, message: str, *, code: str | None = None, title: str | None = None, status: int | None = None):
        """``code`` replaces the class's default (status and title follow it from the catalog;
        a plain string outside the catalog keeps the class's); ``status`` and ``title`` are for
        the rare error that re-raises another one's code under its own status."""
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
            entry = catalog_entry(code)
            if entry is not None:
                self.http_status, self.title = entry.status, entry.error_title
        if title is not None:
            self.title = title
        if status is not None:
            self.http_status = status

    def to_dict(self) -> dict:
        return {"code": self.code, "title": self.title, "message": self.message}


class ConfigurationError(FlowkerError):
    """Settings or command-line usage are wrong: nothing was attempted."""

    code = ErrorCode.CONFIGURATION
    exit_code = 2


class BadRequest(FlowkerError):
    code = ErrorCode.INVALID_BODY


class Unauthorized(FlowkerError):
    code = ErrorCode.UNAUTHENTICATED


class Forbidden(FlowkerError):
    code = ErrorCode.FORBIDDEN


class NotFound(FlowkerError):
    code = ErrorCode.ROUTE_NOT_FOUND


class Conflict(FlowkerError):
    code = ErrorCode.CONFLICT


class PayloadTooLarge(FlowkerError):
    code = ErrorCode.PAYLOAD_TOO_LARGE


class UnprocessableEntity(FlowkerError):
    code = ErrorCode.UNPROCESSABLE


class SpecError(UnprocessableEntity):
    """A spec (YAML file or REST body) is invalid; carries every problem found.

    ``problems`` is a list of :class:`flowker.validation.problems.Problem`.
    """

    code = ErrorCode.INVALID_SPEC

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


class InputValidationError(UnprocessableEntity):
    """A run's input does not match its trigger's ``inputSchema``: refused before anything
    is stored. ``details`` is every problem as ``{path, message}`` (path a JSON pointer).
    On the command line the input given is what is wrong: a usage error (exit 2)."""

    code = ErrorCode.INPUT_INVALID
    exit_code = 2

    def __init__(self, details: list[dict]):
        self.details = list(details)
        shown = "; ".join(f"{detail['path'] or '(the input)'}: {detail['message']}" for detail in self.details[:10])
        more = f"; and {len(self.details) - 10} more" if len(self.details) > 10 else ""
        count = len(self.details)
        super().__init__(
            f"the input does not match the trigger's inputSchema ({count} problem{'s' if count != 1 else ''}): "
            f"{shown}{more}"
        )

    def to_dict(self) -> dict:
        body = super().to_dict()
        body["details"] = self.details
        return body


class SecretReferenceSpecError(SpecError):
    """A spec being saved holds ``$file``/``$env`` references the server may not resolve
    (DESIGN §6); the same code as :class:`SecretReferenceRefusedError` at call time."""

    code = ErrorCode.SECRET_REFERENCE_REFUSED


class TooManyRequests(FlowkerError):
    """Refused for now: the caller should retry after the ``Retry-After`` it is given."""

    code = ErrorCode.TOO_MANY_REQUESTS
    headers: dict[str, str] | None = None  # Retry-After


class ServiceUnavailable(FlowkerError):
    code = ErrorCode.DRAINING
    headers: dict[str, str] | None = None  # e.g. Retry-After (flowker.api.errors.unavailable)


class CircuitOpenError(FlowkerError):
    """An executor's breaker is open: the step fails without a network call."""

    code = ErrorCode.CIRCUIT_OPEN


class AuthTypeError(FlowkerError):
    """An auth type failed to produce credentials (token endpoint down, bad secret...)."""

    code = ErrorCode.AUTH_FAILED


class ResolvedConfigError(UnprocessableEntity):
    """An auth config whose secrets, once resolved, do not fit the auth type's schema
    (a reference passes as a string when the spec is saved; its value is checked at call
    time). The message names the field and the rule, never the value."""

    code = ErrorCode.RESOLVED_AUTH_CONFIG_INVALID


class PluginError(ConfigurationError):
    """A plugin could not be loaded or clashes with another one."""

    code = ErrorCode.PLUGIN_FAILED


class SecretUnavailableError(ConfigurationError):
    """A secret reference could not be resolved (variable unset, file unreadable...).

    The message names the variable, file or field, never a value.
    """

    code = ErrorCode.SECRET_UNAVAILABLE


class SecretReferenceRefusedError(SecretUnavailableError):
    """A ``$file``/``$env`` reference points where references may not: outside
    ``FLOWKER_SECRET_FILE_DIRS``, a name ``FLOWKER_SECRET_ENV_ALLOW`` does not allow, one of
    Flowker's own files, or not a regular file. Nothing was read or sent."""

    code = ErrorCode.SECRET_REFERENCE_REFUSED


class SecretKeyError(ConfigurationError):
    """No usable key: literal secrets cannot be stored, or a stored one cannot be decrypted."""

    code = ErrorCode.SECRET_KEY_UNUSABLE


class SSRFBlockedError(UnprocessableEntity):
    """A URL or address the SSRF guard refuses (config time or call time); names the host only."""

    code = ErrorCode.ADDRESS_NOT_ALLOWED


class HostResolutionError(FlowkerError):
    """A host name did not resolve: a network failure, not a refusal."""

    code = ErrorCode.HOST_NOT_RESOLVED


class ResponseTooLargeError(FlowkerError):
    """An upstream response body is larger than the configured cap."""

    code = ErrorCode.UPSTREAM_RESPONSE_TOO_LARGE


class OutputTooLargeError(FlowkerError):
    """A step's output, an action's output, an executor request or the final output is
    larger than FLOWKER_MAX_OUTPUT_BYTES (measured as compact UTF-8 JSON)."""

    code = ErrorCode.OUTPUT_TOO_LARGE


class AuditChainError(FlowkerError):
    """The audit chain failed verification or could not be appended to."""

    code = ErrorCode.AUDIT_CHAIN_BROKEN


# The errors of the security layer, by code: the OpenAPI document names them under the
# statuses they answer with (a tuple: no mutable module state).
SECURITY_ERRORS = (
    SecretUnavailableError,
    SecretReferenceRefusedError,
    SecretKeyError,
    SSRFBlockedError,
    HostResolutionError,
    ResponseTooLargeError,
    CircuitOpenError,
    AuthTypeError,
)

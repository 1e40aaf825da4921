"""Calling an executor endpoint: the request, retries, the breaker, and the call record.

One :class:`ExecutorClient` per executor version holds a hardened session (no
``trust_env``, SSRF-pinned; :func:`flowker.security.http.new_session`). Each call:

* builds the URL from the base URL, the endpoint path and its ``{param}`` placeholders
  (values percent-encoded, so a value cannot add path segments), the query, the
  headers and the JSON body, and sends the same ``Idempotency-Key`` on every attempt;
* goes through ``retrying``: at most ``retry_max_attempts`` attempts, waiting
  ``base * 2**(n-1)`` after attempt ``n`` (1, 2, 4, 8 s by default); only network
  errors, 5xx and 429 are retried, a 429/503 ``Retry-After`` is honoured; a wait that
  would pass the execution deadline ends the retries instead; waits and the deadline
  are read from the client's :class:`~flowker.runner.clock.Clock` (real time, or the
  virtual time of ``flowker test``);
* runs each attempt through the executor's circuit breaker, which counts network
  errors and 5xx/429 (raised as exceptions inside the breaker-wrapped function) as
  failures; an open breaker fails at once with FLK-0507 and no network call;
* caps the response body, parses JSON (else keeps text) and returns
  ``{status, headers, body}`` plus call details without secrets.

A call never raises for the executor's failures: :class:`CallResult` carries the error.
"""

from __future__ import annotations

import email.utils
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import quote

import requests
from retrying import Retrying

from flowker.audit.canonical import now_timestamp
from flowker.auth.base import AuthenticationSpec
from flowker.errors import CircuitOpenError, FlowkerError
from flowker.runner.breakers import ExecutorBreaker, NetworkError, TransientHTTPError
from flowker.runner.clock import SYSTEM_CLOCK, Clock
from flowker.security.http import ResponseTooLargeError, read_capped, send_request
from flowker.security.redaction import redact_headers
from flowker.tracing import NO_TRACING
from flowker.error_codes import ErrorCode

DEFAULT_TIMEOUT_SECONDS = 30.0
MAX_CONNECT_TIMEOUT_SECONDS = 10.0
MAX_RESPONSE_BYTES = 10 * 1024 * 1024
IDEMPOTENCY_HEADER = "Idempotency-Key"


class CallFailed(FlowkerError):
    """The executor call failed for good (after retries, or at once)."""

    code = ErrorCode.EXECUTOR_CALL_FAILED


class DeadlineExceeded(FlowkerError):
    code = ErrorCode.EXECUTION_DEADLINE_EXCEEDED


@dataclass(frozen=True)
class ExecutorDefinition:
    """The parts of an Executor row a call needs (a snapshot of one version)."""

    id: str
    name: str
    version: int
    base_url: str
    endpoints: dict  # name -> {path, method, timeout?}
    authentication: AuthenticationSpec
    status: str = "active"

    @classmethod
    def from_row(cls, row) -> "ExecutorDefinition":
        spec = row.spec or {}
        endpoints = {e["name"]: e for e in spec.get("endpoints") or [] if isinstance(e, dict) and "name" in e}
        return cls(
            id=row.id,
            name=row.name,
            version=row.version,
            base_url=(spec.get("baseUrl") or row.base_url),
            endpoints=endpoints,
            authentication=AuthenticationSpec.from_spec(spec.get("authentication")),
            status=row.status,
        )


@dataclass
class CallRequest:
    endpoint: str
    path_params: dict = field(default_factory=dict)
    query: dict = field(default_factory=dict)
    headers: dict = field(default_factory=dict)
    body: Any = None
    timeout: float | None = None  # the node's timeout, overriding the endpoint's
    idempotency_key: str | None = None


@dataclass
class CallResult:
    response: dict | None  # {status, headers, body} of the last answer, if any
    method: str
    url: str  # redacted
    attempts: list = field(default_factory=list)  # one dict per network attempt
    error: FlowkerError | None = None
    duration_ms: float = 0.0  # the whole call: preparing, every attempt, waits, parsing
    # The executor's name and the endpoint called (bounded metric labels; never ids).
    executor: str = ""
    endpoint: str = ""
    # Time inside the HTTP transport alone (sending through requests and reading the body,
    # every attempt): what a benchmark of the engine's own overhead leaves out.
    transport_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def status_code(self) -> int | None:
        return self.response["status"] if self.response else None

    def details(self) -> dict:
        details = {
            "method": self.method,
            "url": self.url,
            "statusCode": self.status_code,
            "attempts": len(self.attempts),
            "attemptLog": self.attempts,
            "durationMs": round(self.duration_ms, 3),
        }
        if self.error is not None:
            details["errorCode"] = self.error.code
        return details


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_seconds: float = 1.0

    @classmethod
    def from_settings(cls, settings) -> "RetryPolicy":
        return cls(max_attempts=settings.retry_max_attempts, base_seconds=settings.retry_base_seconds)

    def backoff(self, attempt_number: int) -> float:
        """Seconds to wait after attempt ``attempt_number`` (1-based): base, 2 base, 4 base..."""
        return self.base_seconds * (2 ** (attempt_number - 1))


class _RetryState:
    """Feeds ``retrying``: which errors to retry, when to stop, how long to wait."""

    def __init__(self, policy: RetryPolicy, deadline: float, clock: Clock = SYSTEM_CLOCK):
        self.policy = policy
        self.deadline = deadline
        self.clock = clock
        self.last_error: BaseException | None = None
        self.budget_exhausted = False

    def should_retry(self, exc: BaseException) -> bool:
        self.last_error = exc
        # Only the executor's transient failures; programming errors and refusals propagate.
        return isinstance(exc, (TransientHTTPError, NetworkError))

    def next_wait(self, attempt_number: int) -> float:
        wait = self.policy.backoff(attempt_number)
        if isinstance(self.last_error, TransientHTTPError):
            retry_after = parse_retry_after(self.last_error.response.headers.get("Retry-After"), now=self.clock.time())
            if retry_after is not None:
                wait = retry_after
        return wait

    def stop(self, attempt_number: int, _delay_ms: int) -> bool:
        if attempt_number >= self.policy.max_attempts:
            return True
        if self.clock.monotonic() + self.next_wait(attempt_number) >= self.deadline:
            self.budget_exhausted = True
            return True
        return False

    def wait_ms(self, attempt_number: int, _delay_ms: int) -> float:
        # The wait happens on the clock (virtual under `flowker test`); retrying sleeps 0.
        self.clock.sleep(self.next_wait(attempt_number))
        return 0.0


class _SilentLogger:
    """``retrying`` logs every failed attempt with its traceback; the attempt log in the
    step record (and the audit chain) already says what happened."""

    def warning(self, *args, **kwargs) -> None:
        pass

    info = debug = error = warning


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), else None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class ExecutorClient:
    """Calls the endpoints of one executor version."""

    def __init__(
        self,
        definition: ExecutorDefinition,
        session: requests.Session,
        breaker: ExecutorBreaker,
        policy: RetryPolicy,
        *,
        redact_url: Callable[[str], str],
        scrub_text: Callable[[str], str],
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        clock: Clock = SYSTEM_CLOCK,
        tracing=NO_TRACING,
    ):
        self.definition = definition
        self.clock = clock
        self.session = session
        self.breaker = breaker
        self.policy = policy
        self._redact_url = redact_url
        self._scrub = scrub_text
        self.max_response_bytes = max_response_bytes
        self.tracing = tracing  # a client span per attempt (flowker.tracing)
        # One Retrying for every call: its callbacks read the calling thread's _RetryState.
        self._retry_states = threading.local()
        self._retrying = Retrying(
            stop_func=self._stop,
            wait_func=self._wait_ms,
            retry_on_exception=self._should_retry,
            logger=_SilentLogger(),
        )

    def close(self) -> None:
        self.session.close()

    # -- the call -----------------------------------------------------------------

    def call(self, request: CallRequest, *, auth, deadline: float) -> CallResult:
        started = self.clock.monotonic()
        definition = self.definition
        endpoint = definition.endpoints.get(request.endpoint)
        method = str((endpoint or {}).get("method", "GET")).upper()
        result = CallResult(response=None, method=method, url="", executor=definition.name, endpoint=request.endpoint)
        try:
            if endpoint is None:
                raise CallFailed(f"executor {definition.name!r} has no endpoint {request.endpoint!r}")
            url = build_url(definition.base_url, endpoint.get("path", "/"), request.path_params)
            result.url = self._redact_url(url)
            timeout = request.timeout or endpoint.get("timeout") or DEFAULT_TIMEOUT_SECONDS
            headers = {str(k): _header_text(v) for k, v in (request.headers or {}).items()}
            if request.idempotency_key and not any(k.lower() == IDEMPOTENCY_HEADER.lower() for k in headers):
                headers[IDEMPOTENCY_HEADER] = request.idempotency_key
            send = _Send(
                method=method,
                url=url,
                query=_query(request.query),
                headers=headers,
                body=request.body,
                auth=auth,
                timeout=float(timeout),
                deadline=deadline,
            )
            self._call_with_retries(send, result)
        except CircuitOpenError as exc:
            result.error = exc
        except FlowkerError as exc:
            scrubbed = self._scrub(exc.message)
            result.error = exc if scrubbed == exc.message else CallFailed(scrubbed, code=exc.code, title=exc.title)
        finally:
            result.duration_ms = (self.clock.monotonic() - started) * 1000.0
        return result

    def _stop(self, attempt_number: int, delay_ms: int) -> bool:
        return self._retry_states.current.stop(attempt_number, delay_ms)

    def _wait_ms(self, attempt_number: int, delay_ms: int) -> float:
        return self._retry_states.current.wait_ms(attempt_number, delay_ms)

    def _should_retry(self, exc: BaseException) -> bool:
        return self._retry_states.current.should_retry(exc)

    def _call_with_retries(self, send: "_Send", result: CallResult) -> None:
        states = self._retry_states
        outer = getattr(states, "current", None)  # a call made from inside a call keeps its own
        state = states.current = _RetryState(self.policy, send.deadline, self.clock)
        what = f"executor {self.definition.name!r} endpoint {send.method} {result.url}"
        try:
            try:
                response, body = self._retrying.call(self._attempt, send, result)
            finally:
                states.current = outer
        except TransientHTTPError as exc:
            result.response = self._response_dict(exc.response, exc.body)
            raise CallFailed(f"{what} answered HTTP {exc.response.status_code} {_after(result, state)}") from None
        except NetworkError as exc:
            raise CallFailed(f"{what} failed: {exc} {_after(result, state)}") from None
        result.response = self._response_dict(response, body)
        if not 200 <= response.status_code < 300:
            raise CallFailed(f"{what} answered HTTP {response.status_code}")

    def _attempt(self, send: "_Send", result: CallResult):
        """One attempt through the breaker, logged in ``result.attempts``."""
        remaining = send.deadline - self.clock.monotonic()
        if remaining <= 0:
            raise DeadlineExceeded("the execution deadline passed before the call could be made")
        record = {"attempt": len(result.attempts) + 1, "startedAt": _iso_now()}
        started = self.clock.monotonic()
        try:
            response, body = self.breaker.call_guarded(self._send, send, min(send.timeout, remaining), result)
        except CircuitOpenError:
            raise  # no network call was made: not an attempt
        except TransientHTTPError as exc:
            _log_attempt(result, record, started, self.clock, statusCode=exc.response.status_code, outcome="retryable")
            raise
        except NetworkError as exc:
            _log_attempt(result, record, started, self.clock, error=str(exc), outcome="network-error")
            raise
        except FlowkerError as exc:
            _log_attempt(result, record, started, self.clock, error=self._scrub(exc.message), outcome="error")
            raise
        _log_attempt(result, record, started, self.clock, statusCode=response.status_code, outcome="answered")
        return response, body

    def _send(self, send: "_Send", timeout: float, result: CallResult | None = None):
        started = time.perf_counter()
        try:
            try:
                with self.tracing.client(
                    self.definition.name,
                    send.method,
                    send.url,
                    send.query,
                    self._redact_url,
                    len(result.attempts) + 1 if result is not None else 1,
                ) as span:
                    response = send_request(
                        self.session,
                        send.method,
                        send.url,
                        params=send.query or None,
                        headers=span.headers(send.headers),
                        json=send.body,
                        auth=send.auth,
                        timeout=(min(timeout, MAX_CONNECT_TIMEOUT_SECONDS), timeout),
                    )
                    span.answered(response)
                    body = read_capped(response, self.max_response_bytes)
            finally:
                if result is not None:
                    result.transport_ms += (time.perf_counter() - started) * 1000.0
        except requests.Timeout:
            raise NetworkError(f"no answer within {timeout:g} s", timeout=True) from None
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            raise NetworkError(_describe_network_error(exc)) from None
        except ResponseTooLargeError:
            raise
        except requests.TooManyRedirects:
            raise CallFailed("too many redirects") from None
        except requests.RequestException as exc:
            raise CallFailed(f"request failed: {self._scrub(type(exc).__name__)}") from None
        except FlowkerError as exc:
            if getattr(exc, "code", "") == ErrorCode.HOST_NOT_RESOLVED:  # the host did not resolve: a network error
                raise NetworkError(exc.message) from None
            raise
        if response.status_code >= 500 or response.status_code == 429:
            raise TransientHTTPError(response, body)
        return response, body

    def _response_dict(self, response: requests.Response, body: bytes) -> dict:
        return {
            "status": response.status_code,
            "headers": _headers(response.headers),
            "body": parse_body(body, response.headers.get("Content-Type", ""), response.encoding),
        }


@dataclass(frozen=True)
class _Send:
    method: str
    url: str
    query: dict
    headers: dict
    body: Any
    auth: Any
    timeout: float
    deadline: float


def build_url(base_url: str, path: str, path_params: dict | None) -> str:
    """``base_url`` + ``path`` with each ``{name}`` replaced by its percent-encoded value."""
    path_params = path_params or {}
    result, position = [], 0
    while True:
        start = path.find("{", position)
        if start < 0:
            result.append(path[position:])
            break
        end = path.find("}", start)
        if end < 0:
            result.append(path[position:])
            break
        name = path[start + 1 : end]
        if name not in path_params or path_params[name] is None:
            raise CallFailed(f"path parameter {name!r} has no value")
        result.append(path[position:start])
        result.append(quote(_header_text(path_params[name]), safe=""))
        position = end + 1
    return base_url.rstrip("/") + "".join(result)


def _query(query: dict | None) -> dict:
    out = {}
    for key, value in (query or {}).items():
        if value is None:
            continue
        out[str(key)] = [_header_text(v) for v in value] if isinstance(value, list) else _header_text(value)
    return out


def _header_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return "" if value is None else str(value)


def _headers(headers) -> dict:
    return redact_headers(dict(headers))


def parse_body(body: bytes, content_type: str, encoding: str | None) -> Any:
    """JSON when the body is JSON (by content type, or by its first character), else text."""
    if not body:
        return None
    text = body.decode(encoding or "utf-8", errors="replace")
    lowered = content_type.lower()
    stripped = text.lstrip()
    if "json" in lowered or (not lowered.startswith("text/html") and stripped[:1] in ("{", "[")):
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def _describe_network_error(exc: Exception) -> str:
    text = repr(exc)
    for marker, meaning in (
        ("Connection reset", "connection reset by the server"),
        ("RemoteDisconnected", "the server closed the connection without answering"),
        ("Connection aborted", "the connection was aborted"),
        ("Connection refused", "connection refused"),
        ("IncompleteRead", "the response was cut short"),
        ("InvalidChunkLength", "the response was cut short"),
    ):
        if marker in text:
            return meaning
    return "network error"


def _after(result: CallResult, state: _RetryState) -> str:
    count = len(result.attempts)
    text = f"after {count} attempt{'s' if count != 1 else ''}"
    if state.budget_exhausted:
        text += " (no further retry: the next wait would pass the execution deadline)"
    return text


def _log_attempt(result: CallResult, record: dict, started: float, clock: Clock, **fields) -> None:
    record.update(fields)
    record["durationMs"] = round((clock.monotonic() - started) * 1000.0, 3)
    result.attempts.append(record)


def _iso_now() -> str:
    """The current UTC time as ``2026-01-02T03:04:05.678Z`` (milliseconds, truncated)."""
    return now_timestamp()

"""The fake HTTP transport of a case: fixtures answer executor requests, a built-in fake
answers OIDC discovery and token requests, and nothing reaches a socket.

The runner's sessions are real :class:`~flowker.security.http.HardenedSession` objects
with a :class:`FixtureAdapter` mounted where the SSRF-pinning adapter would be, so
everything above the transport runs for real: the URL and query the client builds, the
``Idempotency-Key``, the auth type's headers (what ``match.headers`` sees), redirects,
the response cap, retries and the breaker.
"""

from __future__ import annotations

import base64
import http
import io
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.response import HTTPResponse

from flowker.error_codes import ErrorCode
from flowker.errors import FlowkerError
from flowker.runner.clock import SYSTEM_CLOCK, Clock
from flowker.runner.executor_client import ExecutorDefinition
from flowker.runner.workflow_tests.cases import Fixture
from flowker.runner.workflow_tests.matching import mismatches, same_scalar, shown
from flowker.security.http import HardenedSession

WELL_KNOWN_PATH = "/.well-known/openid-configuration"
FAKE_TOKEN_PATH = "/.flowker-test/token"
FAKE_TOKEN_LIFETIME_SECONDS = 3600


class UnmatchedCall(FlowkerError):
    """A request no fixture answers: the step fails, and so does the case."""

    code = ErrorCode.EXECUTOR_CALL_FAILED


@dataclass
class SentRequest:
    """One request the workflow sent (every attempt is one), as the transport saw it."""

    call: str | None  # executor.endpoint, when the URL is one of the executor's endpoints
    method: str
    url: str
    headers: dict
    query: dict
    body: Any
    path_params: dict = field(default_factory=dict)
    fixture: str | None = None  # the label of the fixture that answered
    answer: dict | None = None  # {status, headers, body} given, or None
    failure: str | None = None  # "timeout" | "connection_error"


@dataclass(frozen=True)
class _EndpointRoute:
    name: str
    method: str
    scheme: str
    netloc: str
    pattern: re.Pattern
    params: tuple


def endpoint_routes(definition: ExecutorDefinition) -> list[_EndpointRoute]:
    """URL patterns of an executor's endpoints (``{param}`` captures one path segment)."""
    base = urlsplit(definition.base_url)
    routes = []
    for name, endpoint in definition.endpoints.items():
        template = base.path.rstrip("/") + str(endpoint.get("path", "/"))
        params, regex, position = [], "", 0
        for found in re.finditer(r"\{([^}]*)\}", template):
            regex += re.escape(template[position : found.start()]) + "([^/]*)"
            params.append(found.group(1))
            position = found.end()
        regex += re.escape(template[position:])
        routes.append(
            _EndpointRoute(
                name,
                str(endpoint.get("method", "GET")).upper(),
                base.scheme.lower(),
                base.netloc.lower(),
                re.compile(f"^{regex}$"),
                tuple(params),
            )
        )
    return routes


class FixtureTransport:
    """Answers the requests of one case run from its fixtures, and logs every request."""

    def __init__(self, fixtures: list[Fixture], calls: dict[str, tuple[str, str]], clock: Clock = SYSTEM_CLOCK):
        self.fixtures = fixtures
        self.clock = clock  # a timeout takes its time on it, as the network would
        self._calls = calls  # fixture call text -> (executor, endpoint)
        self.requests: list[SentRequest] = []
        self.unmatched: list[str] = []

    def session_for(self, definition: ExecutorDefinition, routes=None, secret_headers=()) -> requests.Session:
        """A hardened session for ``definition`` answered by this transport (``routes``:
        its :func:`endpoint_routes`, when already built)."""
        return _session(FixtureAdapter(self, definition, routes), secret_headers)

    def token_session(self) -> requests.Session:
        return _session(FakeTokenAdapter(), ())

    def count(self, call: str) -> int:
        return sum(1 for sent in self.requests if sent.call == call)

    # -- answering --------------------------------------------------------------------

    def answer(self, executor: str, request: requests.PreparedRequest, routes) -> tuple[SentRequest, Fixture]:
        sent = _sent(request)
        path = urlsplit(sent.url)
        candidates = []
        for route in routes:
            found = route.pattern.match(path.path)
            if (
                found
                and route.method == sent.method
                and (path.scheme.lower(), path.netloc.lower())
                == (
                    route.scheme,
                    route.netloc,
                )
            ):
                candidates.append((route.name, dict(zip(route.params, (unquote(v) for v in found.groups())))))
        if candidates:
            sent.call, sent.path_params = f"{executor}.{candidates[0][0]}", candidates[0][1]
        self.requests.append(sent)
        tried = []
        for fixture in self.fixtures:
            target = self._calls.get(fixture.call)
            if target is None or target[0] != executor:
                continue
            for endpoint, path_params in candidates:
                if target[1] != endpoint:
                    continue
                reasons = _match_reasons(fixture.match, sent, path_params)
                if not reasons:
                    sent.call, sent.path_params, sent.fixture = fixture.call, path_params, fixture.label
                    return sent, fixture
                tried.append(f"{fixture.label} {fixture.call}: " + "; ".join(reasons))
        body = "" if sent.body is None else f" body {shown(sent.body)}"
        message = f"no fixture answers {sent.method} {sent.url}{body}"
        if sent.call is None:
            message += f" (no endpoint of executor {executor!r} has this method and URL)"
        message += "; fixtures tried: " + (" | ".join(tried) if tried else f"none for {sent.call or executor}")
        self.unmatched.append(message)
        raise UnmatchedCall(message)


def _match_reasons(match: dict, sent: SentRequest, path_params: dict) -> list[str]:
    reasons = []
    if "method" in match and str(match["method"]).upper() != sent.method:
        reasons.append(f"method: expected {match['method']}, got {sent.method}")
    lowered = {name.lower(): value for name, value in sent.headers.items()}
    for name, value in (match.get("headers") or {}).items():
        actual = lowered.get(str(name).lower())
        if actual is None:
            reasons.append(f"headers.{name}: missing")
        elif actual != _text(value):
            reasons.append(f"headers.{name}: expected {shown(_text(value))}, got {shown(actual)}")
    for name, value in (match.get("query") or {}).items():
        actual = sent.query.get(name)
        wanted = [_text(v) for v in value] if isinstance(value, list) else _text(value)
        if actual is None:
            reasons.append(f"query.{name}: missing")
        elif actual != wanted:
            reasons.append(f"query.{name}: expected {shown(wanted)}, got {shown(actual)}")
    for name, value in (match.get("pathParams") or {}).items():
        actual = path_params.get(name)
        if actual != _text(value):
            reasons.append(f"pathParams.{name}: expected {shown(_text(value))}, got {shown(actual)}")
    if "body" in match:
        expected = match["body"]
        if isinstance(expected, (dict, list)):
            reasons.extend(mismatches(expected, sent.body, "body"))
        elif not same_scalar(expected, sent.body):
            reasons.append(f"body: expected {shown(expected)}, got {shown(sent.body)}")
    return reasons


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _sent(request: requests.PreparedRequest) -> SentRequest:
    url = request.url or ""
    query = {}
    for name, values in parse_qs(urlsplit(url).query, keep_blank_values=True).items():
        query[name] = values[0] if len(values) == 1 else values
    return SentRequest(
        call=None,
        method=str(request.method or "GET").upper(),
        url=url,
        headers=dict(request.headers),
        query=query,
        body=_body(request.body),
    )


def _body(raw: Any) -> Any:
    if raw is None:
        return None
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _session(adapter: HTTPAdapter, secret_headers) -> requests.Session:
    """A hardened session as :func:`flowker.security.http.new_session` makes it, on ``adapter``."""
    session = HardenedSession(secret_headers)
    session.trust_env = False
    session.proxies = {}
    for old in list(session.adapters.values()):
        old.close()
    session.adapters.clear()
    for prefix in ("https://", "http://", ""):
        session.mount(prefix, adapter)
    return session


def response_for(adapter: HTTPAdapter, request: requests.PreparedRequest, answer: dict) -> requests.Response:
    """A requests Response as the network would give it, from ``{status, headers, body}``."""
    status = int(answer.get("status", 200))
    headers = {str(name): str(value) for name, value in (answer.get("headers") or {}).items()}
    body = answer.get("body")
    has_type = any(name.lower() == "content-type" for name in headers)
    if body is None:
        data = b""
    elif isinstance(body, str):
        data = body.encode("utf-8")
        if not has_type:
            headers["Content-Type"] = "text/plain; charset=utf-8"
    else:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        if not has_type:
            headers["Content-Type"] = "application/json"
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = ""
    raw = HTTPResponse(
        body=io.BytesIO(data),
        headers=headers,
        status=status,
        reason=reason,
        preload_content=False,
        decode_content=False,
        request_method=request.method,
        request_url=request.url,
    )
    return adapter.build_response(request, raw)


class FixtureAdapter(HTTPAdapter):
    """The transport of one executor's session in a case."""

    def __init__(self, transport: FixtureTransport, definition: ExecutorDefinition, routes=None):
        super().__init__(max_retries=0)
        self.transport = transport
        self.executor = definition.name
        self.routes = routes if routes is not None else endpoint_routes(definition)

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        sent, fixture = self.transport.answer(self.executor, request, self.routes)
        answer = fixture.next_answer()
        failure = fixture.failure or answer.get("raise")
        if failure == "timeout":
            sent.failure = "timeout"
            self.transport.clock.sleep(_read_timeout(timeout))
            raise requests.exceptions.ReadTimeout("read timed out (fixture: raise timeout)", request=request)
        if failure is not None:
            sent.failure = "connection_error"
            raise requests.exceptions.ConnectionError(
                "Connection refused (fixture: raise connection_error)", request=request
            )
        sent.answer = answer
        return response_for(self, request, answer)


def _read_timeout(timeout: Any) -> float:
    if isinstance(timeout, tuple):
        timeout = timeout[-1]
    return float(timeout) if isinstance(timeout, (int, float)) else 0.0


class FakeTokenAdapter(HTTPAdapter):
    """OIDC discovery and token endpoints of any issuer: discovery names the fake token
    endpoint; tokens are ``fake-access-token:<client_id>`` (refreshable, 1 h)."""

    def __init__(self) -> None:
        super().__init__(max_retries=0)

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        url = request.url or ""
        path = urlsplit(url).path
        if request.method == "GET" and path.endswith(WELL_KNOWN_PATH):
            issuer = url.split("?", 1)[0][: -len(WELL_KNOWN_PATH)]
            document = {
                "issuer": issuer,
                "token_endpoint": issuer + FAKE_TOKEN_PATH,
                "grant_types_supported": ["client_credentials", "password", "refresh_token"],
            }
            return response_for(self, request, {"status": 200, "body": document})
        if request.method == "POST" and path.endswith(FAKE_TOKEN_PATH):
            client_id = _client_id(request)
            token = {
                "access_token": f"fake-access-token:{client_id}",
                "token_type": "Bearer",
                "expires_in": FAKE_TOKEN_LIFETIME_SECONDS,
                "refresh_token": f"fake-refresh-token:{client_id}",
            }
            return response_for(self, request, {"status": 200, "body": token})
        return response_for(self, request, {"status": 404, "body": {"error": "not_found"}})


def _client_id(request: requests.PreparedRequest) -> str:
    form = parse_qs(_body_text(request.body))
    if form.get("client_id"):
        return form["client_id"][0]
    authorization = request.headers.get("Authorization", "")
    if authorization.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(authorization[6:]).decode("utf-8")
        except ValueError:
            return "unknown"
        return unquote(decoded.split(":", 1)[0])
    return "unknown"


def _body_text(raw: Any) -> str:
    if raw is None:
        return ""
    return raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)

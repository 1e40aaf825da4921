"""What an executor call's auth put on the request, and where it may go with it.

An auth plugin's ``__call__`` may add headers, query parameters and cookies.
:func:`apply_auth` runs it on a prepared request and notes what it added
(:class:`AddedCredentials`, carried from hop to hop on the request); on a redirect to
another origin :func:`strip_off_origin` takes all of that off again, with the trace
context headers, so a credential meant for one service never reaches another. Used by
:func:`flowker.security.http.send_request` and the hardened session's redirects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable
from urllib.parse import parse_qsl, unquote_plus, urlsplit, urlunsplit

import requests

# The PreparedRequest attribute holding what its auth added (carried from hop to hop).
_CREDENTIALS_ATTRIBUTE = "_flowker_credentials"
_DEFAULT_PORTS = {"http": 80, "https": 443}
# What flowker.tracing adds for the executor's service; another origin does not get them.
TRACE_CONTEXT_HEADERS = frozenset({"traceparent", "tracestate"})


@dataclass(frozen=True)
class AddedCredentials:
    """What the auth of a request put on it, and the URL it was meant for.

    Only the header names are worked out when the request is sent; the origin and the
    query parameters (URL parsing) only when a redirect needs them.
    """

    url: str  # the first request's URL before its auth ran
    headers: frozenset = frozenset()  # lower-case header names
    url_with_auth: str | None = None  # the URL after the auth ran, when it changed it
    declared_query: tuple = ()  # query parameter names the auth object declares

    @property
    def origin(self) -> tuple:
        return url_origin(self.url)

    @property
    def query(self) -> frozenset:
        names = set(self.declared_query)
        if self.url_with_auth is not None:
            before, after = _query_values(self.url), _query_values(self.url_with_auth)
            names.update(name for name, values in after.items() if before.get(name) != values)
        return frozenset(names)


def url_origin(url: str | None) -> tuple:
    """(scheme, host, port) of ``url``, lower-cased, default ports filled in."""
    try:
        parts = urlsplit(url or "")
        scheme = parts.scheme.lower()
        port = parts.port or _DEFAULT_PORTS.get(scheme)
        return scheme, (parts.hostname or "").lower(), port
    except ValueError:
        return ("", url or "", None)


def _query_values(url: str) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for name, value in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        values.setdefault(name, []).append(value)
    return values


def apply_auth(prepared: requests.PreparedRequest, auth: Any, url: str) -> requests.PreparedRequest:
    """``prepared.prepare_auth(auth, url)``, recording what the auth added.

    The headers whose value the auth set or changed, and the query parameters it added
    or changed, are remembered on the request (plus any names the auth object declares
    in ``credential_headers`` / ``credential_query_params``); a redirect hop that leaves
    the first request's origin loses exactly those (see :func:`strip_off_origin`).
    """
    headers_before = dict(prepared.headers.lower_items())
    url_before = prepared.url or ""
    prepared.prepare_auth(auth, url)
    added_headers = {name for name, value in prepared.headers.lower_items() if headers_before.get(name) != value}
    declared_headers = getattr(auth, "credential_headers", None)
    if declared_headers:
        added_headers.update(str(name).lower() for name in declared_headers)
    setattr(
        prepared,
        _CREDENTIALS_ATTRIBUTE,
        AddedCredentials(
            url_before,
            frozenset(added_headers),
            prepared.url if prepared.url != url_before else None,
            tuple(str(name) for name in getattr(auth, "credential_query_params", None) or ()),
        ),
    )
    return prepared


def _without_query_params(url: str, names: frozenset) -> str:
    parts = urlsplit(url)
    if not parts.query:
        return url
    kept = [pair for pair in parts.query.split("&") if unquote_plus(pair.split("=", 1)[0]) not in names]
    return urlunsplit(parts._replace(query="&".join(kept)))


def strip_off_origin(
    prepared_request: requests.PreparedRequest, response: requests.Response, secret_headers: Iterable[str]
) -> None:
    """On a redirect hop: carry the record of what the auth added, and when the hop's
    origin differs from the first request's, remove it all from ``prepared_request`` -
    the auth's headers and query parameters and ``secret_headers`` (lower-case)."""
    previous = response.request
    credentials = getattr(previous, _CREDENTIALS_ATTRIBUTE, None)
    if credentials is None:  # prepared elsewhere: its own URL is the origin
        credentials = AddedCredentials(previous.url or "")
    setattr(prepared_request, _CREDENTIALS_ATTRIBUTE, credentials)
    if url_origin(prepared_request.url) == credentials.origin:
        return
    stripped = set(secret_headers) | credentials.headers | TRACE_CONTEXT_HEADERS
    for name in list(prepared_request.headers):
        if name.lower() in stripped:
            del prepared_request.headers[name]
    query = credentials.query
    if query and prepared_request.url:
        prepared_request.url = _without_query_params(prepared_request.url, query)


def _prepare_tracking_auth(prepare, session: requests.Session, request: requests.Request) -> requests.PreparedRequest:
    """Session.prepare_request with the auth applied last, through :func:`apply_auth`."""
    original = request.auth
    auth = original if original is not None else session.auth
    request.auth = False  # merge_setting keeps False; prepare_auth then adds nothing
    try:
        prepared = prepare(request)
    finally:
        request.auth = original
    return apply_auth(prepared, auth, prepared.url)

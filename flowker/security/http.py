"""Hardened outbound HTTP: the only way Flowker calls executors and token endpoints.

:func:`new_session` returns a :class:`requests.Session` that

* ignores the environment (``trust_env = False``: no proxies, no netrc, no CA overrides);
* checks every request - each redirect hop included - with an
  :class:`~flowker.security.ssrf.AddressPolicy` before any socket is opened;
* connects only to the addresses that check returned (the connection is *pinned*): the
  name is resolved once, checked, and the socket connects to that exact IP, while the
  Host header, TLS SNI and certificate verification still use the original host name.
  A DNS answer that changes between check and connect (rebinding) reaches nothing new;
* drops credentials when a redirect leaves the origin (scheme, host and port of the
  first request): Authorization, Cookie, Proxy-Authorization and the configured secret
  headers, plus every header and query parameter the request's auth added - found by
  comparing the request before and after the auth ran (:func:`apply_auth`), so a
  plugin's headers go too, whatever their names; the W3C trace context headers
  (``traceparent``, ``tracestate``: meant for the executor's service) go too;
* caps response bodies (decoded size, so compression bombs stop too).

:func:`send_request` is ``session.request(..., stream=True)`` for the runner's hot path:
the same request, prepared without Session.request's per-call merging.
"""

from __future__ import annotations

import socket
import sys
import threading
from typing import TYPE_CHECKING, Any, Iterable
from urllib.parse import urlsplit

import requests
from requests.adapters import DEFAULT_POOLSIZE, HTTPAdapter
from requests.cookies import RequestsCookieJar, merge_cookies
from requests.structures import CaseInsensitiveDict
from urllib3._collections import RecentlyUsedContainer
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.util.timeout import _DEFAULT_TIMEOUT

from flowker.errors import ResponseTooLargeError  # noqa: F401 (re-exported)
from flowker.security.auth_tracking import _prepare_tracking_auth, apply_auth, strip_off_origin
from flowker.security.redaction import SECRET_HEADER_NAMES
from flowker.security.ssrf import AddressPolicy, HostResolutionError, ResolvedTarget, parse_ip_literal

DEFAULT_MAX_RESPONSE_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_REDIRECTS = 5
_READ_CHUNK = 64 * 1024
_TLS_POOL_KWARGS = ("cert_reqs", "ca_certs", "ca_cert_dir", "cert_file", "key_file")
_MEMO_SIZE = 256  # URLs remembered by the two memos below; cleared when full


# --------------------------------------------------------------------------- connections


# The mixin relies on HTTPConnection's attributes (host, port, timeout...): the type checker
# sees it as one; at run time it is a plain mixin placed before the real connection class.
if TYPE_CHECKING:
    _MixinBase = HTTPConnection
else:
    _MixinBase = object


class _PinnedConnectionMixin(_MixinBase):
    """Connects to the checked addresses only; ``self.host`` stays the URL's host name."""

    def __init__(self, *args, pinned_addresses: Iterable[str] = (), **kwargs):
        super().__init__(*args, **kwargs)
        self.pinned_addresses = tuple(pinned_addresses)

    def _new_conn(self) -> socket.socket:
        if not self.pinned_addresses:
            raise NewConnectionError(self, "no checked address to connect to")
        error: Exception | None = None
        for address in self.pinned_addresses:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                for option in self.socket_options or ():
                    sock.setsockopt(*option)
                if self.timeout is not _DEFAULT_TIMEOUT:
                    sock.settimeout(self.timeout)
                if self.source_address:
                    sock.bind(self.source_address)
                sock.connect((address, self.port))
            except socket.timeout:
                sock.close()
                error = ConnectTimeoutError(
                    self, f"Connection to {self.host} timed out. (connect timeout={self.timeout})"
                )
            except OSError as exc:
                sock.close()
                error = NewConnectionError(self, f"Failed to establish a new connection: {exc}")
            else:
                sys.audit("http.client.connect", self, self.host, self.port)
                return sock
        assert error is not None  # pinned_addresses is not empty: the loop set it
        raise error


class PinnedHTTPConnection(_PinnedConnectionMixin, HTTPConnection):
    pass


class PinnedHTTPSConnection(_PinnedConnectionMixin, HTTPSConnection):
    pass


# --------------------------------------------------------------------------- adapter


class PinnedAdapter(HTTPAdapter):
    """A transport adapter that checks each request with the policy and pins its connection."""

    def __init__(
        self,
        policy: AddressPolicy,
        *,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        pool_connections: int = DEFAULT_POOLSIZE,
        pool_maxsize: int = DEFAULT_POOLSIZE,
    ):
        self.policy = policy
        self.max_response_bytes = max_response_bytes
        self._pools_lock = threading.Lock()
        self._pools: RecentlyUsedContainer[tuple, HTTPConnectionPool] = RecentlyUsedContainer(
            pool_connections, dispose_func=lambda pool: pool.close()
        )
        # URL -> (policy, target) for URLs whose host is a literal IP address: no DNS is
        # involved, so the check's answer depends on the URL and the policy alone.
        self._literal_targets: dict[str, tuple[AddressPolicy, ResolvedTarget]] = {}
        super().__init__(pool_connections=pool_connections, pool_maxsize=pool_maxsize, max_retries=0)

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        # Proxies are never used: a proxy would connect to addresses the policy never saw.
        try:
            return super().send(request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies={})
        except HostResolutionError as exc:
            # A DNS failure is a network error like any other (retried by the runner).
            raise requests.exceptions.ConnectionError(exc.message, request=request) from None

    def get_connection_with_tls_context(self, request, verify, proxies=None, cert=None):
        target = self._check(request.url)
        _host_params, pool_kwargs = self.build_connection_pool_key_attributes(request, verify, cert)
        return self._pool_for(target, pool_kwargs)

    def get_connection(self, url, proxies=None):  # pre-2.32.2 requests API, kept safe
        request = requests.Request("GET", url).prepare()
        return self.get_connection_with_tls_context(request, True)

    def _check(self, url: str) -> ResolvedTarget:
        """``policy.check_url(url)``, remembered for literal-IP hosts only: a host name is
        resolved and checked again on every request (a new DNS answer must be seen)."""
        policy = self.policy
        entry = self._literal_targets.get(url)
        if entry is not None and entry[0] is policy:  # AddressPolicy is never changed in place
            return entry[1]
        target = policy.check_url(url)  # raises when refused: nothing refused is remembered
        if parse_ip_literal(target.host) is not None:
            if len(self._literal_targets) >= _MEMO_SIZE:
                self._literal_targets.clear()
            self._literal_targets[url] = (policy, target)
        return target

    def _pool_for(self, target: ResolvedTarget, pool_kwargs: dict) -> HTTPConnectionPool:
        tls = target.scheme == "https"
        kwargs = {k: v for k, v in pool_kwargs.items() if tls and k in _TLS_POOL_KWARGS}
        key = (target.scheme, target.host, target.port, tuple(sorted(target.addresses)), tuple(sorted(kwargs.items())))
        with self._pools_lock:
            pool = self._pools.get(key)
            if pool is None:
                pool_class = HTTPSConnectionPool if tls else HTTPConnectionPool
                pool = pool_class(
                    target.host,
                    target.port,
                    # Both set by HTTPAdapter.init_poolmanager; not in types-requests.
                    maxsize=self._pool_maxsize,  # type: ignore[attr-defined]
                    block=self._pool_block,  # type: ignore[attr-defined]
                    pinned_addresses=target.addresses,
                    **kwargs,
                )
                pool.ConnectionCls = PinnedHTTPSConnection if tls else PinnedHTTPConnection
                self._pools[key] = pool
            return pool

    def build_response(self, req, resp):
        response = super().build_response(req, resp)
        limit = self.max_response_bytes
        if limit:
            length = response.headers.get("Content-Length", "")
            if length.isdigit() and int(length) > limit:
                response.close()
                raise ResponseTooLargeError(_too_large_message(req.url, limit))
            response.raw = CappedBody(response.raw, limit, req.url)
        return response

    def close(self) -> None:
        with self._pools_lock:
            self._pools.clear()  # dispose_func closes each pool
        super().close()


def _too_large_message(url: str, limit: int) -> str:

    try:
        host = urlsplit(url).hostname or "?"
    except ValueError:
        host = "?"
    return f"response from host '{host}' is larger than {limit} bytes"


class CappedBody:
    """Wraps a urllib3 response so reading more than ``limit`` bytes raises.

    Counts decoded bytes, so a small compressed body that inflates past the cap is
    stopped too. Everything else is delegated to the wrapped response.
    """

    def __init__(self, raw, limit: int, url: str):
        self._raw = raw
        self._limit = limit
        self._url = url
        self._seen = 0

    def _count(self, data: bytes) -> bytes:
        self._seen += len(data)
        if self._seen > self._limit:
            self._raw.close()
            raise ResponseTooLargeError(_too_large_message(self._url, self._limit))
        return data

    def stream(self, amt: int | None = _READ_CHUNK, decode_content: bool | None = None):
        for chunk in self._raw.stream(amt, decode_content=decode_content):
            yield self._count(chunk)

    def read(self, amt: int | None = None, decode_content: bool | None = None, **kwargs) -> bytes:
        if amt is not None:
            return self._count(self._raw.read(amt, decode_content=decode_content, **kwargs))
        parts: list[bytes] = []
        while True:
            chunk = self._raw.read(_READ_CHUNK, decode_content=decode_content, **kwargs)
            if not chunk:
                return b"".join(parts)
            parts.append(self._count(chunk))

    def __iter__(self):
        return self.stream()

    def __getattr__(self, name):
        return getattr(self._raw, name)


def read_capped(response: requests.Response, limit: int) -> bytes:
    """The body of ``response``, raising :class:`ResponseTooLargeError` beyond ``limit`` bytes.

    Works for streamed (``stream=True``) and already-read responses; afterwards
    ``response.content``/``.json()`` use the bytes read here.
    """
    if getattr(response, "_content_consumed", False) or getattr(response, "_content", False) not in (False, None):
        body = response.content or b""
        if len(body) > limit:
            raise ResponseTooLargeError(_too_large_message(response.url or "", limit))
        return body
    length = response.headers.get("Content-Length", "")
    if length.isdigit() and int(length) > limit:
        response.close()
        raise ResponseTooLargeError(_too_large_message(response.url or "", limit))
    parts, seen = [], 0
    try:
        for chunk in response.iter_content(_READ_CHUNK):
            seen += len(chunk)
            if seen > limit:
                raise ResponseTooLargeError(_too_large_message(response.url or "", limit))
            parts.append(chunk)
    except ResponseTooLargeError:
        response.close()
        raise
    body = b"".join(parts)
    response._content = body
    response._content_consumed = True  # type: ignore[attr-defined]  # requests' private flag, not in its stubs
    return body


# --------------------------------------------------------------------------- requests


def send_request(
    session: requests.Session,
    method: str,
    url: str,
    *,
    params: dict | None = None,
    headers: dict | None = None,
    json: Any = None,
    auth: Any = None,
    timeout: Any = None,
) -> requests.Response:
    """``session.request(method, url, params=..., headers=..., json=..., auth=..., timeout=...,
    stream=True)``, cheaper per call.

    Session.request merges the session's settings into each request (seven merge_setting
    calls, a cookie jar copy and scan, the environment) before Session.send. For a session
    as :func:`harden_session` leaves it (no trust_env, proxies, params or session hooks),
    the same prepared request is built here directly - session headers then ``headers``,
    the URL, the JSON body, the session's cookies, then ``auth`` (with any hook it
    registers) - and goes through Session.send as before: response hooks, redirects (each
    hop re-checked), cookie persistence unchanged. Any other session (or stand-in) takes
    its own ``request``.
    """
    if (
        not isinstance(session, requests.Session)
        or session.trust_env
        or session.params
        or session.proxies
        or session.headers is None
        or not (session.hooks is None or session.hooks.get("response") == [])
    ):
        return session.request(
            method, url, params=params or None, headers=headers, json=json, auth=auth, timeout=timeout, stream=True
        )
    prepared = requests.PreparedRequest()
    prepared.prepare_method(method)
    if params or not isinstance(url, str):
        prepared.prepare_url(url, params)
    else:  # a pure function of the URL, and the same few URLs come back on every call
        # The memo lives on the session (one per executor), not in the module.
        prepared_urls = session.__dict__.setdefault("_flowker_prepared_urls", {})
        prepared.url = prepared_urls.get(url)
        if prepared.url is None:
            prepared.prepare_url(url, None)
            if len(prepared_urls) >= _MEMO_SIZE:
                prepared_urls.clear()
            prepared_urls[url] = prepared.url
    merged = CaseInsensitiveDict(session.headers)
    if headers:
        merged.update(headers)
    for name in [name for name, value in merged.items() if value is None]:
        del merged[name]
    prepared.prepare_headers(merged)
    jar = RequestsCookieJar()
    if len(session.cookies):
        prepared.prepare_cookies(merge_cookies(jar, session.cookies))
    else:
        prepared._cookies = jar  # type: ignore[attr-defined]  # (private, not in the stubs) an empty jar adds no Cookie header; redirects still use the jar
    prepared.prepare_body({}, None, json)
    apply_auth(prepared, auth if auth is not None else session.auth, url)
    return session.send(
        prepared,
        timeout=timeout,
        allow_redirects=True,
        proxies={},
        stream=True,
        verify=session.verify,
        cert=session.cert,
    )


# --------------------------------------------------------------------------- session


class HardenedSession(requests.Session):
    """A session whose redirects never carry credentials to another origin."""

    def __init__(self, secret_headers: Iterable[str] = ()):
        super().__init__()
        self.secret_headers = tuple(SECRET_HEADER_NAMES) + tuple(h.lower() for h in secret_headers)

    def prepare_request(self, request):
        return _prepare_tracking_auth(super().prepare_request, self, request)

    def rebuild_auth(self, prepared_request, response):
        super().rebuild_auth(prepared_request, response)  # drops Authorization across hosts
        strip_off_origin(prepared_request, response, self.secret_headers)

    def rebuild_proxies(self, prepared_request, proxies):
        return {}


def new_session(
    policy: AddressPolicy,
    *,
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    max_redirects: int = DEFAULT_MAX_REDIRECTS,
    secret_headers: Iterable[str] = (),
    pool_maxsize: int = DEFAULT_POOLSIZE,
) -> requests.Session:
    """A hardened session (see the module docstring); one per executor or token endpoint.

    ``max_redirects=0`` refuses redirects outright (``requests.TooManyRedirects``);
    otherwise each hop is re-checked by ``policy``. ``secret_headers`` names extra headers
    (a configured api_key ``header_name``) dropped when a redirect changes origin.
    """
    return harden_session(
        HardenedSession(secret_headers),
        policy,
        max_response_bytes=max_response_bytes,
        max_redirects=max_redirects,
        secret_headers=secret_headers,
        pool_maxsize=pool_maxsize,
    )


def harden_session(
    session: requests.Session,
    policy: AddressPolicy,
    *,
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    max_redirects: int = DEFAULT_MAX_REDIRECTS,
    secret_headers: Iterable[str] = (),
    pool_maxsize: int = DEFAULT_POOLSIZE,
) -> requests.Session:
    """Apply the same hardening to an existing session, e.g. a requests-oauthlib ``OAuth2Session``."""
    session.trust_env = False
    session.proxies = {}
    session.max_redirects = max_redirects
    session.verify = True
    if not isinstance(session, HardenedSession):
        stripped = tuple(SECRET_HEADER_NAMES) + tuple(h.lower() for h in secret_headers)
        original_rebuild_auth = session.rebuild_auth
        original_prepare_request = session.prepare_request

        def rebuild_auth(prepared_request, response):
            original_rebuild_auth(prepared_request, response)
            strip_off_origin(prepared_request, response, stripped)

        # Per-session overrides of a caller's plain Session (a HardenedSession has them as methods).
        session.rebuild_auth = rebuild_auth  # type: ignore[method-assign]
        session.prepare_request = lambda request: _prepare_tracking_auth(  # type: ignore[method-assign]
            original_prepare_request, session, request
        )
        session.rebuild_proxies = lambda prepared_request, proxies: {}  # type: ignore[method-assign]
    adapter = PinnedAdapter(policy, max_response_bytes=max_response_bytes, pool_maxsize=pool_maxsize)
    # Replace the default adapters: every scheme requests knows goes through the guard.
    for old in list(session.adapters.values()):
        old.close()
    session.adapters.clear()
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.mount("", adapter)  # other schemes (file:, gopher:) reach the guard and are refused
    return session

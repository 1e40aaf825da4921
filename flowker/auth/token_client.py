"""Getting OIDC access tokens through requests-oauthlib.

:class:`TokenClient` runs the client-credentials grant (``BackendApplicationClient``),
the resource-owner password grant (``LegacyApplicationClient``) and the refresh-token
grant with an ``OAuth2Session`` whose HTTP goes through the session Flowker gives it (the
SSRF-guarded one). Every failure becomes an :class:`~flowker.errors.AuthTypeError` whose
message names the client, user and endpoint, never a secret or a token.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import quote_plus

import requests
from oauthlib.oauth2 import BackendApplicationClient, LegacyApplicationClient, OAuth2Error
from requests.auth import HTTPBasicAuth
from requests_oauthlib import OAuth2Session

from flowker.auth.discovery import REQUEST_TIMEOUT_SECONDS, fetch_discovery, normalize_issuer
from flowker.auth.token_cache import CachedToken, TokenCache
from flowker.errors import AuthTypeError, FlowkerError
from flowker.security.redaction import MASK, redact_url

CLIENT_SECRET_BASIC = "client_secret_basic"
CLIENT_SECRET_POST = "client_secret_post"
MAX_DESCRIPTION_LENGTH = 200
_ERROR_CODE_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


@dataclass(frozen=True)
class GrantRequest:
    """Everything one OIDC auth asks its provider for. Secrets never show in its repr."""

    issuer: str
    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    auth_method: str = CLIENT_SECRET_BASIC
    scopes: tuple[str, ...] = ()
    audience: str | None = None
    extra_params: tuple[tuple[str, str], ...] = ()
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def grant(self) -> str:
        return "password" if self.username is not None else "client_credentials"

    def describe(self) -> str:
        who = f"client {self.client_id!r}"
        if self.username is not None:
            who += f" for user {self.username!r}"
        return f"{who} at issuer {redact_url(self.issuer)}"


class _RefreshRejected(Exception):
    """The provider no longer accepts the refresh token: fall back to the password grant."""


class _TransportOAuth2Session(OAuth2Session):
    """An OAuth2Session whose requests go through Flowker's (SSRF-guarded) session.

    Token requests never follow redirects: a token endpoint that redirects is refused
    rather than having credentials replayed elsewhere.
    """

    def __init__(self, transport: requests.Session, timeout: float, **kwargs):
        super().__init__(**kwargs)
        self.trust_env = False
        self._transport = transport
        self._timeout = timeout

    def request(
        self,
        method,
        url,
        data=None,
        headers=None,
        withhold_token=False,
        client_id=None,
        client_secret=None,
        files=None,
        **kwargs,
    ):
        kwargs["timeout"] = kwargs.get("timeout") or self._timeout
        kwargs.pop("proxies", None)
        if kwargs.get("verify") is None:
            kwargs.pop("verify", None)
        kwargs["allow_redirects"] = False
        return self._transport.request(method, url, data=data, headers=headers, files=files, **kwargs)


class TokenClient:
    """Obtains tokens for one :class:`GrantRequest`; used through the :class:`TokenCache`.

    ``new_session`` makes the HTTP session for discovery and token requests;
    ``register_secret`` is told every token obtained; ``scrub`` removes known secrets
    from provider-supplied text (error descriptions) before it goes into a message.
    """

    def __init__(
        self,
        request: GrantRequest,
        cache: TokenCache,
        *,
        new_session: Callable[[], requests.Session],
        register_secret: Callable[[str], None],
        scrub: Callable[[str], str],
        production: bool = False,
        timeout: float = REQUEST_TIMEOUT_SECONDS,
    ):
        self.request = request
        self._cache = cache
        self._new_session = new_session
        self._register_secret = register_secret
        self._scrub = scrub
        self._production = production
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"<TokenClient {self.request.describe()}>"

    # -- the cache calls this ----------------------------------------------------------

    def obtain(self, previous: CachedToken | None) -> CachedToken:
        """A new token: the refresh grant when ``previous`` has a refresh token, else the grant.

        Each call uses a session of its own, closed afterwards: token requests are rare
        (once per token lifetime), and no connection outlives them.
        """
        with self._new_session() as transport:
            token_url = self.token_endpoint(transport)
            if previous is not None and previous.refresh_token:
                try:
                    return self._refresh(transport, token_url, previous.refresh_token)
                except _RefreshRejected:
                    pass  # expired or revoked refresh token: start over with the grant
            if self.request.grant == "password":
                return self._password(transport, token_url)
            return self._client_credentials(transport, token_url)

    def token_endpoint(self, transport: requests.Session) -> str:
        issuer = normalize_issuer(self.request.issuer)
        document = self._cache.discovery(
            issuer, lambda: fetch_discovery(transport, issuer, self._production, self._timeout)
        )
        return document["token_endpoint"]

    # -- grants ------------------------------------------------------------------------

    def _client_credentials(self, transport: requests.Session, token_url: str) -> CachedToken:
        client = BackendApplicationClient(client_id=self.request.client_id)
        return self._fetch(transport, token_url, client, "client_credentials")

    def _password(self, transport: requests.Session, token_url: str) -> CachedToken:
        client = LegacyApplicationClient(client_id=self.request.client_id)
        return self._fetch(
            transport, token_url, client, "password", username=self.request.username, password=self.request.password
        )

    def _fetch(self, transport: requests.Session, token_url: str, client, grant: str, **grant_kwargs) -> CachedToken:
        oauth = self._oauth_session(transport, client)
        auth, include_client_id, secret_kwargs = self._client_authentication()
        started = self._cache.now()
        with oauth:
            token = self._call(
                grant,
                token_url,
                lambda: oauth.fetch_token(
                    token_url,
                    auth=auth,
                    include_client_id=include_client_id,
                    timeout=self._timeout,
                    **secret_kwargs,
                    **grant_kwargs,
                    **self._extra_body(),
                ),
            )
        return self._cached(token, started)

    def _refresh(self, transport: requests.Session, token_url: str, refresh_token: str) -> CachedToken:
        oauth = self._oauth_session(transport, LegacyApplicationClient(client_id=self.request.client_id))
        auth, include_client_id, secret_kwargs = self._client_authentication()
        body_kwargs = dict(self._extra_body())
        body_kwargs.pop("scope", None)  # OAuth2Session.refresh_token sends the session's scope
        if include_client_id:
            body_kwargs["client_id"] = self.request.client_id
            body_kwargs.update(secret_kwargs)
        started = self._cache.now()
        with oauth:
            token = self._call(
                "refresh_token",
                token_url,
                lambda: oauth.refresh_token(
                    token_url, refresh_token=refresh_token, auth=auth, timeout=self._timeout, **body_kwargs
                ),
            )
        return self._cached(token, started, previous_refresh_token=refresh_token)

    # -- pieces --------------------------------------------------------------------------

    def _oauth_session(self, transport: requests.Session, client) -> OAuth2Session:
        scope = list(self.request.scopes) or None
        oauth = _TransportOAuth2Session(transport, self._timeout, client=client, scope=scope)
        oauth.register_compliance_hook("access_token_response", self._checked_response)
        oauth.register_compliance_hook("refresh_token_response", self._checked_refresh_response)
        return oauth

    def _client_authentication(self):
        """(auth, include_client_id, extra body kwargs) for the configured method."""
        secret = self.request.client_secret
        if secret is None or secret == "":
            return None, True, {}  # a public client: client_id in the body, no secret
        if self.request.auth_method == CLIENT_SECRET_POST:
            return None, True, {"client_secret": secret}
        # RFC 6749 2.3.1: both parts are form-urlencoded before the Basic encoding.
        return HTTPBasicAuth(quote_plus(self.request.client_id), quote_plus(secret)), False, {}

    def _extra_body(self) -> dict:
        body: dict = dict(self.request.extra_params)
        if self.request.scopes:
            body["scope"] = list(self.request.scopes)
        if self.request.audience:
            body["audience"] = self.request.audience
        return body

    def _call(self, grant: str, token_url: str, fetch):
        where = f"OIDC {grant} token request for {self.request.describe()}"
        try:
            return fetch()
        except (AuthTypeError, _RefreshRejected):
            raise
        except FlowkerError:
            raise  # the SSRF guard's refusal, an oversized answer: already clear
        except Warning as warning:  # oauthlib: granted scope differs from the requested one
            token = getattr(warning, "token", None)
            if token is None:
                raise AuthTypeError(f"{where} failed: {type(warning).__name__}") from None
            return token
        except requests.exceptions.Timeout:
            raise AuthTypeError(
                f"{where} failed: {redact_url(token_url)} did not answer within {self._timeout:g} s"
            ) from None
        except requests.exceptions.SSLError:
            raise AuthTypeError(
                f"{where} failed: the TLS certificate of {redact_url(token_url)} was not accepted"
            ) from None
        except requests.exceptions.TooManyRedirects:
            raise AuthTypeError(
                f"{where} failed: the token endpoint redirected; token requests do not follow redirects"
            ) from None
        except requests.exceptions.RequestException as exc:
            raise AuthTypeError(
                f"{where} failed: could not reach {redact_url(token_url)} ({type(exc).__name__})"
            ) from None
        except OAuth2Error as exc:
            raise AuthTypeError(f"{where} failed: {_safe_code(exc.error)}") from None
        except (ValueError, TypeError, KeyError) as exc:
            raise AuthTypeError(f"{where} failed: unusable token response ({type(exc).__name__})") from None

    def _checked_refresh_response(self, response: requests.Response) -> requests.Response:
        return self._checked_response(response, refresh=True)

    def _checked_response(self, response: requests.Response, refresh: bool = False) -> requests.Response:
        """Compliance hook: turn any unusable token-endpoint answer into a clear error."""
        grant = "refresh_token" if refresh else self.request.grant
        where = f"OIDC {grant} token request for {self.request.describe()}"
        url = redact_url(response.url or "")
        content_type = response.headers.get("Content-Type", "no content type").split(";")[0].strip()
        body = _json_or_none(response)
        if 200 <= response.status_code < 300:
            if body is None:
                raise AuthTypeError(
                    f"{where} failed: the token endpoint {url} answered HTTP "
                    f"{response.status_code} with a body that is not JSON ({content_type})"
                )
            if not isinstance(body, dict) or not isinstance(body.get("access_token"), str) or not body["access_token"]:
                raise AuthTypeError(f"{where} failed: the token endpoint {url} answered without an access_token")
            return response
        if 300 <= response.status_code < 400:
            raise AuthTypeError(
                f"{where} failed: the token endpoint {url} redirected "
                f"(HTTP {response.status_code}); token requests do not follow redirects"
            )
        if not isinstance(body, dict) or "error" not in body:
            raise AuthTypeError(
                f"{where} failed: the token endpoint {url} answered HTTP {response.status_code} ({content_type})"
            )
        code = _safe_code(body.get("error"))
        description = self._description(body.get("error_description"))
        if refresh and code == "invalid_grant":
            raise _RefreshRejected()
        detail = f" ({description})" if description else ""
        if code == "invalid_client" or response.status_code == 401:
            raise AuthTypeError(
                f"{where} failed: the provider rejected the client credentials: {code}{detail}; "
                "check client_id, client_secret and token_endpoint_auth_method"
            )
        if code == "invalid_grant" and self.request.grant == "password":
            raise AuthTypeError(f"{where} failed: the provider rejected the username or password: {code}{detail}")
        raise AuthTypeError(f"{where} failed: HTTP {response.status_code} {code}{detail}")

    def _description(self, value) -> str:
        if not isinstance(value, str) or not value:
            return ""
        text = value.replace("\r", " ").replace("\n", " ")[:MAX_DESCRIPTION_LENGTH]
        for secret in (self.request.client_secret, self.request.password):
            if secret:
                text = text.replace(secret, MASK)
        try:
            return self._scrub(text)
        except Exception:  # noqa: BLE001 - without a working scrubber the description is left out
            return ""

    def _cached(self, token, started: float, previous_refresh_token: str | None = None) -> CachedToken:
        access_token = token.get("access_token")
        if not isinstance(access_token, str) or not access_token:
            raise AuthTypeError(f"OIDC token response for {self.request.describe()} has no access_token")
        refresh_token = token.get("refresh_token") or previous_refresh_token
        for value in (access_token, token.get("refresh_token"), token.get("id_token")):
            if isinstance(value, str) and value:
                self._register_secret(value)
        lifetime = _lifetime(token.get("expires_in"))
        scope = token.get("scope")
        if isinstance(scope, (list, tuple, set)):
            scope = " ".join(sorted(scope))
        return CachedToken.from_lifetime(
            access_token,
            lifetime,
            started,
            refresh_token=refresh_token if isinstance(refresh_token, str) else None,
            scope=scope if isinstance(scope, str) else None,
        )


def _json_or_none(response: requests.Response):
    try:
        return json.loads(response.content or b"")
    except ValueError:
        return None


def _safe_code(value) -> str:
    """An OAuth error code as text, or a placeholder when it looks like anything else."""
    return value if isinstance(value, str) and _ERROR_CODE_RE.match(value) else "unknown_error"


def _lifetime(value) -> float | None:
    try:
        lifetime = float(value)
    except (TypeError, ValueError):
        return None
    return lifetime if lifetime > 0 else None

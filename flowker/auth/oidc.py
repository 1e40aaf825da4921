"""The OIDC auth types: ``oidc_client_credentials`` and ``oidc_user`` (DESIGN 6a).

Both discover the token endpoint at ``<issuer_url>/.well-known/openid-configuration``,
get tokens through requests-oauthlib (:mod:`flowker.auth.token_client`) and send
``Authorization: Bearer <token>``. Tokens live in the per-process
:class:`~flowker.auth.token_cache.TokenCache` keyed by (issuer, client, scopes, audience,
user, extra parameters, auth method, a salted digest of the secrets): reused across
calls, renewed before they expire (``oidc_user`` with its refresh token), fetched once
when many threads need one, and fetched again once when the executor answers 401
(:mod:`flowker.auth.refreshing`). Discovery and token requests use
``AuthContext.new_session`` (the SSRF-guarded session).
"""

from __future__ import annotations

from typing import Any, Mapping

import requests

from flowker.auth.base import AuthContext, AuthType
from flowker.auth.discovery import normalize_issuer
from flowker.auth.oauth_logging import protect_oauth_logging
from flowker.auth.refreshing import RefreshingBearerAuth
from flowker.auth.token_cache import TokenCache
from flowker.auth.token_client import CLIENT_SECRET_BASIC, CLIENT_SECRET_POST, GrantRequest, TokenClient

# Body parameters Flowker sets itself (or requests-oauthlib takes as arguments):
# extra_params may not override them.
RESERVED_PARAMS = (
    "grant_type",
    "client_id",
    "client_secret",
    "username",
    "password",
    "scope",
    "audience",
    "refresh_token",
    "code",
    "redirect_uri",
    "code_verifier",
    "client_assertion",
    "client_assertion_type",
    "token_url",
    "body",
    "auth",
    "method",
    "timeout",
    "headers",
    "verify",
    "proxies",
    "cert",
    "include_client_id",
    "force_querystring",
    "authorization_response",
)

_COMMON_PROPERTIES: dict[str, dict] = {
    "issuer_url": {
        "type": "string",
        "minLength": 1,
        "maxLength": 2048,
        "description": "The OpenID provider; discovery is at <issuer_url>/.well-known/openid-configuration.",
    },
    "client_id": {"type": "string", "minLength": 1, "maxLength": 512},
    "scopes": {
        "type": "array",
        "maxItems": 50,
        "uniqueItems": True,
        # RFC 6749 3.3 scope-token characters.
        "items": {"type": "string", "minLength": 1, "maxLength": 256, "pattern": "^[\\x21\\x23-\\x5B\\x5D-\\x7E]+$"},
    },
    "audience": {
        "type": "string",
        "minLength": 1,
        "maxLength": 2048,
        "description": "Sent as the audience parameter of the token request.",
    },
    "token_endpoint_auth_method": {"enum": [CLIENT_SECRET_BASIC, CLIENT_SECRET_POST], "default": CLIENT_SECRET_BASIC},
    "extra_params": {
        "type": "object",
        "maxProperties": 20,
        "description": "More token request parameters, e.g. {resource: https://api.example.com}.",
        "propertyNames": {"pattern": "^[A-Za-z0-9_.\\-]{1,64}$", "not": {"enum": list(RESERVED_PARAMS)}},
        "additionalProperties": {"type": "string", "maxLength": 2048},
    },
}


class _OIDCAuthType(AuthType):
    """What both OIDC types share: building a cached, self-refreshing bearer auth."""

    def __init__(self):
        # Used when the context brings no process-wide cache: the registry holds one
        # instance of each type per process, so this is per process too.
        self._default_cache = TokenCache()

    @property
    def url_fields(self) -> tuple[str, ...]:
        # Discovery and the token endpoint it names are fetched (the latter checked again at call time).
        return ("issuer_url",)

    def credential_headers(self, config: Mapping[str, Any]) -> tuple[str, ...]:
        return ("Authorization",)

    def grant_request(self, config: dict) -> GrantRequest:
        raise NotImplementedError

    def validate_config(self, config: Any) -> list[tuple[str, str]]:
        problems = super().validate_config(config)
        extra = config.get("extra_params") if isinstance(config, dict) else None
        reserved = sorted(name for name in extra if name in RESERVED_PARAMS) if isinstance(extra, dict) else []
        if reserved:
            # Say which names, instead of the schema's bare "not" failure.
            problems = [p for p in problems if not (p[0] == "extra_params" and "(not)" in p[1])]
            names = ", ".join(repr(name) for name in reserved)
            problems.append(("extra_params", f"{names} cannot be set in extra_params: Flowker sets it"))
        return sorted(problems)

    def build(self, config: dict, context: AuthContext) -> requests.auth.AuthBase:
        context = context or AuthContext()
        cache = context.token_cache if isinstance(context.token_cache, TokenCache) else self._default_cache
        redactor = getattr(context, "redactor", None) or cache.redactor
        protect_oauth_logging(redactor)
        if redactor is not cache.redactor:
            protect_oauth_logging(cache.redactor)

        def register_secret(value: str) -> None:
            redactor.add_secret(value)
            context.register_secret(value)

        grant = self.grant_request(config)
        for secret in (grant.client_secret, grant.password):
            if secret:
                register_secret(secret)
        settings = context.settings
        client = TokenClient(
            grant,
            cache,
            new_session=context.new_session or _fallback_session_factory(settings),
            register_secret=register_secret,
            scrub=redactor.scrub_text,
            production=bool(getattr(settings, "production", False)),
        )
        return RefreshingBearerAuth(
            CachedTokenSource(cache, cache_key(grant, cache), client), description=f"OIDC token of {grant.describe()}"
        )


class OIDCClientCredentialsAuth(_OIDCAuthType):
    name = "oidc_client_credentials"
    description = (
        "OAuth 2.0 client-credentials grant against an OpenID provider (discovery); "
        "sends Authorization: Bearer <access token>."
    )
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["issuer_url", "client_id", "client_secret"],
        "properties": {
            **_COMMON_PROPERTIES,
            "client_secret": {"type": "string", "minLength": 1, "maxLength": 4096, "writeOnly": True},
        },
    }

    def grant_request(self, config: dict) -> GrantRequest:
        return _grant_request(config)


class OIDCUserAuth(_OIDCAuthType):
    name = "oidc_user"
    description = (
        "OAuth 2.0 resource-owner password grant against an OpenID provider (discovery), "
        "renewed with the refresh token; sends Authorization: Bearer <access token>."
    )
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["issuer_url", "client_id", "username", "password"],
        "properties": {
            **_COMMON_PROPERTIES,
            "scopes": {**_COMMON_PROPERTIES["scopes"], "default": ["openid"]},
            "client_secret": {"type": "string", "minLength": 1, "maxLength": 4096, "writeOnly": True},
            "username": {"type": "string", "minLength": 1, "maxLength": 512},
            "password": {"type": "string", "minLength": 1, "maxLength": 4096, "writeOnly": True},
        },
    }

    def grant_request(self, config: dict) -> GrantRequest:
        return _grant_request(
            config, username=config["username"], password=config["password"], default_scopes=("openid",)
        )


def _grant_request(
    config: dict, username: str | None = None, password: str | None = None, default_scopes: tuple[str, ...] = ()
) -> GrantRequest:
    scopes = config.get("scopes")
    return GrantRequest(
        issuer=normalize_issuer(config["issuer_url"]),
        client_id=config["client_id"],
        client_secret=config.get("client_secret"),
        auth_method=config.get("token_endpoint_auth_method", CLIENT_SECRET_BASIC),
        scopes=tuple(default_scopes if scopes is None else scopes),
        audience=config.get("audience"),
        extra_params=tuple(sorted((str(k), str(v)) for k, v in (config.get("extra_params") or {}).items())),
        username=username,
        password=password,
    )


def cache_key(grant: GrantRequest, cache: TokenCache) -> tuple:
    """(issuer, client, scopes, audience, user) plus what else changes the token obtained."""
    return (
        grant.issuer,
        grant.client_id,
        tuple(sorted(grant.scopes)),
        grant.audience,
        grant.username,
        grant.extra_params,
        grant.auth_method,
        cache.credentials_digest(grant.client_secret, grant.password),
    )


class CachedTokenSource:
    """The :class:`~flowker.auth.refreshing.TokenSource` of an OIDC auth: one cache key."""

    def __init__(self, cache: TokenCache, key: tuple, client: TokenClient):
        self._cache = cache
        self._key = key
        self._client = client

    def access_token(self) -> str:
        return self._cache.token(self._key, self._client.obtain).access_token

    def refused(self, access_token: str) -> None:
        self._cache.invalidate(self._key, access_token)

    def __repr__(self) -> str:
        return f"<CachedTokenSource {self._client.request.describe()}>"


def _fallback_session_factory(settings: Any):
    """Without ``context.new_session``: the SSRF-guarded session when settings are known."""
    if settings is not None:

        def guarded() -> requests.Session:
            from flowker.security.http import new_session
            from flowker.security.ssrf import AddressPolicy

            return new_session(AddressPolicy.from_settings(settings), max_redirects=0)

        return guarded

    def plain() -> requests.Session:
        session = requests.Session()
        session.trust_env = False
        return session

    return plain


__all__ = ["OIDCClientCredentialsAuth", "OIDCUserAuth", "CachedTokenSource", "cache_key", "RESERVED_PARAMS"]

"""The world the canary test runs in: identity providers started with canary secrets, a
resource server that really checks every credential, and hostile token endpoints.

Every secret of every built-in auth type, of the ``hmac`` plugin in ``plugins/`` and of the
plugin guide's ``acme`` example is a distinct canary (:func:`hardening_helpers.canary`).
The resource server answers by path ``/svc/<kind>/r/<mode>``:

* ``ok`` - 200 when the kind's credentials are right (else 401), echoing back everything
  it received (headers, query, body) and using the credential as a JSON key too: a
  hostile executor that tries to get the secrets into Flowker's records;
* ``redirect`` - 307 to another origin (the ``elsewhere`` server, another port), the query
  string going along as a naive service would send it; the probe's ``/health`` does the
  same. Nothing the auth added may arrive there;
* ``denied`` - always 401, with the same echo;
* ``recover`` - 503 twice (per kind), then like ``ok``;
* ``flaky`` - always 503 with the echo.

OIDC access tokens are checked for real: RS256 signature against the provider's JWKS,
issuer, expiry and client or subject.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from dataclasses import dataclass, field

import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from flowker.local_server import LocalHTTPServer

from hardening_helpers import Canaries

# What an auth may add to a request (any case): none of it may reach another origin.
CREDENTIAL_HEADERS = (
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-partner-key",
    "x-acme-token",
    "x-signature",
    "x-key-id",
    "x-timestamp",
)
CREDENTIAL_QUERY_PARAMS = ("partner", "auth")

RESOURCE = "https://api.example.test"


def b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class JwtChecker:
    """Verifies RS256 JWTs of one issuer against its JWKS (fetched once)."""

    def __init__(self, issuer: str, ca: str):
        self.issuer = issuer
        metadata = requests.get(issuer + "/.well-known/openid-configuration", verify=ca, timeout=10).json()
        self.keys = {
            key.get("kid"): key for key in requests.get(metadata["jwks_uri"], verify=ca, timeout=10).json()["keys"]
        }

    def claims(self, token: str) -> dict | None:
        try:
            header_b64, payload_b64, signature_b64 = token.split(".")
            header, payload = json.loads(b64url(header_b64)), json.loads(b64url(payload_b64))
            key = self.keys.get(header.get("kid")) or next(iter(self.keys.values()))
            public = rsa.RSAPublicNumbers(
                int.from_bytes(b64url(key["e"]), "big"), int.from_bytes(b64url(key["n"]), "big")
            ).public_key()
            public.verify(
                b64url(signature_b64), f"{header_b64}.{payload_b64}".encode(), padding.PKCS1v15(), hashes.SHA256()
            )
        except Exception:  # noqa: BLE001 - any defect means "not valid"
            return None
        if payload.get("iss") != self.issuer or payload.get("exp", 0) <= time.time():
            return None
        return payload


@dataclass
class Kind:
    """One executor of the canary run: its auth config (as posted) and its credential check."""

    name: str
    authentication: dict
    check: object  # callable(RecordedRequest) -> bool
    modes: tuple = ("ok", "redirect", "denied", "recover", "flaky", "ok")
    fails_to_authenticate: bool = False
    error_code: str = "FLK-0520"  # the step's code when it fails to authenticate


@dataclass
class CanaryWorld:
    canaries: Canaries
    env: dict  # environment variables the $env references name
    kinds: list
    resource_server: LocalHTTPServer
    hostile_issuer: LocalHTTPServer
    elsewhere: LocalHTTPServer  # the other origin redirects point to
    seen_tokens: list = field(default_factory=list)  # access tokens the resource server saw
    minted: list = field(default_factory=list)  # access tokens the hostile issuer handed out
    minted_refresh: list = field(default_factory=list)

    def kind(self, name: str) -> Kind:
        return next(k for k in self.kinds if k.name == name)


def provider_configs(canaries: Canaries, tls) -> tuple[dict, dict]:
    """Configs for the OpenID provider (client credentials) and the password-grant provider."""
    oidc = {
        "certFile": tls.cert,
        "keyFile": tls.key,
        "ttlSeconds": 3600,
        "clients": [
            {
                "client_id": "cc-basic",
                "client_secret": canaries.new("occ-basic-client-secret"),
                "token_endpoint_auth_method": "client_secret_basic",
                "scope": "read write",
            },
            {
                "client_id": "cc-post",
                "client_secret": canaries.new("occ-post-client-secret"),
                "token_endpoint_auth_method": "client_secret_post",
                "scope": "read write",
            },
            # The client a wrong secret is tried for: its real secret is never configured in Flowker.
            {
                "client_id": "cc-other",
                "client_secret": "real-" + secrets.token_urlsafe(24),
                "token_endpoint_auth_method": "client_secret_basic",
                "scope": "read write",
            },
        ],
        "resources": {RESOURCE: "read write"},
    }
    users = {
        "certFile": tls.cert,
        "keyFile": tls.key,
        "ttlSeconds": 3600,
        "clients": {"web-a": canaries.new("ouser-a-client-secret"), "web-b": canaries.new("ouser-b-client-secret")},
        "users": {
            "alice": canaries.new("ouser-alice-password"),
            "bob": canaries.new("ouser-bob-password"),
            "carol": "real-" + secrets.token_urlsafe(18),
        },
    }
    return oidc, users


def build_kinds(
    canaries: Canaries,
    oidc_issuer: str,
    user_issuer: str,
    hostile_url: str,
    oidc_jwt: JwtChecker,
    user_jwt: JwtChecker,
    minted: list,
) -> tuple[list, dict]:
    """The executors of the run (literal secrets and $env references) and the environment."""
    env = {}

    def from_env(label: str) -> dict:
        name = "CANARY_" + label.upper().replace("-", "_")
        env[name] = canaries.new(label)
        return {"$env": name}

    def bearer_check(expected):
        return lambda request: request.header("Authorization") == f"Bearer {expected()}"

    def jwt_check(checker: JwtChecker, claim: str, value: str):
        def check(request):
            header = request.header("Authorization") or ""
            claims = checker.claims(header[len("Bearer ") :]) if header.startswith("Bearer ") else None
            return claims is not None and claims.get(claim) == value

        return check

    def basic_check(username: str, password):
        return lambda request: (
            request.header("Authorization") == "Basic " + base64.b64encode(f"{username}:{password()}".encode()).decode()
        )

    kinds = [Kind("none", {"type": "none"}, lambda request: True)]
    key_header = canaries.new("api-key-header")
    kinds.append(
        Kind(
            "apikey-header",
            {"type": "api_key", "config": {"key": key_header, "header_name": "X-Partner-Key", "prefix": "Key "}},
            lambda request: request.header("X-Partner-Key") == "Key " + key_header,
        )
    )
    key_query = from_env("api-key-query")
    kinds.append(
        Kind(
            "apikey-query",
            {"type": "api_key", "config": {"key": key_query, "location": "query", "query_param_name": "partner"}},
            lambda request: request.query.get("partner") == env["CANARY_API_KEY_QUERY"],
        )
    )
    token = canaries.new("bearer-token")
    kinds.append(Kind("bearer", {"type": "bearer", "config": {"token": token}}, bearer_check(lambda: token)))
    kinds.append(
        Kind(
            "bearer-env",
            {"type": "bearer", "config": {"token": from_env("bearer-env-token")}},
            bearer_check(lambda: env["CANARY_BEARER_ENV_TOKEN"]),
        )
    )
    user = "cnuser-" + secrets.token_hex(6)
    password = canaries.new("basic-password")
    canaries.add_pair("basic", user, password)
    kinds.append(
        Kind(
            "basic",
            {"type": "basic", "config": {"username": user, "password": password}},
            basic_check(user, lambda: password),
        )
    )
    user_env = "cnuser-" + secrets.token_hex(6)
    kinds.append(
        Kind(
            "basic-env",
            {"type": "basic", "config": {"username": user_env, "password": from_env("basic-env-password")}},
            basic_check(user_env, lambda: env["CANARY_BASIC_ENV_PASSWORD"]),
        )
    )
    canaries.add_pair("basic-env", user_env, env["CANARY_BASIC_ENV_PASSWORD"])

    common = {"scopes": ["read"], "extra_params": {"resource": RESOURCE}}
    kinds.append(
        Kind(
            "occ-basic",
            {
                "type": "oidc_client_credentials",
                "config": {
                    "issuer_url": oidc_issuer,
                    "client_id": "cc-basic",
                    **common,
                    "client_secret": canaries.values["occ-basic-client-secret"],
                },
            },
            jwt_check(oidc_jwt, "client_id", "cc-basic"),
        )
    )
    env["CANARY_OCC_POST_CLIENT_SECRET"] = canaries.values["occ-post-client-secret"]
    kinds.append(
        Kind(
            "occ-post",
            {
                "type": "oidc_client_credentials",
                "config": {
                    "issuer_url": oidc_issuer,
                    "client_id": "cc-post",
                    **common,
                    "token_endpoint_auth_method": "client_secret_post",
                    "client_secret": {"$env": "CANARY_OCC_POST_CLIENT_SECRET"},
                },
            },
            jwt_check(oidc_jwt, "client_id", "cc-post"),
        )
    )
    kinds.append(
        Kind(
            "ouser",
            {
                "type": "oidc_user",
                "config": {
                    "issuer_url": user_issuer,
                    "client_id": "web-a",
                    "client_secret": canaries.values["ouser-a-client-secret"],
                    "username": "alice",
                    "password": canaries.values["ouser-alice-password"],
                },
            },
            jwt_check(user_jwt, "sub", "alice"),
        )
    )
    env["CANARY_OUSER_B_CLIENT_SECRET"] = canaries.values["ouser-b-client-secret"]
    env["CANARY_OUSER_BOB_PASSWORD"] = canaries.values["ouser-bob-password"]
    kinds.append(
        Kind(
            "ouser-env",
            {
                "type": "oidc_user",
                "config": {
                    "issuer_url": user_issuer,
                    "client_id": "web-b",
                    "client_secret": {"$env": "CANARY_OUSER_B_CLIENT_SECRET"},
                    "username": "bob",
                    "password": {"$env": "CANARY_OUSER_BOB_PASSWORD"},
                },
            },
            jwt_check(user_jwt, "sub", "bob"),
        )
    )

    # The probe's leak: a literal query-string key (decrypted by the probe itself).
    key_literal = canaries.new("api-key-query-literal")
    kinds.append(
        Kind(
            "apikey-query-literal",
            {"type": "api_key", "config": {"key": key_literal, "location": "query", "query_param_name": "auth"}},
            lambda request: request.query.get("auth") == key_literal,
        )
    )

    # Plugins: flowker-auth-hmac (plugins/) and the plugin guide's acme example.
    def hmac_check(secret):
        from flowker_auth_hmac import verify_signature

        def check(request):
            path = request.path + (f"?{request.query_string}" if request.query_string else "")
            return request.header("X-Key-Id") == "canary-key" and verify_signature(
                secret().encode(),
                request.method,
                path,
                request.header("X-Timestamp") or "",
                request.body,
                request.header("X-Signature") or "",
            )

        return check

    hmac_secret = canaries.new("hmac-secret")
    kinds.append(
        Kind(
            "hmac",
            {"type": "hmac", "config": {"key_id": "canary-key", "secret": hmac_secret}},
            hmac_check(lambda: hmac_secret),
        )
    )
    kinds.append(
        Kind(
            "hmac-env",
            {"type": "hmac", "config": {"key_id": "canary-key", "secret": from_env("hmac-env-secret")}},
            hmac_check(lambda: env["CANARY_HMAC_ENV_SECRET"]),
        )
    )
    acme_token = canaries.new("acme-token")
    kinds.append(
        Kind(
            "acme",
            {"type": "acme", "config": {"token": acme_token, "region": "eu"}},
            lambda request: request.header("X-Acme-Token") == acme_token,
        )
    )
    # A reference whose value breaks the schema (hmac secrets are at least 16 characters):
    # the step fails with FLK-0521 naming the field and the rule, never the value.
    env["CANARY_HMAC_SHORT_SECRET"] = short = "Qz" + "".join(secrets.choice("ghijkmnpqrstuvwxyz") for _ in range(13))
    canaries.values["hmac-short-secret"] = short
    kinds.append(
        Kind(
            "hmac-short",
            {"type": "hmac", "config": {"key_id": "canary-key", "secret": {"$env": "CANARY_HMAC_SHORT_SECRET"}}},
            lambda request: False,
            modes=("ok", "ok"),
            fails_to_authenticate=True,
            error_code="FLK-0521",
        )
    )

    # Failing token endpoints: a wrong client secret, a wrong password, and hostile issuers
    # that echo what they were sent (a 200 with an echo and a minted token; a 500 echo page).
    failing = ("ok", "ok")
    kinds.append(
        Kind(
            "occ-wrong",
            {
                "type": "oidc_client_credentials",
                "config": {
                    "issuer_url": oidc_issuer,
                    "client_id": "cc-other",
                    **common,
                    "client_secret": canaries.new("occ-wrong-client-secret"),
                },
            },
            lambda request: False,
            modes=failing,
            fails_to_authenticate=True,
        )
    )
    kinds.append(
        Kind(
            "ouser-wrong",
            {
                "type": "oidc_user",
                "config": {
                    "issuer_url": user_issuer,
                    "client_id": "web-a",
                    "client_secret": canaries.values["ouser-a-client-secret"],
                    "username": "carol",
                    "password": from_env("ouser-wrong-password"),
                },
            },
            lambda request: False,
            modes=failing,
            fails_to_authenticate=True,
        )
    )
    kinds.append(
        Kind(
            "hostile-post",
            {
                "type": "oidc_client_credentials",
                "config": {
                    "issuer_url": hostile_url + "/post",
                    "client_id": "hostile",
                    "token_endpoint_auth_method": "client_secret_post",
                    "client_secret": canaries.new("hostile-post-client-secret"),
                },
            },
            lambda request: request.header("Authorization") in {f"Bearer {t}" for t in minted},
        )
    )
    kinds.append(
        Kind(
            "hostile-basic",
            {
                "type": "oidc_client_credentials",
                "config": {
                    "issuer_url": hostile_url + "/basic",
                    "client_id": "hostile",
                    "client_secret": from_env("hostile-basic-client-secret"),
                },
            },
            lambda request: False,
            modes=failing,
            fails_to_authenticate=True,
        )
    )
    return kinds, env


def resource_handler(world_ref: dict):
    """The resource server's handler (``world_ref["world"]`` is filled in once built)."""
    lock = threading.Lock()
    counters: dict = {}

    def handle(request):
        world: CanaryWorld = world_ref["world"]
        parts = request.path.strip("/").split("/")
        if len(parts) < 2 or parts[0] != "svc":
            return 404, {}, {"error": "no such path"}
        kind = world.kind(parts[1])
        authorization = request.header("Authorization") or ""
        if authorization.startswith("Bearer "):
            with lock:
                world.seen_tokens.append(authorization[len("Bearer ") :])
        mode = parts[3] if len(parts) >= 4 and parts[2] == "r" else "probe"
        if mode == "redirect" or parts[2:] == ["health"]:
            # Before any check, as a misconfigured service or a load balancer would.
            query = f"?{request.query_string}" if request.query_string else ""
            return 307, {"Location": f"{world.elsewhere.url}/landed/{kind.name}/{parts[-1]}{query}"}, {}
        echo = {
            "headers": request.headers,
            "query": request.query_string,
            "body": request.body.decode("utf-8", "replace"),
            # A hostile service may put what it got anywhere, keys included.
            "byCredential": {
                value: True
                for name, value in request.headers.items()
                if name.lower() in ("authorization", "x-partner-key")
            },
        }
        if mode == "denied":
            return 401, {"WWW-Authenticate": f'Bearer error="invalid_token" {authorization}'}, echo
        if mode == "flaky":
            return 503, {"Retry-After": "0", "X-Echo": authorization}, echo
        if mode == "recover":
            with lock:
                counters[kind.name] = counters.get(kind.name, 0) + 1
                if counters[kind.name] <= 2:
                    return 503, {"Retry-After": "0"}, echo
        if not kind.check(request):
            return 401, {}, echo
        return 200, {"X-Echo": authorization}, {"ok": True, **echo}

    return handle


def hostile_issuer_handler(world_ref: dict):
    """Two fake issuers under one server: ``/post`` (answers tokens, echoing the request)
    and ``/basic`` (answers 500 with an HTML page echoing the request)."""

    def handle(request):
        world: CanaryWorld = world_ref["world"]
        base = world.hostile_issuer.url
        parts = request.path.strip("/").split("/")
        issuer = f"{base}/{parts[0]}"
        if request.path.endswith("/.well-known/openid-configuration"):
            return 200, {}, {"issuer": issuer, "token_endpoint": issuer + "/token"}
        echo = {"body": request.body.decode("utf-8", "replace"), "headers": request.headers}
        if parts[0] == "post":
            minted = "minted-" + secrets.token_urlsafe(24)
            refresh = "minted-refresh-" + secrets.token_urlsafe(24)
            world.minted.append(minted)
            world.minted_refresh.append(refresh)
            return (
                200,
                {},
                {
                    "access_token": minted,
                    "token_type": "Bearer",
                    "expires_in": 3600,
                    "refresh_token": refresh,
                    "echo": echo,
                },
            )
        page = f"<html><body>token endpoint failed for {json.dumps(echo)}</body></html>"
        return 500, {"Content-Type": "text/html"}, page

    return handle


def elsewhere_handler(request):
    """The other origin: answers 200 to anything (it records what it got)."""
    return 200, {}, {"landed": True}


def credentials_sent_elsewhere(world: CanaryWorld) -> list[str]:
    """Every credential header or query parameter the other origin received."""
    found = []
    for request in world.elsewhere.requests:
        for name in request.headers:
            if name.lower() in CREDENTIAL_HEADERS:
                found.append(f"{request.path}: header {name}")
        for name in request.query:
            if name in CREDENTIAL_QUERY_PARAMS:
                found.append(f"{request.path}: query parameter {name}")
    return found

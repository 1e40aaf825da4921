"""People's bearer tokens (DESIGN §13): a JWT access token from ``FLOWKER_OIDC_ISSUER``,
checked against the issuer's JWKS.

* The JWKS URL comes from ``<issuer>/.well-known/openid-configuration`` (``jwks_uri``);
  both are fetched through the SSRF-guarded session (:mod:`flowker.security.http`), so
  the issuer may be a private or loopback address only where executors may be.
* Keys are cached (:class:`JwksCache`). A token naming an unknown ``kid`` makes the
  cache fetch the JWKS again (the provider rotated its keys), at most once every
  ``JWKS_MIN_REFRESH_SECONDS``: a stream of made-up ``kid``s cannot hammer the provider.
* Only asymmetric algorithms are accepted (:data:`ALLOWED_ALGORITHMS`): ``none`` and the
  HMAC family are refused before any key is looked at, so an HS256 token "signed" with
  the provider's public key gets nowhere. A JWK that names its own ``alg`` or ``use``
  must agree with the token.
* Signature, ``iss``, ``aud`` are PyJWT's checks; ``exp`` (required) and ``nbf`` are
  checked here against the verifier's clock with :data:`LEEWAY_SECONDS` of leeway.
* A token once accepted is remembered (by its SHA-256) for up to a minute, its ``exp`` and
  ``nbf`` checked again on every use: a person's requests then cost a hash each.
* Roles: the claim ``roles_claim`` (a string or a list of strings; a dotted path such as
  ``realm_access.roles`` reaches into objects) mapped through the role map.

Nothing here knows HTTP requests or principals: :meth:`BearerTokenVerifier.verify`
answers a :class:`VerifiedPerson` or raises :class:`TokenRefused` /
:class:`ProviderUnavailable`; the API turns those into 401 / 503 (and no role: 403).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import jwt
import requests

from flowker.errors import FlowkerError
from flowker.security.redaction import redact_url

ALLOWED_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
LEEWAY_SECONDS = 30
JWKS_MIN_REFRESH_SECONDS = 30.0
# Keys are fetched again after this long even when every kid is known (revoked keys go).
JWKS_MAX_AGE_SECONDS = 3600.0
MAX_TOKEN_CHARS = 16 * 1024
ACCEPTED_TOKEN_SECONDS = 60.0
ACCEPTED_TOKENS_MAX = 4096
MAX_JWKS_BYTES = 256 * 1024
MAX_JWKS_KEYS = 100
REQUEST_TIMEOUT_SECONDS = 10.0


class TokenRefused(Exception):
    """The token is not accepted; the message says why (never the token)."""


class ProviderUnavailable(Exception):
    """The issuer's discovery document or JWKS could not be fetched or read."""


@dataclass(frozen=True)
class OidcSettings:
    """What ``FLOWKER_OIDC_*`` configure; ``role_map`` is ((claim value, role), ...)."""

    issuer: str
    audience: str
    roles_claim: str = "roles"
    role_map: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class VerifiedPerson:
    """A person whose token was accepted: the audit names them ``<issuer> <subject>``."""

    issuer: str
    subject: str
    roles: tuple[str, ...]  # Flowker roles the claim mapped to, in role-map order, no repeats
    claim_values: tuple[str, ...] = field(default=(), repr=False)  # what the roles claim held

    @property
    def actor_id(self) -> str:
        return f"{self.issuer} {self.subject}"


class JwksCache:
    """The issuer's signing keys, fetched on first use and refreshed (rate-limited) when a
    token names a kid the cache does not hold. Thread-safe; one fetch at a time."""

    def __init__(
        self,
        issuer: str,
        new_session: Callable[[], requests.Session],
        *,
        production: bool = False,
        clock: Callable[[], float] = time.monotonic,
        min_refresh_seconds: float = JWKS_MIN_REFRESH_SECONDS,
        max_age_seconds: float = JWKS_MAX_AGE_SECONDS,
    ):
        self.issuer = issuer.rstrip("/")
        self._new_session = new_session
        self._production = production
        self._clock = clock
        self._min_refresh = min_refresh_seconds
        self._max_age = max_age_seconds
        self._lock = threading.Lock()
        self._keys: dict[str | None, dict] = {}
        self._jwks_uri: str | None = None
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._last_error: str | None = None
        self.fetches = 0  # JWKS downloads so far (tests and logs)

    def key(self, kid: str | None) -> dict | None:
        """The JWK for ``kid`` (None: the token names none, and the set holds one key), or
        None when, even after a permitted refresh, the provider does not publish it.
        Raises ProviderUnavailable when the keys cannot be had."""
        with self._lock:
            now = self._clock()
            if self._fetched_at is None or now - self._fetched_at >= self._max_age:
                # Past max age, a failed fetch keeps the keys we have (the provider's blip
                # must not sign everyone out); with none yet, it is an error.
                self._refresh_unless_recent(now, raise_on_failure=self._fetched_at is None)
            found = self._lookup(kid)
            if found is None:
                self._refresh_unless_recent(now, raise_on_failure=True)  # keys rotated?
                found = self._lookup(kid)
            return found

    def _lookup(self, kid: str | None) -> dict | None:
        if kid is not None:
            return self._keys.get(kid)
        return next(iter(self._keys.values())) if len(self._keys) == 1 else None

    def _refresh_unless_recent(self, now: float, *, raise_on_failure: bool) -> None:
        if self._attempted_at is not None and now - self._attempted_at < self._min_refresh:
            if self._fetched_at is None:
                raise ProviderUnavailable(self._last_error or "the issuer's keys could not be fetched")
            return  # fetched (or tried) moments ago: a made-up kid does not cost a request
        self._attempted_at = now
        try:
            self._refresh(now)
        except ProviderUnavailable as exc:
            self._last_error = str(exc)
            if raise_on_failure:
                raise

    def _refresh(self, now: float) -> None:
        from flowker.auth.discovery import fetch_discovery, require_secure_transport

        session = self._new_session()
        try:
            if self._jwks_uri is None:
                document = fetch_discovery(
                    session, self.issuer, production=self._production, required_endpoint="jwks_uri"
                )
                self._jwks_uri = str(document["jwks_uri"])
            require_secure_transport(self._jwks_uri, "OIDC jwks_uri", self._production)
            self._keys = self._download(session, self._jwks_uri)
        except FlowkerError as exc:  # discovery failed, the SSRF guard refused, a body over the cap
            raise ProviderUnavailable(
                f"the keys of issuer {redact_url(self.issuer)} could not be had: {exc.message}"
            ) from None
        finally:
            session.close()
        self._fetched_at = now
        self.fetches += 1

    def _download(self, session: requests.Session, url: str) -> dict[str | None, dict]:
        where = f"the JWKS of issuer {redact_url(self.issuer)} ({redact_url(url)})"
        try:
            response = session.get(
                url, timeout=REQUEST_TIMEOUT_SECONDS, allow_redirects=False, headers={"Accept": "application/json"}
            )
        except requests.RequestException as exc:
            raise ProviderUnavailable(f"could not fetch {where}: {type(exc).__name__}") from None
        with response:
            if response.status_code != 200:
                raise ProviderUnavailable(f"{where} answered HTTP {response.status_code}")
            if len(response.content) > MAX_JWKS_BYTES:
                raise ProviderUnavailable(f"{where} is larger than {MAX_JWKS_BYTES} bytes")
            try:
                document = json.loads(response.content)
            except ValueError:
                raise ProviderUnavailable(f"{where} is not JSON") from None
        keys = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(keys, list):
            raise ProviderUnavailable(f"{where} has no 'keys' list")
        found: dict[str | None, dict] = {}
        for entry in keys[:MAX_JWKS_KEYS]:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue  # encryption keys are not for checking signatures
            if entry.get("kty") == "oct":
                continue  # a symmetric key in a public set is never trusted
            kid = entry.get("kid")
            found[kid if isinstance(kid, str) else None] = entry
        return found


@dataclass(frozen=True)
class _Accepted:
    person: VerifiedPerson
    claims: dict  # exp and nbf, checked again on every use
    valid_until: float


class BearerTokenVerifier:
    """Checks one ``Authorization: Bearer`` JWT; see the module docstring."""

    def __init__(
        self,
        settings: OidcSettings,
        jwks: JwksCache,
        *,
        now: Callable[[], float] = time.time,
        leeway_seconds: float = LEEWAY_SECONDS,
    ):
        self.settings = settings
        self.jwks = jwks
        self._now = now
        self._leeway = leeway_seconds
        # Tokens already checked (by sha256): a person's next requests with the same token
        # cost a hash, not a signature check and two parses. Kept ACCEPTED_TOKEN_SECONDS at
        # most, so a key the provider withdraws stops counting within that time.
        self._accepted: dict[bytes, _Accepted] = {}
        self._accepted_lock = threading.Lock()

    def verify(self, token: str) -> VerifiedPerson:
        if not token or len(token) > MAX_TOKEN_CHARS:
            raise TokenRefused("the bearer token is empty or too long")
        digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        cached = self._accepted.get(digest)
        now = self._now()
        if cached is not None and now < cached.valid_until:
            self._check_times(cached.claims)  # exp and nbf against this request's clock
            return cached.person
        person, claims = self._verified(token)
        self._remember(digest, _Accepted(person, claims, min(now + ACCEPTED_TOKEN_SECONDS, claims["exp"])))
        return person

    def _remember(self, digest: bytes, accepted: "_Accepted") -> None:
        with self._accepted_lock:
            if len(self._accepted) >= ACCEPTED_TOKENS_MAX:
                self._accepted.clear()  # simple and bounded; a busy process refills it at once
            self._accepted[digest] = accepted

    def _verified(self, token: str) -> tuple[VerifiedPerson, dict[str, Any]]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenRefused("the bearer token is not a JWT") from None
        algorithm = header.get("alg")
        if algorithm not in ALLOWED_ALGORITHMS:
            raise TokenRefused(
                f"the token's algorithm {str(algorithm)[:20]!r} is not accepted (accepted: {', '.join(ALLOWED_ALGORITHMS)})"
            )
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise TokenRefused("the token's kid is not a string")
        jwk = self.jwks.key(kid)
        if jwk is None:
            raise TokenRefused(
                "the token is signed with a key the issuer does not publish (unknown kid)"
                if kid is not None
                else "the token names no kid and the issuer publishes more than one key"
            )
        if jwk.get("alg") not in (None, algorithm):
            raise TokenRefused(f"the token's algorithm {algorithm} is not the one its key is for")
        claims = self._decoded(token, jwk, algorithm)
        self._check_times(claims)
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise TokenRefused("the token has no subject (sub)")
        values = claim_values(claims, self.settings.roles_claim)
        person = VerifiedPerson(
            issuer=self.settings.issuer,
            subject=subject,
            roles=mapped_roles(values, self.settings.role_map),
            claim_values=values,
        )
        return person, {"exp": claims["exp"], "nbf": claims.get("nbf")}

    def _decoded(self, token: str, jwk: dict, algorithm: str) -> dict[str, Any]:
        try:
            key = jwt.PyJWK(jwk, algorithm=algorithm)
        except jwt.PyJWTError:
            raise TokenRefused(f"the issuer's key for this token cannot check {algorithm} signatures") from None
        try:
            return jwt.decode(
                token,
                key=key.key,
                algorithms=[algorithm],
                audience=self.settings.audience,
                issuer=self.settings.issuer,
                options={"require": ["exp", "iss", "aud"], "verify_exp": False, "verify_nbf": False},
            )
        except jwt.InvalidAudienceError:
            raise TokenRefused(
                f"the token is not meant for this server (aud is not {self.settings.audience!r})"
            ) from None
        except jwt.InvalidIssuerError:
            raise TokenRefused(f"the token was not issued by {self.settings.issuer}") from None
        except jwt.InvalidSignatureError:
            raise TokenRefused("the token's signature does not verify") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenRefused(f"the token has no {exc.claim!r} claim") from None
        except jwt.PyJWTError as exc:
            raise TokenRefused(f"the token is not valid: {type(exc).__name__}") from None

    def _check_times(self, claims: dict[str, Any]) -> None:
        now = self._now()
        expires = claims.get("exp")
        if not isinstance(expires, (int, float)) or isinstance(expires, bool):
            raise TokenRefused("the token's exp is not a number")
        if now > expires + self._leeway:
            raise TokenRefused("the token has expired")
        not_before = claims.get("nbf")
        if not_before is not None:
            if not isinstance(not_before, (int, float)) or isinstance(not_before, bool):
                raise TokenRefused("the token's nbf is not a number")
            if now + self._leeway < not_before:
                raise TokenRefused("the token is not valid yet (nbf)")


def claim_values(claims: dict[str, Any], name: str) -> tuple[str, ...]:
    """The strings under claim ``name``: the claim itself when present (names may hold
    dots, e.g. ``https://example.com/roles``), else a dotted path into objects."""
    value: Any = claims.get(name)
    if value is None and "." in name:
        value = claims
        for part in name.split(".")[:10]:
            value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return tuple(item for item in value[:1000] if isinstance(item, str))
    return ()


def mapped_roles(values: tuple[str, ...], role_map: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
    present = set(values)
    roles: list[str] = []
    for claim_value, role in role_map:
        if claim_value in present and role not in roles:
            roles.append(role)
    return tuple(roles)

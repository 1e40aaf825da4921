"""The per-process cache of OIDC discovery documents and access tokens.

One :class:`TokenCache` lives for the whole process (the runner passes it in
:class:`flowker.auth.base.AuthContext`). Each cache key has its own lock, so when many
threads need the same token at once exactly one of them asks the provider and the rest
wait for its answer; different keys never wait for each other.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Hashable

# A token is refreshed when this share of its lifetime is left, at most MAX_REFRESH_LEEWAY
# seconds before it expires: a 1-hour token is renewed 60 s early, a 4-second one 1 s early.
REFRESH_LEEWAY_SHARE = 0.25
MAX_REFRESH_LEEWAY = 60.0
# Tokens without ``expires_in`` are kept this long (a 401 still forces a refetch).
DEFAULT_TOKEN_LIFETIME = 300.0
DISCOVERY_TTL = 3600.0


@dataclass(frozen=True)
class CachedToken:
    """An access token with its monotonic-clock deadlines. Its repr shows no secret."""

    access_token: str = field(repr=False)
    obtained_at: float
    expires_at: float
    refresh_at: float
    refresh_token: str | None = field(default=None, repr=False)
    scope: str | None = None

    @classmethod
    def from_lifetime(
        cls,
        access_token: str,
        lifetime: float | None,
        now: float,
        refresh_token: str | None = None,
        scope: str | None = None,
    ) -> "CachedToken":
        lifetime = DEFAULT_TOKEN_LIFETIME if lifetime is None or lifetime <= 0 else float(lifetime)
        leeway = min(MAX_REFRESH_LEEWAY, lifetime * REFRESH_LEEWAY_SHARE)
        return cls(
            access_token=access_token,
            obtained_at=now,
            expires_at=now + lifetime,
            refresh_at=now + lifetime - leeway,
            refresh_token=refresh_token,
            scope=scope,
        )

    def usable(self, now: float) -> bool:
        """Still comfortably valid: not yet inside its refresh window."""
        return now < self.refresh_at


@dataclass
class _Slot:
    lock: threading.Lock = field(default_factory=threading.Lock)
    token: CachedToken | None = None


@dataclass
class _Discovery:
    document: dict
    fetched_at: float


class TokenCache:
    """Tokens and discovery documents shared by every OIDC auth of one process.

    ``clock`` is monotonic seconds (a test may pass a fake one).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, discovery_ttl: float = DISCOVERY_TTL):
        self._clock = clock
        self._discovery_ttl = discovery_ttl
        self._guard = threading.Lock()
        self._slots: dict[Hashable, _Slot] = {}
        self._discovery: dict[str, _Discovery] = {}
        self._discovery_locks: dict[str, threading.Lock] = {}
        # Keys carry a digest of the credentials (so a rotated or wrong secret never rides on
        # a token another secret obtained); salted per process so the digest is useless elsewhere.
        self._salt = secrets.token_bytes(32)
        self._redactor = None

    # -- keys ------------------------------------------------------------------------

    def credentials_digest(self, *values: str | None) -> str:
        message = "\0".join("" if v is None else str(v) for v in values).encode("utf-8")
        return hmac.new(self._salt, message, hashlib.sha256).hexdigest()

    def now(self) -> float:
        return self._clock()

    # -- tokens ----------------------------------------------------------------------

    def _slot(self, key: Hashable) -> _Slot:
        with self._guard:
            slot = self._slots.get(key)
            if slot is None:
                slot = self._slots[key] = _Slot()
            return slot

    def token(self, key: Hashable, obtain: Callable[[CachedToken | None], CachedToken]) -> CachedToken:
        """The cached token for ``key``, or a new one from ``obtain(previous)``.

        ``previous`` is the expiring token (its refresh token lets ``obtain`` use the
        refresh grant) or None. Only one thread per key calls ``obtain`` at a time; the
        others wait and then reuse what it got.
        """
        slot = self._slot(key)
        current = slot.token
        if current is not None and current.usable(self._clock()):
            return current
        with slot.lock:
            current = slot.token
            if current is not None and current.usable(self._clock()):
                return current
            fresh = obtain(current)
            slot.token = fresh
            return fresh

    def invalidate(self, key: Hashable, access_token: str | None = None) -> bool:
        """Forget the token for ``key`` (only if it is still ``access_token``, when given).

        Many requests that failed with the same stale token invalidate it once; a token
        another thread already replaced is left alone, so a burst of 401s costs one refetch.
        The refresh token is kept so the next fetch may still use the refresh grant.
        """
        slot = self._slot(key)
        with slot.lock:
            current = slot.token
            if current is None:
                return False
            if access_token is not None and current.access_token != access_token:
                return False
            now = self._clock()
            # Mark it due (not gone): obtain() still sees its refresh token.
            slot.token = CachedToken(
                access_token=current.access_token,
                obtained_at=current.obtained_at,
                expires_at=now,
                refresh_at=now,
                refresh_token=current.refresh_token,
                scope=current.scope,
            )
            return True

    def peek(self, key: Hashable) -> CachedToken | None:
        """The cached token for ``key`` without fetching (for tests and diagnostics)."""
        with self._guard:
            slot = self._slots.get(key)
        return slot.token if slot else None

    def clear(self) -> None:
        with self._guard:
            self._slots.clear()
            self._discovery.clear()

    # -- discovery -------------------------------------------------------------------

    def discovery(self, issuer: str, fetch: Callable[[], dict]) -> dict:
        """The discovery document of ``issuer``, fetched once per ``discovery_ttl``.

        Failures are not cached: the next call tries again.
        """
        with self._guard:
            cached = self._discovery.get(issuer)
            lock = self._discovery_locks.setdefault(issuer, threading.Lock())
        if cached is not None and self._clock() - cached.fetched_at < self._discovery_ttl:
            return cached.document
        with lock:
            with self._guard:
                cached = self._discovery.get(issuer)
            if cached is not None and self._clock() - cached.fetched_at < self._discovery_ttl:
                return cached.document
            document = fetch()
            with self._guard:
                self._discovery[issuer] = _Discovery(document, self._clock())
            return document

    def forget_discovery(self, issuer: str) -> None:
        with self._guard:
            self._discovery.pop(issuer, None)

    # -- redaction -------------------------------------------------------------------

    @property
    def redactor(self):
        """A redactor for OIDC log scrubbing when the context brings none (created lazily)."""
        with self._guard:
            if self._redactor is None:
                from flowker.security.redaction import Redactor

                self._redactor = Redactor()
            return self._redactor

    def __repr__(self) -> str:
        return f"<TokenCache {len(self._slots)} keys, {len(self._discovery)} issuers>"

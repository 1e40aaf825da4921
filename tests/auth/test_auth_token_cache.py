"""Unit tests of the token cache rules with a fake clock (the provider tests cover them for real)."""

from __future__ import annotations

import threading
import time

import pytest

from flowker.auth.token_cache import CachedToken, TokenCache


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def issuer(lifetime, refresh_token=None):
    """An obtain() that counts its calls and issues numbered tokens."""
    calls = []

    def obtain(previous):
        calls.append(previous)
        return CachedToken.from_lifetime(f"token-{len(calls)}", lifetime, clock(), refresh_token=refresh_token)

    clock = FakeClock()
    return obtain, calls, clock


def test_refresh_window_is_a_quarter_of_the_lifetime_capped_at_a_minute():
    short = CachedToken.from_lifetime("tok-a-secret", 4, now=0, refresh_token="ref-b-secret")
    long = CachedToken.from_lifetime("b", 3600, now=0)
    unknown = CachedToken.from_lifetime("c", None, now=0)
    assert (short.refresh_at, short.expires_at) == (3.0, 4)
    assert (long.refresh_at, long.expires_at) == (3540.0, 3600)
    assert unknown.expires_at == 300.0
    assert "tok-a-secret" not in repr(short) and "ref-b-secret" not in repr(short)


def test_reuse_then_refresh_with_the_previous_token_passed_in():
    obtain, calls, clock = issuer(lifetime=100, refresh_token="r-1")
    cache = TokenCache(clock=clock)
    assert cache.token("k", obtain).access_token == "token-1"
    clock.now += 74
    assert cache.token("k", obtain).access_token == "token-1"
    clock.now += 2  # inside the last quarter
    assert cache.token("k", obtain).access_token == "token-2"
    assert calls[0] is None and calls[1].refresh_token == "r-1"


def test_invalidate_only_drops_the_token_that_was_refused():
    obtain, calls, clock = issuer(lifetime=100, refresh_token="r-1")
    cache = TokenCache(clock=clock)
    cache.token("k", obtain)
    assert cache.invalidate("k", "some-other-token") is False
    assert cache.token("k", obtain).access_token == "token-1"
    assert cache.invalidate("k", "token-1") is True
    assert cache.invalidate("k", "token-1") is True  # still the same (due) token: harmless
    renewed = cache.token("k", obtain)
    assert renewed.access_token == "token-2" and calls[1].refresh_token == "r-1"
    assert cache.invalidate("k", "token-1") is False  # already replaced


def test_keys_are_independent_and_do_not_block_each_other():
    cache = TokenCache()
    started = threading.Event()
    release = threading.Event()

    def slow(previous):
        started.set()
        release.wait(timeout=10)
        return CachedToken.from_lifetime("slow", 100, time.monotonic())

    thread = threading.Thread(target=cache.token, args=("slow-key", slow))
    thread.start()
    assert started.wait(timeout=10)
    fast = cache.token("fast-key", lambda previous: CachedToken.from_lifetime("fast", 100, time.monotonic()))
    assert fast.access_token == "fast"  # not stuck behind the slow key's lock
    release.set()
    thread.join(timeout=10)


def test_a_failed_fetch_is_not_cached_and_the_waiters_try_again():
    cache = TokenCache()
    attempts = []

    def flaky(previous):
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("provider down")
        return CachedToken.from_lifetime("ok", 100, time.monotonic())

    with pytest.raises(RuntimeError):
        cache.token("k", flaky)
    assert cache.token("k", flaky).access_token == "ok"


def test_discovery_is_cached_for_its_ttl_and_failures_are_not():
    clock = FakeClock()
    cache = TokenCache(clock=clock, discovery_ttl=60)
    fetched = []

    def fetch():
        fetched.append(1)
        if len(fetched) == 1:
            raise RuntimeError("down")
        return {"token_endpoint": f"https://idp/token/{len(fetched)}"}

    with pytest.raises(RuntimeError):
        cache.discovery("https://idp", fetch)
    assert cache.discovery("https://idp", fetch)["token_endpoint"] == "https://idp/token/2"
    clock.now += 59
    assert cache.discovery("https://idp", fetch)["token_endpoint"] == "https://idp/token/2"
    clock.now += 2
    assert cache.discovery("https://idp", fetch)["token_endpoint"] == "https://idp/token/3"


def test_credentials_digest_is_salted_per_cache():
    first, second = TokenCache(), TokenCache()
    assert first.credentials_digest("secret") == first.credentials_digest("secret")
    assert first.credentials_digest("secret") != first.credentials_digest("other")
    assert first.credentials_digest("secret") != second.credentials_digest("secret")
    assert "secret" not in repr(first)
